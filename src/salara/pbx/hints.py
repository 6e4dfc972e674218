"""Hint states as Asterisk announces them, so that a state poll needs no AMI round trip.

Asterisk sends an ``ExtensionStatus`` event (class ``call``) to every AMI
session whenever a hint's state changes, and again for every hint after a
``dialplan reload``. A hint salara has read once with the ``ExtensionState``
action is therefore kept current by those events, and the next requests for
it are answered from here. Two things are never announced: a hint removed
from the dialplan, and anything that happened while the AMI link was down.
The events name the context that holds the hint, which is not the one
asked for when the hint is reached through an ``include``; so states are
kept by the hint's device string (the same devices have the same state),
and each extension asked for points at its hint. An entry is trusted for :data:`CONFIRM_S` seconds after the last
``ExtensionState`` answer for it (then one request reads it again), and the
whole table is forgotten when the link drops.

Pure: no I/O, time is ``mono`` (monotonic seconds) passed in. Only hints are
kept (an extension without a hint, state -1, is always asked again, so a hint
added later is seen at once), at most :data:`MAX_HINTS` of them (pattern hints
make one per extension a client asks for).
"""

from __future__ import annotations

from salara.ami.messages import Event
from salara.pbx.records import ExtensionInfo
from salara.states import extension_state_name

CONFIRM_S = 5.0
"""How long (seconds) a hint read by ``ExtensionState`` is trusted without a new read: the bound on
how long a hint removed from the dialplan (which Asterisk does not announce) keeps being answered."""

MAX_HINTS = 10_000
"""Hints kept at most; the oldest read goes first."""

Key = tuple[str, str]
"""``(exten, context)``."""


def _cacheable(info: ExtensionInfo) -> bool:
    return info.hint is not None and info.state >= 0


class HintStates:
    """The last announced state of each hint, and the extensions read that point at it.

    ``good_status`` are the state codes counted as available (``[url] good_status``).
    """

    __slots__ = ("_answers", "_confirmed", "_seq", "_states", "good_status")

    def __init__(self, good_status: tuple[int, ...]) -> None:
        self.good_status = good_status
        """The codes counted as available, now (a reload changes them)."""
        self._answers: dict[Key, ExtensionInfo] = {}
        """The last answer for each extension asked for (its ``hint`` names its entry of ``_states``)."""
        self._confirmed: dict[Key, float] = {}
        """When (``mono``) ``ExtensionState`` last answered for each extension."""
        self._states: dict[str, tuple[int, int]] = {}
        """Hint (device string) -> (state code, sequence number of the event or read that set it)."""
        self._seq = 0

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, exten: str, context: str, mono: float) -> ExtensionInfo | None:
        """The state of ``exten@context`` if its hint is known and was read less than :data:`CONFIRM_S` ago."""
        key = (exten, context)
        info = self._answers.get(key)
        if info is None or mono - self._confirmed[key] >= CONFIRM_S:
            return None
        state = self._states.get(info.hint or "")
        if state is None or state[0] < 0:  # -2 Removed, -1 Deactivated: read it again
            return None
        if state[0] != info.state or info.available != (state[0] in self.good_status):  # moved, or reloaded
            info = self._answers[key] = self._info(exten, context, info.hint, state[0])
        return info

    def reading(self) -> int:
        """An ``ExtensionState`` action is about to be sent; returns the token to give :meth:`answered`."""
        return self._seq

    def answered(self, info: ExtensionInfo, token: int, mono: float) -> ExtensionInfo:
        """Keep the ``ExtensionState`` answer ``info`` read at ``mono``; returns the state to answer with.

        An ``ExtensionStatus`` for its hint that arrived after the action was
        sent (after ``token``) is at least as new as the answer, so its state wins.
        """
        key = (info.exten, info.context)
        hint = info.hint
        if hint is not None:
            state = self._states.get(hint)
            if state is not None and state[1] > token:
                info = self._info(info.exten, info.context, hint, state[0])
            elif info.state >= 0:
                self._keep(hint, info.state, token)
        if not _cacheable(info):
            self._answers.pop(key, None)
            self._confirmed.pop(key, None)
            return info
        if key not in self._answers and len(self._answers) >= MAX_HINTS:
            oldest = next(iter(self._answers))
            del self._answers[oldest], self._confirmed[oldest]
        self._answers[key] = info
        self._confirmed[key] = mono
        return info

    def on_event(self, event: Event) -> None:
        """Fold one AMI event; only ``ExtensionStatus`` (Exten, Context, Hint, Status) matters."""
        if event.name != "ExtensionStatus":
            return
        hint = event.get("Hint")
        if not hint:
            return
        try:
            code = int(event.get("Status") or "")
        except ValueError:
            code = -1
        self._seq += 1
        # Kept even when negative (-2 Removed): a read in flight must not keep its older answer.
        self._keep(hint, code, self._seq)

    def clear(self) -> None:
        """Forget every state (the AMI link dropped: what changed meanwhile was not announced)."""
        self._answers.clear()
        self._confirmed.clear()
        self._states.clear()

    def _keep(self, hint: str, code: int, seq: int) -> None:
        states = self._states
        if hint not in states and len(states) >= MAX_HINTS:
            del states[next(iter(states))]
        states[hint] = (code, seq)

    def _info(self, exten: str, context: str, hint: str | None, code: int) -> ExtensionInfo:
        return ExtensionInfo(exten, context, hint, code, extension_state_name(code), code in self.good_status)
