"""Where an incoming call goes (SPEC §3), as pure decisions; time is an argument.

The destination candidates, in order: the extension the CRM names for the
caller (or, when the CRM fails, a recent answer of it for the same caller:
stale-if-error), the caller's ``[route]`` entry, then ``[general] default``.
The first whose extension state is in ``good_status`` wins; when none is, the
call stays where it is and the dialplan goes on after the AGI line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from salara.states import extension_state_name


class Source(StrEnum):
    """Where a routing destination came from."""

    CRM = "crm"
    CACHE = "cache"
    TABLE = "table"
    DEFAULT = "default"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Candidate:
    exten: str
    source: Source


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: ``exten`` is None when the call stays where it is."""

    exten: str | None
    source: Source
    reason: str
    """Why, in words, for the log: each candidate refused with its state, then the chosen one."""


def candidates(
    caller: str,
    crm_exten: str | None,
    crm_source: Source,
    routes: Mapping[str, str],
    default: str,
) -> list[Candidate]:
    """The destinations to try in order, without repeats or empties."""
    ordered = [
        Candidate(crm_exten or "", crm_source),
        Candidate(routes.get(caller, ""), Source.TABLE),
        Candidate(default, Source.DEFAULT),
    ]
    seen: set[str] = set()
    out = []
    for candidate in ordered:
        if candidate.exten and candidate.exten not in seen:
            seen.add(candidate.exten)
            out.append(candidate)
    return out


def choose(
    options: list[Candidate],
    states: Mapping[str, int | None],
    good_status: tuple[int, ...],
) -> Decision:
    """The first candidate whose extension state is good.

    ``states`` maps each candidate's extension to its state code, or None when
    the state could not be read (AMI down): such a candidate is taken on trust,
    since routing the call beats leaving it.

    The reason lists every candidate refused before the choice, with its
    state, then the chosen one: ``crm 9999 refused: state -1 Unknown; default
    710 chosen: state 0 Idle``.
    """
    steps = []
    for option in options:
        state = states.get(option.exten)
        if state is None:
            steps.append(f"{option.source} {option.exten} chosen: state unknown, taken on trust")
            return Decision(option.exten, option.source, "; ".join(steps))
        if state in good_status:
            steps.append(f"{option.source} {option.exten} chosen: {_state(state)}")
            return Decision(option.exten, option.source, "; ".join(steps))
        steps.append(f"{option.source} {option.exten} refused: {_state(state)}")
    steps.append("no good destination" if steps else "no destination known")
    return Decision(None, Source.NONE, "; ".join(steps))


def _state(code: int) -> str:
    return f"state {code} {extension_state_name(code)}"
