"""How an ended call went: ``answered``, ``busy``, ``no_answer``, ``failed`` or ``unknown``.

- A call salara originated has two legs: the operator's channel rings
  first (its result is the ``OriginateResponse`` ``Reason``, Asterisk's
  ``AST_CONTROL_*`` code of that leg: 0 failure, 1 hung up, 3 ring timeout,
  4 answered, 5 busy, 8 congestion; :attr:`Outcome.operator`), then the
  dialplan runs on it to reach the called side. The call's own result is
  the called side's: ``answered`` only when another channel of the call
  was answered, the Dial status (``DIALSTATUS`` or ``DialEnd``) said
  ``ANSWER``, or the dialplan answered the call itself (``Answer()`` on the
  operator's channel, as an IVR or a simulated extension does); otherwise
  from the Dial status (``BUSY`` busy; ``NOANSWER``, ``CANCEL`` no answer;
  ``CHANUNAVAIL``, ``CONGESTION``... failed), else from the Hangup cause
  of the called side's channel, else of the operator's. When the operator
  never answered, the call never got further: its result is the
  operator's.
- Any other call: whether a channel was ever Up, else the Hangup cause (17
  busy; 18, 19 no answer; 16 caller gave up while ringing: no answer).

Pure: the rules read a :class:`~salara.calls.call.Call`'s record only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from salara.calls.call import Call

OutcomeResult = Literal["answered", "busy", "no_answer", "failed", "unknown"]

ORIGINATE_REASONS: Final[dict[int, str]] = {
    0: "failed (no such channel or endpoint, not registered, or no route)",
    1: "hung up before answering",
    2: "local ring",
    3: "no answer (ring timeout)",
    4: "answered",
    5: "busy",
    8: "congestion",
}
"""``OriginateResponse`` ``Reason`` (``enum ast_control_frame_type`` of the first leg) -> text."""

_REASON_RESULT: Final[dict[int, OutcomeResult]] = {4: "answered", 5: "busy", 3: "no_answer"}
_CAUSE_RESULT: Final[dict[int, OutcomeResult]] = {17: "busy", 18: "no_answer", 19: "no_answer", 16: "no_answer"}
"""Hangup cause (Q.850) -> outcome, for calls never answered."""
_DIAL_RESULT: Final[dict[str, OutcomeResult]] = {
    "ANSWER": "answered",
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CANCEL": "no_answer",
}
"""Dial's ``DIALSTATUS`` -> outcome; any other (``CHANUNAVAIL``, ``CONGESTION``...) is ``failed``."""

NOT_SEEN: Final = "the call ended while salara was not connected to Asterisk"


def originate_reason_text(code: int) -> str:
    """Text of an ``OriginateResponse`` ``Reason`` code."""
    return ORIGINATE_REASONS.get(code, f"reason {code}")


@dataclass(frozen=True, slots=True)
class LegOutcome:
    """How the operator's leg of a call salara placed went: its ``OriginateResponse``."""

    result: OutcomeResult
    reason: str
    originate_reason: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an ended call ended (its called side, for a call salara placed), with the reasons Asterisk gave."""

    result: OutcomeResult
    reason: str
    originate_reason: int | None = None
    """The ``OriginateResponse`` ``Reason`` of a call salara placed (its operator's leg)."""
    hangup_cause: int | None = None
    hangup_cause_text: str | None = None
    dial_status: str | None = None
    """The last ``DIALSTATUS`` of the call's Dial, when it ran one."""
    operator: LegOutcome | None = None
    """For a call salara placed: how its operator's leg went."""


def _cause_words(cause: int | None, text: str | None) -> str:
    return f"Hangup cause {cause} ({text or '?'})"


def operator_outcome(call: Call) -> LegOutcome:
    """How the operator's leg of a call salara placed went: its ``OriginateResponse``, else what was seen."""
    code = call.originate_reason
    if code is not None:
        reason = f"OriginateResponse {call.originate_response or '?'}, Reason {code}: {originate_reason_text(code)}"
        return LegOutcome(_REASON_RESULT.get(code, "failed"), reason, code)
    if call.operator_answered_at is not None:
        return LegOutcome("answered", "the operator's channel was answered; OriginateResponse not seen")
    return LegOutcome("unknown", call.originate_error or "OriginateResponse not seen")


def _placed_outcome(call: Call) -> Outcome:
    operator = operator_outcome(call)
    cause, cause_text = call.hangup_cause, call.hangup_cause_text
    dial = call.dial_status
    details = [f"Dial {dial}"] if dial else []
    if cause is not None:
        details.append(_cause_words(cause, cause_text))
    if call.called_cause is not None and (call.called_cause, call.called_cause_text) != (cause, cause_text):
        details.append("called side's " + _cause_words(call.called_cause, call.called_cause_text))
    result: OutcomeResult
    if operator.result != "answered":
        result, what = operator.result, "the operator's leg did not answer"
    elif call.answered_at is not None:
        result, what = "answered", f"answered ({call.answered_by or '?'})"
    elif dial:
        result, what = _DIAL_RESULT.get(dial, "failed"), "not answered"
    elif call.called_cause is not None:
        result, what = _CAUSE_RESULT.get(call.called_cause, "failed"), "not answered"
    elif cause is not None:
        result, what = _CAUSE_RESULT.get(cause, "failed"), "not answered"
    else:
        result, what = "unknown", NOT_SEEN
    reason = "; ".join([what, *details, f"operator: {operator.reason}"])
    return Outcome(result, reason, call.originate_reason, cause, cause_text, dial, operator)


def outcome_of(call: Call) -> Outcome:
    """The outcome of an ended call (see the module's docstring)."""
    if call.origin is not None:
        return _placed_outcome(call)
    cause, cause_text = call.hangup_cause, call.hangup_cause_text
    reason_code = call.originate_reason
    if reason_code is not None:
        result = _REASON_RESULT.get(reason_code, "failed")
        reason = f"OriginateResponse {call.originate_response or '?'}, Reason {reason_code}: "
        reason += originate_reason_text(reason_code)
        if cause is not None:
            reason += f"; {_cause_words(cause, cause_text)}"
        return Outcome(result, reason, reason_code, cause, cause_text)
    if call.answered_at is not None:
        result = "answered"
    elif cause is not None:
        result = _CAUSE_RESULT.get(cause, "failed")
    elif call.originate_error is not None:
        return Outcome("unknown", call.originate_error)
    else:
        return Outcome("unknown", NOT_SEEN)
    if cause is None:
        return Outcome(result, "answered; Hangup not seen", None, None, None)
    return Outcome(result, _cause_words(cause, cause_text), None, cause, cause_text)
