"""Incoming-call routing over FastAGI: ask the CRM, check, fall back, send the call on.

The dialplan hands a call to salara with ``AGI(agi://127.0.0.1:4573/route)``.
salara decides within ``[general] curlopt_timeout`` seconds (CRM lookup
included; past it, the fallbacks decide at once), then sets
``SALARA_ROUTE`` (the destination, empty if none) and ``SALARA_ROUTE_SOURCE``
(crm, cache, table, default or none) on the channel and sends it to the
destination with ``EXEC Goto <context>,<exten>,1``. With ``route?goto=no``
only the variables are set and the dialplan after the AGI line dials.

Anything that can connect to the FastAGI port can send a variable block, so a
request is checked against what AMI reports before anything is decided
(:class:`LiveChannels`): its ``agi_uniqueid`` must be a live channel with the
same name and caller number, and the call tracked for events is that
channel's Linkedid as AMI gave it. A request that fails the check is left
alone (nothing set, the CRM not asked). While AMI cannot vouch for channels
(not logged in, or not yet resynchronised) calls are still routed, untracked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import quote

import aiohttp

from salara import fields
from salara.agi.protocol import AGIError, AGIRequest
from salara.agi.server import AGISession
from salara.ami.client import StateListener
from salara.calls import CallTracker
from salara.channels import ChannelRegistry
from salara.config import Config, parse_text
from salara.errors import AMIError, ConfigError
from salara.routing import AnswerCache, CircuitBreaker, Decision, Source, candidates, choose
from salara.service import Telephony
from salara.webhooks import read_limited

log = logging.getLogger(__name__)


class LookupFailed(Exception):
    """The CRM gave no usable destination; the message says why.

    ``definitive`` is true when the CRM answered properly that it names no
    one for this caller (404, or an answer without a usable ``key_word``): a
    working CRM, so it does not count against the circuit breaker, and a
    cached older answer must not override it.
    """

    def __init__(self, reason: str, *, definitive: bool = False) -> None:
        super().__init__(reason)
        self.definitive = definitive


MAX_ANSWER_BYTES = 64 * 1024
"""Largest CRM answer read; a routing answer is a few dozen bytes."""


class CrmLookup:
    """The CRM routing lookup (SPEC §3 step 1).

    ``dest_url`` ending in ``=`` (``...?phone=``): GET with the caller's
    number appended; otherwise POST ``{"phone": "<number>"}``. The JSON
    answer's ``key_word`` (string or integer) names the extension. Redirects
    are not followed; ``client``'s own timeout bounds each request, and the
    router bounds the lookup again by its deadline.
    """

    def __init__(self, client: aiohttp.ClientSession, url: str, key_word: str) -> None:
        self.client = client
        self.url = url
        self.key_word = key_word

    async def lookup(self, caller: str) -> str:
        """The extension the CRM names for ``caller``; raises :class:`LookupFailed` or TimeoutError."""
        try:
            if self.url.endswith("="):
                request = self.client.get(self.url + quote(caller, safe=""), allow_redirects=False)
            else:
                request = self.client.post(self.url, json={"phone": caller}, allow_redirects=False)
            async with request as response:
                body = await read_limited(response, MAX_ANSWER_BYTES)
        except aiohttp.ClientError as exc:
            raise LookupFailed(f"{type(exc).__name__}: {exc}") from None
        if response.status == 404:
            raise LookupFailed("HTTP 404: the CRM knows no one for this caller", definitive=True)
        if not 200 <= response.status < 300:
            raise LookupFailed(f"HTTP {response.status}")
        if body is None:
            raise LookupFailed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise LookupFailed("answer is not JSON (or nested too deep)") from None
        value = answer.get(self.key_word) if isinstance(answer, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise LookupFailed(f"answer has no usable {self.key_word!r}", definitive=True)
        try:
            return fields.extension(self.key_word, str(value))
        except fields.FieldError as exc:
            raise LookupFailed(str(exc), definitive=True) from None


class RouteTable:
    """The ``[route]`` table, re-read when the config file changes (``salara route set``)."""

    def __init__(self, path: Path | None, routes: dict[str, str]) -> None:
        self.path = path
        self._routes = dict(routes)
        self._stamp = self._mtime()

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns if self.path else None
        except OSError:
            return None

    def current(self) -> dict[str, str]:
        stamp = self._mtime()
        if stamp != self._stamp and self.path is not None:
            self._stamp = stamp
            try:
                self._routes = parse_text(self.path.read_text(encoding="utf-8")).routes
                log.info("route table reloaded from %s: %d entries", self.path, len(self._routes))
            except (OSError, ConfigError) as exc:
                log.error("route table not reloaded (keeping the old one): %s", exc)
        return self._routes


CHANNEL_WAIT_S: Final = 0.5
"""Longest wait for AMI to report a FastAGI request's channel (Newchannel is normally long in)."""
CHANNEL_POLL_S: Final = 0.005


