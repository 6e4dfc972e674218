"""What the console's Recent calls and Health views read, as JSON bodies.

- :func:`recent_calls`: the ended calls the call model keeps (the last
  1,000, for an hour: :class:`~salara.calls.registry.CallRegistry`), newest
  first, those the viewer sees, optionally those with a number.
- :class:`Health`: AMI's state and last error, Asterisk's version (AMI
  ``CoreSettings``, asked once per AMI login), the outbox's depth and the
  age of its oldest pending event, the CRM circuit breaker, and the CRM
  lookup and webhook delivery latency over the last hour (:mod:`salara.series`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from salara.api.v1.models import call_view
from salara.api.v1.routing import breaker_view
from salara.calls.call import Call
from salara.calls.visibility import Viewer, sees
from salara.control import CallControl
from salara.errors import AMIError
from salara.metrics import Metrics
from salara.store.interface import StoreError
from salara.store.records import OPEN_STATUSES

log = logging.getLogger(__name__)

VERSION_TIMEOUT_S = 2.0


def _numbers(call: Call) -> list[str]:
    found = [call.from_, call.to]
    if call.first is not None:
        found += [call.first.caller_number, call.first.connected_number, call.first.exten]
    return [n for n in found if n]


def recent_calls(control: CallControl, viewer: Viewer, number: str | None, limit: int) -> dict[str, Any]:
    """``{"calls": [CallView + "duration_s" + "talk_s"...]}``: ended calls, newest first.

    ``number`` keeps the calls one of whose numbers (from, to, the first
    channel's caller, connected line and extension) contains it.
    """
    registry = control.registry
    registry.prune(time.monotonic())
    out: list[dict[str, Any]] = []
    for call in reversed(registry.ended.values()):
        if not sees(viewer, call):
            continue
        if number and not any(number in n for n in _numbers(call)):
            continue
        body = call_view(call).model_dump(mode="json", by_alias=True)
        ended = call.ended_at if call.ended_at is not None else call.created_at
        body["duration_s"] = round(max(0.0, ended - call.created_at), 1)
        body["talk_s"] = None if call.answered_at is None else round(max(0.0, ended - call.answered_at), 1)
        body["caller_name"] = call.first.caller_name if call.first is not None else None
        out.append(body)
        if len(out) >= limit:
            break
    return {"calls": out}


class Health:
    """Builds the Health view's body; remembers Asterisk's version for the AMI login it was read on."""

    def __init__(self, control: CallControl, metrics: Metrics) -> None:
        self.control = control
        self.metrics = metrics
        self._version: tuple[int, str | None] | None = None

    async def asterisk_version(self) -> str | None:
        """``AsteriskVersion`` of AMI ``CoreSettings``, once per login; None while AMI is down or it failed."""
        ami = self.control.pbx.ami
        if not ami.ready:
            return None
        login = ami.stats.connects
        if self._version is not None and self._version[0] == login:
            return self._version[1]
        try:
            async with asyncio.timeout(VERSION_TIMEOUT_S):
                settings = await self.control.pbx.action("CoreSettings")
            version = settings.get("AsteriskVersion")
        except (AMIError, TimeoutError) as exc:
            log.info("Asterisk's version not read: %s", exc)
            return None
        self._version = (login, version)
        return version

    def outbox(self) -> dict[str, Any] | None:
        """``{"depth": n, "oldest_pending_age_s": s}`` (0 when none pending), None without an outbox or on error."""
        outbox = self.metrics.sources.outbox
        if outbox is None:
            return None
        try:
            depth = outbox.counts().depth
            oldest = outbox.list_events(OPEN_STATUSES, limit=1)
        except StoreError as exc:
            return {"depth": None, "oldest_pending_age_s": None, "error": str(exc)}
        age = max(0.0, time.time() - oldest[0].created_at) if oldest else 0.0
        return {"depth": depth, "oldest_pending_age_s": round(age, 1)}

    async def body(self) -> dict[str, Any]:
        """The Health view: ``{"ami", "pbxs", "asterisk_version", "outbox", "breaker", "latency", "calls_active",
        "at"}``. ``ami`` is the ``default`` PBX's; ``pbxs`` the others (``[ami NAME]``), each ``{"name", "ready",
        "host", "port", "last_error"}``.
        """
        ami = self.control.pbx.ami
        settings = self.control.config.ami
        router = self.metrics.sources.router
        wall = time.time()
        return {
            "ami": {
                "ready": ami.ready,
                "host": settings.host,
                "port": settings.port,
                "last_error": ami.last_error,
                "logins": ami.stats.connects,
                "disconnects": ami.stats.disconnects,
            },
            "pbxs": [
                {
                    "name": site.name,
                    "ready": site.ami.ready,
                    "host": site.section.host,
                    "port": site.section.port,
                    "last_error": site.ami.last_error,
                }
                for site in self.control.sites
                if site is not self.control.sites.default
            ],
            "asterisk_version": await self.asterisk_version(),
            "outbox": self.outbox(),
            "breaker": None if router is None else breaker_view(router.breaker, time.monotonic()).model_dump(),
            "latency": {
                "lookup": self.metrics.lookup_series.points(wall),
                "delivery": self.metrics.delivery_series.points(wall),
            },
            "calls_active": len(self.control.registry.active()),
            "at": wall,
        }
