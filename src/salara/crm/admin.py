"""What an admin does with the event endpoints while salara runs: list, change, enable, retry, replay, read logs.

The service behind ``/v1/webhooks``, ``/v1/event-log`` and ``salara events``:
it reads and re-queues deliveries in the store, enables an endpoint a
``410 Gone`` disabled, and writes ``[webhook NAME]`` sections through the
config editor (atomically, as ``salara route set`` does) and then reloads
the config, so the new endpoint's worker starts at once.

Shapes are plain JSON-ready dicts (times ISO 8601 UTC); control characters
in what a CRM answered are escaped (:func:`~salara.logsafe.escape`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from salara.config import Config, mask_url, save_webhook
from salara.config.webhooks import Webhook
from salara.crm.endpoints import Deliveries
from salara.errors import ConfigError, NotFound
from salara.logsafe import escape
from salara.store.records import DEFAULT_ENDPOINT, EventInfo, Status
from salara.utc import utc_timestamp

STATUSES: tuple[Status, ...] = ("blocked", "ready", "sending", "delivered", "dead")
"""Every delivery status; ``pending`` in the API means blocked or ready."""


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else utc_timestamp(seconds)


class WebhookAdmin:
    """Endpoints of ``deliveries`` under the config ``config()`` returns; ``reload()`` applies a written change."""

    def __init__(self, deliveries: Deliveries, config: Callable[[], Config], reload: Callable[[], object]) -> None:
        self.deliveries = deliveries
        self.store = deliveries.store
        self._config = config
        self._reload = reload

    # -- endpoints ---------------------------------------------------------------

    def names(self) -> list[str]:
        """The endpoints' names: ``default`` first (when ``dest_url_event`` is set), then the sections'."""
        config = self._config()
        return ([DEFAULT_ENDPOINT] if config.url.dest_url_event else []) + list(config.webhooks)

    def endpoint(self, name: str) -> dict[str, Any]:
        """One endpoint: its settings (URL masked, never the secret), state and counts. Raises NotFound."""
        config = self._config()
        if name == DEFAULT_ENDPOINT and config.url.dest_url_event:
            url, payload = config.url.dest_url_event, config.event.payload
            events: list[str] = []
            signed = bool(config.url.webhook_secret)
        elif name in config.webhooks:
            webhook = config.webhooks[name]
            url, payload, events, signed = webhook.url, webhook.payload, list(webhook.events), bool(webhook.secret)
        else:
            raise NotFound(f"no webhook endpoint {name!r}")
        disabled = self.deliveries.disabled().get(name)
        counts = self.store.counts(name)
        return {
            "name": name,
            "url": mask_url(url),
            "events": events,
            "payload": payload,
            "signed": signed,
            "enabled": disabled is None,
            "disabled_at": _iso(disabled[0]) if disabled else None,
            "disabled_reason": escape(disabled[1]) if disabled else None,
            "counts": {
                "pending": counts.pending,
                "retrying": counts.retrying,
                "sending": counts.sending,
                "dead": counts.dead,
                "delivered": counts.delivered,
            },
        }

    def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, as :meth:`endpoint`."""
        return [self.endpoint(name) for name in self.names()]

    def put(self, name: str, webhook: Webhook) -> dict[str, Any]:
        """Add or change ``[webhook NAME]`` in the config file, then reload; the endpoint as it is now.

        Raises :class:`ConfigError` for a bad or reserved name, no config file,
        or a file the change would break (nothing is written then).
        """
        self._save(name, webhook.fields())
        return self.endpoint(name)

    def delete(self, name: str) -> None:
        """Remove ``[webhook NAME]`` from the config file, then reload. Raises NotFound, ConfigError."""
        if name not in self._config().webhooks:
            raise NotFound(f"no [webhook {name}] section")
        self._save(name, None)

    def _save(self, name: str, values: Mapping[str, str] | None) -> None:
        path = self._config().path
        if path is None:
            raise ConfigError("webhook " + name, None, "salara runs without a config file: nothing to write to")
        save_webhook(path, name, values)
        self._reload()

    def enable(self, name: str) -> dict[str, Any]:
        """Enable an endpoint a ``410 Gone`` disabled (its waiting events go on); the endpoint. Raises NotFound."""
        self.endpoint(name)
        self.deliveries.enable(name)
        return self.endpoint(name)

    # -- deliveries --------------------------------------------------------------

    def deliveries_of(
        self,
        name: str,
        *,
        status: str | None = None,
        call_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """A page of ``name``'s deliveries, oldest first, each with its attempts; ``next`` pages on. Raises NotFound."""
        self.endpoint(name)
        statuses: tuple[Status, ...] = STATUSES
        if status == "pending":
            statuses = ("blocked", "ready")
        elif status is not None:
            statuses = (status,)  # type: ignore[assignment]  # checked by the route's pattern
        rows = self.store.list_events(
            statuses, limit=limit, endpoint=name, call_key=call_id, type_=event_type, since=since, after=after
        )
        return {
            "deliveries": [self._delivery(row) for row in rows],
            "next": rows[-1].seq if len(rows) == limit else None,
        }

    def _delivery(self, row: EventInfo) -> dict[str, Any]:
        attempts = self.store.attempts(row.id, row.endpoint)
        return {
            "id": row.id,
            "seq": row.seq,
            "type": row.type,
            "call_id": row.call_key,
            "status": "pending" if row.status == "blocked" else row.status,
            "stored_at": _iso(row.created_at),
            "next_attempt_at": _iso(row.next_attempt_at) if row.status == "ready" else None,
            "done_at": _iso(row.done_at),
            "tries": row.attempts,
            "attempts": [
                {
                    "at": _iso(attempt.at),
                    "outcome": attempt.outcome,
                    "http_status": attempt.http_status,
                    "latency_ms": attempt.latency_ms,
                    "answer": None if attempt.answer is None else escape(attempt.answer),
                    "error": None if attempt.error is None else escape(attempt.error),
                }
                for attempt in attempts
            ],
        }

    def retry(self, name: str, event_id: str) -> int:
        """Send one event to ``name`` again (dead or delivered: from the start; waiting: now). Raises NotFound."""
        self.endpoint(name)
        changed = self.store.retry([event_id], endpoint=name, delivered=True)
        if not changed:
            raise NotFound(f"no delivery of event {event_id!r} to {name!r} that is done or waiting")
        self.deliveries.notify()
        return changed

    def replay(self, name: str, since: float) -> int:
        """Send every event stored since ``since`` (Unix s) to ``name`` again, in per-call order. Raises NotFound."""
        self.endpoint(name)
        changed = self.store.retry(endpoint=name, since=since, delivered=True)
        self.deliveries.notify()
        return changed

    # -- the event log -------------------------------------------------------------

    def event_log(self, after: int, limit: int) -> dict[str, Any]:
        """Stored events with a sequence number over ``after``, oldest first; ``next`` is the last one's."""
        rows = self.store.event_log(after, limit)
        events = [
            {
                "seq": row.seq,
                "id": row.id,
                "type": row.type,
                "call_id": row.call_key,
                "stored_at": _iso(row.created_at),
                "event": json.loads(row.body),
            }
            for row in rows
        ]
        return {"events": events, "next": rows[-1].seq if rows else after}