@dataclass(frozen=True, slots=True)
class Verdict:
    """A FastAGI request checked against AMI.

    ``ok``: route it. ``linkedid``: the call to track (None: route untracked,
    AMI could not vouch for the channel). ``reason``: why, for the log.
    """

    ok: bool
    linkedid: str | None
    reason: str


class AMIState(Protocol):
    """What :class:`LiveChannels` needs of the AMI client."""

    @property
    def ready(self) -> bool: ...

    def add_state_listener(self, listener: StateListener) -> None: ...


class LiveChannels:
    """The live channels AMI reports (a :class:`~salara.channels.ChannelRegistry`), to check FastAGI requests.

    ``resyncs()`` counts the registry's completed resynchronisations with
    Asterisk (``CoreShowChannels``, done after every AMI login). The registry
    is trusted while AMI is logged in and it was resynchronised since the
    login: then every live channel is in it, and a channel missing from it
    does not exist.
    """

    def __init__(self, registry: ChannelRegistry, ami: AMIState, resyncs: Callable[[], int]) -> None:
        self.registry = registry
        self.ami = ami
        self._resyncs = resyncs
        self._at_login: int | None = None
        ami.add_state_listener(self._on_ami_state)

    def _on_ami_state(self, ready: bool) -> None:
        # The resync after this login runs in a task: it completes later and bumps the count.
        self._at_login = self._resyncs() if ready else None

    @property
    def trusted(self) -> bool:
        return self.ami.ready and self._at_login is not None and self._resyncs() > self._at_login

    def _match(self, request: AGIRequest, caller: str) -> tuple[str | None, str]:
        """The channel's Linkedid if the request is that live channel, else None and why not."""
        channel = self.registry.channels.get(request.uniqueid)
        if channel is None:
            return None, f"uniqueid {request.uniqueid!r} is not a live channel"
        if channel.name != request.channel:
            return None, f"uniqueid {request.uniqueid!r} is channel {channel.name!r}, not {request.channel!r}"
        if (channel.caller_number or "") != caller:
            return None, (
                f"channel {channel.name!r} has caller {channel.caller_number or '(none)'!r}, not {caller or '(none)'!r}"
            )
        return channel.linkedid, ""

    async def check(self, request: AGIRequest, caller: str, wait_s: float) -> Verdict:
        """Whether ``request`` is a live channel as AMI reports it, waiting up to ``wait_s`` for AMI to catch up."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.trusted:
                linkedid, why = self._match(request, caller)
                if linkedid is not None:
                    return Verdict(True, linkedid, "live channel")
                if time.monotonic() >= deadline:
                    return Verdict(False, None, why)
            elif not self.ami.ready:
                return Verdict(True, None, "AMI is not connected")
            elif time.monotonic() >= deadline:
                return Verdict(True, None, "AMI's channels are not resynchronised since its login")
            await asyncio.sleep(CHANNEL_POLL_S)


@dataclass(frozen=True, slots=True)
class Routed:
    """A finished routing decision and how long it took (seconds)."""

    decision: Decision
    elapsed_s: float
    crm_error: str | None


class Router:
    """Decides routes (bounded by the deadline) and serves the ``route`` FastAGI script."""

    def __init__(
        self,
        config: Config,
        telephony: Telephony,
        lookup: CrmLookup | None,
        tracker: CallTracker | None,
        table: RouteTable,
        *,
        channels: LiveChannels | None = None,
    ) -> None:
        self.config = config
        self.telephony = telephony
        self.lookup = lookup
        self.tracker = tracker
        self.table = table
        self.channels = channels
        """What FastAGI requests are checked against; None: no check, calls routed untracked."""
        routing = config.routing
        self.breaker = CircuitBreaker(routing.breaker_failures, routing.breaker_cooldown)
        self.cache = AnswerCache(routing.cache_max_age, routing.cache_size)
        self.decisions: Counter[str] = Counter()
        """Routing decisions by source, for metrics."""
        self.refused = 0
        """FastAGI requests that were not a live channel (not routed)."""
        self.untracked = 0
        """Calls routed while AMI could not vouch for their channel (no call events)."""

    @property
    def deadline_s(self) -> float:
        return self.config.general.curlopt_timeout

    async def _ask_crm(self, caller: str, budget_s: float) -> tuple[str | None, Source, str | None]:
        """The CRM's answer (or a cached one on failure) within ``budget_s`` seconds."""
        if self.lookup is None or not caller:
            return None, Source.CRM, "no CRM lookup (no dest_url or no caller number)"
        now = time.monotonic()
        error: str
        if not self.breaker.allow(now):
            error = "circuit open: CRM failing, lookup skipped"
        else:
            healthy = False
            try:
                async with asyncio.timeout(budget_s):
                    exten = await self.lookup.lookup(caller)
            except TimeoutError:
                error = f"CRM did not answer within {budget_s:.2f} s"
            except LookupFailed as exc:
                error = str(exc)
                if exc.definitive:
                    healthy = True
                    self.cache.forget(caller)
                    return None, Source.CRM, error
            except Exception as exc:  # whatever the CRM did, the caller is still routed
                log.exception("CRM lookup for %s failed unexpectedly", caller)
                error = f"{type(exc).__name__}: {exc}"
            else:
                healthy = True
                self.cache.put(caller, exten, time.monotonic())
                return exten, Source.CRM, None
            finally:
                # Settled on every path, so a half-open trial never stays open for good.
                if healthy:
                    self.breaker.success()
                else:
                    self.breaker.failure(time.monotonic())
        cached = self.cache.get(caller, time.monotonic())
        return (cached, Source.CACHE, error) if cached else (None, Source.CRM, error)

    async def _state(self, exten: str, context: str) -> int | None:
        try:
            return (await self.telephony.extension_state(exten, context)).result
        except AMIError as exc:
            log.warning("extension state of %s@%s unknown: %s", exten, context, exc)
            return None

    @property
    def channel_wait_s(self) -> float:
        """Longest wait for AMI to report a request's channel: at most a quarter of the deadline."""
        return min(CHANNEL_WAIT_S, self.deadline_s / 4)

    async def decide(self, caller: str, context: str, *, started: float | None = None) -> Routed:
        """Route ``caller``: finishes within the deadline (``curlopt_timeout`` seconds).

        The deadline runs from ``started`` (``time.monotonic()``; default now):
        time already spent on the call counts.
        """
        if started is None:
            started = time.monotonic()
        deadline = self.deadline_s
        # Keep a slice of the deadline for the extension-state checks after the lookup.
        reserve = min(0.5, deadline / 4)
        budget = deadline - reserve - (time.monotonic() - started)
        crm_exten, crm_source, crm_error = await self._ask_crm(caller, budget)
        options = candidates(caller, crm_exten, crm_source, self.table.current(), self.config.general.default)
        states: dict[str, int | None] = {}
        try:
            async with asyncio.timeout(max(0.0, deadline - (time.monotonic() - started))):
                codes = await asyncio.gather(*(self._state(o.exten, context) for o in options))
            states = dict(zip((o.exten for o in options), codes, strict=True))
        except TimeoutError:
            log.warning("extension states not read within the deadline; routing on trust")
        decision = choose(options, states, self.config.url.good_status)
        elapsed = time.monotonic() - started
        self.decisions[decision.source] += 1
        log.info(
            "route %s -> %s via %s in %.1f ms (%s)%s",
            caller or "<unknown>",
            decision.exten or "(stays)",
            decision.source,
            elapsed * 1000,
            decision.reason,
            f"; CRM: {crm_error}" if crm_error else "",
        )
        return Routed(decision, elapsed, crm_error)

    async def handle(self, session: AGISession) -> None:
        """The FastAGI handler: ``agi://host:port/route[?context=ctx&goto=no]``."""
        started = time.monotonic()
        request = session.request
        script = request.network_script.strip("/")
        if script != "route":
            log.warning("FastAGI script %r is not known (use /route); call left alone", script)
            await session.verbose(f"salara: unknown script {script}")
            return
        context = request.query.get("context") or self.config.general.default_context
        try:
            fields.context("context", context)
        except fields.FieldError as exc:
            log.warning("FastAGI route: %s; call left alone", exc)
            return
        caller = request.callerid if request.callerid not in ("", "unknown") else ""
        verdict = await self._check(request, caller)
        if not verdict.ok:
            self.refused += 1
            log.warning(
                "FastAGI %s: not a live channel as AMI reports it (%s); not routed", session.peer, verdict.reason
            )
            return
        if verdict.linkedid is None:
            self.untracked += 1
            log.warning(
                "FastAGI %s (%s): %s; routing without tracking (no call events for it)",
                session.peer,
                request.channel,
                verdict.reason,
            )
        try:
            routed = await self.decide(caller, context, started=started)
        except Exception:
            # A bug must not leave the caller unrouted: fall back without the CRM.
            log.exception("routing %s failed; using the table and default", caller)
            options = candidates(caller, None, Source.CRM, self.table.current(), self.config.general.default)
            routed = Routed(choose(options, {}, self.config.url.good_status), 0.0, "routing failed")
        decision = routed.decision
        try:
            await session.set_variable("SALARA_ROUTE", decision.exten or "")
            await session.set_variable("SALARA_ROUTE_SOURCE", str(decision.source))
            if decision.exten is None:
                return
            if self.tracker is not None and verdict.linkedid is not None:
                call = self.tracker.track(verdict.linkedid, caller, decision.exten, "route", time.monotonic())
                # Started before salara saw it: at least this channel is live.
                call.channels.add(request.uniqueid)
            if request.query.get("goto", "yes").lower() not in ("no", "0", "false"):
                await session.exec("Goto", f"{context},{decision.exten},1")
        except AGIError as exc:
            log.warning("route of %s not applied: %s", request.channel, exc)

    async def _check(self, request: AGIRequest, caller: str) -> Verdict:
        if self.channels is None:
            return Verdict(True, None, "no channel registry to check against")
        try:
            return await self.channels.check(request, caller, self.channel_wait_s)
        except Exception:
            log.exception("checking FastAGI request %s failed; routing it untracked", request.channel)
            return Verdict(True, None, "the check failed")
