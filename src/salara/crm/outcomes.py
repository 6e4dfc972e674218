"""What each delivery attempt's answer makes of the delivery: the result the store records, logged, counted.

Pure (it logs): :class:`Outcomes` turns a :class:`~salara.crm.answers.Verdict`
(or no answer) into a :class:`~salara.store.records.Result`: delivered;
retried on the schedule (:class:`~salara.crm.schedule.Schedule`); dead when
the schedule ends, or at ``410 Gone`` on the ``default`` endpoint; on a
``[webhook NAME]`` endpoint a ``410 Gone`` leaves the delivery due (the
worker disables the endpoint). It logs what an operator needs once per
change (failing, taking again, an old CRM's answer without a status line),
each dead event, and keeps the counters of metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from salara.crm.answers import Verdict
from salara.crm.schedule import RETRY_AFTER_STATUSES, Schedule, retry_after_s
from salara.logsafe import escape
from salara.store.records import Claimed, Result

log = logging.getLogger("salara.crm.delivery")

ANSWER_LOG_BYTES: Final = 256
"""How much of each answer's body the attempt log keeps."""


@dataclass(slots=True)
class DeliveryStats:
    """Counters of delivery attempts by outcome, for metrics."""

    delivered: int = 0
    retried: int = 0
    """Attempts that failed and will be tried again."""
    dead: int = 0
    """Deliveries whose schedule ended (or a ``410 Gone`` on ``default``)."""
    last_error: str | None = None
    peak_in_flight: int = 0
    """Most requests under way at once so far."""


class Outcomes:
    """The outcomes of the attempts to one endpoint (module doc)."""

    def __init__(self, endpoint: str, shown_url: str, schedule: Schedule, *, disable_on_gone: bool) -> None:
        self.endpoint = endpoint
        self.shown_url = shown_url
        self.schedule = schedule
        self.disable_on_gone = disable_on_gone
        self.stats = DeliveryStats()
        self._failing = False
        self._legacy_told = False

    def result(self, event: Claimed, at: float, verdict: Verdict | None, error: str, latency_s: float = 0.0) -> Result:
        """The result of one attempt at ``at`` (Unix s): ``verdict`` on the answer, or None with ``error``."""
        stats = self.stats
        status = verdict.status if verdict is not None else None
        body = verdict.body if verdict is not None else None
        latency_ms = round(latency_s * 1000, 3)
        answer = body[:ANSWER_LOG_BYTES].decode(errors="replace") if body else None
        if verdict is not None and verdict.taken:
            stats.delivered += 1
            self._taken(verdict)
            return Result(event, "delivered", at, status, latency_ms=latency_ms, answer=answer)
        error = verdict.error if verdict is not None else error
        stats.last_error = error
        if status == 410:
            if self.disable_on_gone:
                log.warning(
                    "webhook %s (%s) answered 410 Gone: disabled, its events wait until an admin enables it"
                    " (POST /v1/webhooks/%s/enable)",
                    self.endpoint,
                    self.shown_url,
                    self.endpoint,
                )
                stats.retried += 1
                return Result(event, "retry", at, status, error, at, latency_ms=latency_ms, answer=answer)
            stats.dead += 1
            log.info("CRM %s answered 410 Gone to event %s; it is not sent again", self.shown_url, event.id)
            return Result(event, "dead", at, status, error, latency_ms=latency_ms, answer=answer)
        self._refused(event, error)
        wait_s = None
        if verdict is not None and status in RETRY_AFTER_STATUSES:
            wait_s = retry_after_s(verdict.retry_after, at)
        outcome, next_at = self.schedule.after_failure(
            attempts=event.attempts, created_at=event.created_at or at, at=at, status=status, retry_after_s=wait_s
        )
        if outcome == "dead":
            stats.dead += 1
            log.warning(
                "webhook %s: event %s is dead after %d attempts (%s); the next events of its call go on",
                self.endpoint,
                event.id,
                event.attempts + 1,
                escape(error),
            )
            return Result(event, "dead", at, status, error, latency_ms=latency_ms, answer=answer)
        stats.retried += 1
        return Result(event, "retry", at, status, error, next_at, latency_ms=latency_ms, answer=answer)

    def _taken(self, verdict: Verdict) -> None:
        if verdict.legacy and not self._legacy_told:
            self._legacy_told = True
            log.warning(
                "CRM %s answers without an HTTP status line (a bare JSON object, as for the old module);"
                " such answers count as delivered",
                self.shown_url,
            )
        if self._failing:
            self._failing = False
            log.info("CRM %s accepts events again", self.shown_url)

    def _refused(self, event: Claimed, error: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "CRM %s did not take event %s (%s); events wait in the outbox", self.shown_url, event.id, escape(error)
            )
        else:
            log.debug("CRM %s did not take event %s: %s", self.shown_url, event.id, escape(error))
