"""The last routing decisions, kept in memory for ``GET /v1/routing/decisions`` and the console.

Pure: no clock (``wall`` Unix seconds and durations are arguments). Bounded:
a ring of the last :data:`JOURNAL_SIZE` decisions; older ones are dropped.
Each record says who called, what the CRM answered (or why it did not),
every candidate in the order tried with the extension state read for it and
whether it was chosen, refused or not tried, the destination, its source and
the time the decision took.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from salara.routing.decision import Candidate, Decision, Source

JOURNAL_SIZE: Final = 1_000

Verdict = Literal["chosen", "refused", "untried"]


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    """One destination considered: ``state`` is the extension state code read (None: unknown, taken on trust)."""

    exten: str
    source: Source
    state: int | None
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """What the CRM lookup gave: its extension and caller name (None when not given), or the error."""

    exten: str | None
    caller_name: str | None
    source: Source
    """``crm``, or ``cache`` when a recent answer stood in for a failing CRM."""
    error: str | None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One routing decision, as the journal keeps it."""

    id: int
    """Increasing from 1 in this process (a client pages with it)."""
    at: float
    """When the decision was made, Unix seconds."""
    caller: str
    context: str
    crm: CrmRecord
    candidates: tuple[CandidateRecord, ...]
    exten: str | None
    """The destination; None when the call stayed where it was."""
    source: Source
    reason: str
    elapsed_s: float
    call_id: str | None
    """The call's Linkedid as AMI reported it; None when routed untracked."""


def candidate_records(
    options: Sequence[Candidate], states: Mapping[str, int | None], decision: Decision
) -> tuple[CandidateRecord, ...]:
    """Each option with its state and verdict: those before the chosen one were refused, those after not tried.

    >>> options = [Candidate("8002", Source.CRM), Candidate("710", Source.DEFAULT)]
    >>> [(c.exten, c.state, c.verdict) for c in candidate_records(options, {"8002": 4, "710": 0},
    ...     Decision("710", Source.DEFAULT, ""))]
    [('8002', 4, 'refused'), ('710', 0, 'chosen')]
    """
    out = []
    chosen_seen = False
    for option in options:
        verdict: Verdict
        if chosen_seen:
            verdict = "untried"
        elif decision.exten is not None and option.exten == decision.exten and option.source == decision.source:
            verdict = "chosen"
            chosen_seen = True
        else:
            verdict = "refused"
        out.append(CandidateRecord(option.exten, option.source, states.get(option.exten), verdict))
    return tuple(out)


class DecisionJournal:
    """The last ``size`` routing decisions, oldest first in memory, newest first when read."""

    def __init__(self, size: int = JOURNAL_SIZE) -> None:
        self.size = size
        self._records: deque[DecisionRecord] = deque(maxlen=size)
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._records)

    def record(
        self,
        *,
        wall: float,
        caller: str,
        context: str,
        crm: CrmRecord,
        candidates: tuple[CandidateRecord, ...],
        decision: Decision,
        elapsed_s: float,
        call_id: str | None = None,
    ) -> DecisionRecord:
        """Keep one decision (the oldest is dropped beyond ``size``) and return its record."""
        entry = DecisionRecord(
            next(self._ids),
            wall,
            caller,
            context,
            crm,
            candidates,
            decision.exten,
            decision.source,
            decision.reason,
            elapsed_s,
            call_id,
        )
        self._records.append(entry)
        return entry

    def recent(self, limit: int = JOURNAL_SIZE, *, caller: str | None = None) -> list[DecisionRecord]:
        """Up to ``limit`` decisions, newest first; with ``caller``, only those whose caller number contains it."""
        out: list[DecisionRecord] = []
        for entry in reversed(self._records):
            if caller and caller not in entry.caller:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out
