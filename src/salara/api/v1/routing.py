"""``GET /v1/routing/decisions``: the last incoming-call routing decisions and the CRM circuit breaker.

Read from the router's journal (:mod:`salara.routing.journal`, the last
1,000 decisions in memory) and its breaker (:mod:`salara.routing.breaker`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Protocol

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from salara.api.v1.context import RouteContext
from salara.routing.breaker import CircuitBreaker
from salara.routing.journal import JOURNAL_SIZE, DecisionJournal, DecisionRecord
from salara.states import extension_state_name
from salara.utc import utc_datetime


class RoutingSource(Protocol):
    """What the route reads: the router's journal and breaker (:class:`salara.routing.script.Router`)."""

    journal: DecisionJournal
    breaker: CircuitBreaker


class CandidateView(BaseModel):
    exten: str
    source: str = Field(description="Where it came from: crm, cache, table or default.")
    state: int | None = Field(None, description="Its extension state code when tried (null: unknown, taken on trust).")
    state_text: str | None = Field(None, description="Asterisk's name of that state: Idle, InUse, Unavailable...")
    verdict: Literal["chosen", "refused", "untried"]


class CrmAnswerView(BaseModel):
    exten: str | None = Field(None, description="The extension the CRM (or its cached answer) named; null: none.")
    caller_name: str | None = Field(None, description="The caller name the CRM gave.")
    source: str = Field(description="`crm`, or `cache` when a recent answer stood in for a failing CRM.")
    error: str | None = Field(None, description="Why there was no usable answer (timeout, error, circuit open...).")


class DecisionView(BaseModel):
    id: int = Field(description="Increasing from 1 since salara started.")
    at: datetime
    caller: str = Field(description="The caller's number (empty when withheld).")
    context: str
    crm: CrmAnswerView
    candidates: list[CandidateView] = Field(description="In the order tried.")
    destination: str | None = Field(None, description="Where the call was sent; null: it stayed in the dialplan.")
    source: str = Field(description="crm, cache, table, default, or none.")
    reason: str
    elapsed_ms: float = Field(description="Time the decision took, CRM lookup included, milliseconds.")
    call_id: str | None = Field(None, description="The call's id (Linkedid); null when routed untracked.")


class BreakerView(BaseModel):
    state: Literal["closed", "open", "half_open"] = Field(
        description="`open`: lookups skipped; `half_open`: one trial lookup under way."
    )
    consecutive_failures: int
    failures_to_open: int = Field(description="[routing] breaker_failures.")
    cooldown_s: float = Field(description="[routing] breaker_cooldown.")
    retry_in_s: float | None = Field(None, description="While open: seconds until a trial lookup may run.")


class DecisionList(BaseModel):
    decisions: list[DecisionView] = Field(description="Newest first.")
    breaker: BreakerView | None = Field(None, description="The CRM circuit breaker; null when salara routes no calls.")


def decision_view(entry: DecisionRecord) -> DecisionView:
    return DecisionView(
        id=entry.id,
        at=utc_datetime(entry.at),
        caller=entry.caller,
        context=entry.context,
        crm=CrmAnswerView(
            exten=entry.crm.exten, caller_name=entry.crm.caller_name, source=entry.crm.source, error=entry.crm.error
        ),
        candidates=[
            CandidateView(
                exten=c.exten,
                source=c.source,
                state=c.state,
                state_text=None if c.state is None else extension_state_name(c.state),
                verdict=c.verdict,
            )
            for c in entry.candidates
        ],
        destination=entry.exten,
        source=entry.source,
        reason=entry.reason,
        elapsed_ms=round(entry.elapsed_s * 1000, 3),
        call_id=entry.call_id,
    )


def breaker_view(breaker: CircuitBreaker, mono: float) -> BreakerView:
    """The breaker as shown; ``mono`` is ``time.monotonic()`` now."""
    state: Literal["closed", "open", "half_open"] = "closed"
    retry_in = None
    if breaker.opened_at is not None:
        state = "half_open" if breaker.trial_running else "open"
        retry_in = round(max(0.0, breaker.cooldown_s - (mono - breaker.opened_at)), 3)
    return BreakerView(
        state=state,
        consecutive_failures=breaker.consecutive,
        failures_to_open=breaker.failures,
        cooldown_s=breaker.cooldown_s,
        retry_in_s=retry_in,
    )


EXAMPLE: Final[dict[str, Any]] = {
    "decisions": [
        {
            "id": 42,
            "at": "2026-12-02T10:42:07.311Z",
            "caller": "5552003",
            "context": "phones",
            "crm": {"exten": "8002", "caller_name": "Anna Petrova", "source": "crm", "error": None},
            "candidates": [
                {"exten": "8002", "source": "crm", "state": 4, "state_text": "Unavailable", "verdict": "refused"},
                {"exten": "9001", "source": "table", "state": 0, "state_text": "Idle", "verdict": "chosen"},
                {"exten": "710", "source": "default", "state": None, "state_text": None, "verdict": "untried"},
            ],
            "destination": "9001",
            "source": "table",
            "reason": "crm 8002 refused: state 4 Unavailable; table 9001 chosen: state 0 Idle",
            "elapsed_ms": 38.2,
            "call_id": "1796167304.12",
        }
    ],
    "breaker": {
        "state": "closed",
        "consecutive_failures": 0,
        "failures_to_open": 5,
        "cooldown_s": 30.0,
        "retry_in_s": None,
    },
}


def add_routes(router: APIRouter, ctx: RouteContext, routing: RoutingSource | None) -> None:
    """Add ``GET /v1/routing/decisions`` to ``router``, over ``routing`` (None: no decisions, no breaker)."""

    @router.get(
        "/routing/decisions",
        tags=["operations"],
        operation_id="listRoutingDecisions",
        response_model=DecisionList,
        responses={200: {"content": {"application/json": {"example": EXAMPLE}}}},
    )
    async def routing_decisions(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=JOURNAL_SIZE, description="At most this many, newest first.")] = 100,
        caller: Annotated[
            str | None,
            Query(max_length=80, pattern=r"^[0-9A-Za-z+*#_.-]*$", description="Only callers whose number contains it."),
        ] = None,
    ) -> DecisionList:
        """The last incoming-call routing decisions (salara keeps 1,000 in memory) and the CRM circuit breaker.

        Each: the caller, what the CRM answered (or why not), every candidate
        destination in the order tried with its extension state and verdict,
        the destination chosen, its source and the time taken. A token
        without `admin` sees the decisions of the calls it sees (those in its
        contexts), and none routed untracked.
        """
        ctx.authorize(request, "state", None, None)
        if routing is None:
            return DecisionList(decisions=[], breaker=None)
        viewer = ctx.access.viewer(request)
        entries = routing.journal.recent(JOURNAL_SIZE if not viewer.sees_all else limit, caller=caller)
        if not viewer.sees_all:
            sees = ctx.control.sees_call
            entries = [e for e in entries if e.call_id is not None and sees(viewer, e.call_id)][:limit]
        return DecisionList(
            decisions=[decision_view(e) for e in entries], breaker=breaker_view(routing.breaker, time.monotonic())
        )
