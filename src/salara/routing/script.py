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
(:class:`~salara.routing.channels.LiveChannels`): its ``agi_uniqueid`` must be a live channel with the
same name and caller number, and the call tracked for events is that
channel's Linkedid as AMI gave it. A request that fails the check is left
alone (nothing set, the CRM not asked). While AMI cannot vouch for channels
(not logged in, or not yet resynchronised) calls are still routed, untracked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from salara import fields
from salara.agi.protocol import AGIRequest
from salara.agi.server import AGISession
from salara.calls.recording import RecordingError, mixmonitor_file
from salara.calls.tracking import CallTracker
from salara.config import Config
from salara.crm.lookup import CrmLookup, LookupAnswer, LookupFailed
from salara.errors import AGIError, AMIError
from salara.logsafe import escape
from salara.pbx import PBX
from salara.routing.breaker import CircuitBreaker
from salara.routing.cache import AnswerCache
from salara.routing.channels import CHANNEL_WAIT_S, LiveChannels, Verdict
from salara.routing.decision import Decision, Source, candidates, choose
from salara.routing.journal import CrmRecord, DecisionJournal, candidate_records
from salara.routing.table import RouteTable
from salara.sites import Sites

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Routed:
    """A finished routing decision and how long it took (seconds)."""

    decision: Decision
    elapsed_s: float
    crm_error: str | None
    crm_answer: LookupAnswer | None = None
    """The CRM's own answer, when it gave one (its caller name and client state)."""


class Router:
    """Decides routes (bounded by the deadline) and serves the ``route`` FastAGI script."""

    def __init__(
        self,
        config: Config,
        pbx: PBX,
        lookup: CrmLookup | None,
        tracker: CallTracker | None,
        table: RouteTable,
        *,
        channels: LiveChannels | None = None,
        sites: Sites | None = None,
    ) -> None:
        self.config = config
        self.pbx = pbx
        self.sites = sites
        """With several PBXs: which one a FastAGI connection comes from (its PBX and channels are then used)."""
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
        self.on_lookup: Callable[[bool, float], None] | None = None
        """Told each CRM lookup tried (answered or not) and its duration in seconds (:mod:`salara.metrics`)."""
        self.refused = 0
        """FastAGI requests that were not a live channel (not routed)."""
        self.untracked = 0
        """Calls routed while AMI could not vouch for their channel (no call events)."""
        self.journal = DecisionJournal()
        """The last routing decisions (``GET /v1/routing/decisions``, the console)."""

    @property
    def deadline_s(self) -> float:
        return self.config.general.curlopt_timeout

    async def _ask_crm(self, caller: str, budget_s: float) -> tuple[LookupAnswer | None, Source, str | None]:
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
                    answer = await self.lookup.lookup(caller)
            except TimeoutError:
                error = f"CRM did not answer within {budget_s:.2f} s"
            except LookupFailed as exc:
                error = str(exc)
                if exc.definitive:
                    healthy = True
                    self.cache.forget(caller)
                    return None, Source.CRM, error
            except Exception as exc:  # whatever the CRM did, the caller is still routed
                log.exception("CRM lookup for %s failed unexpectedly", escape(caller))
                error = f"{type(exc).__name__}: {exc}"
            else:
                healthy = True
                self.cache.put(caller, answer.exten, time.monotonic())
                return answer, Source.CRM, None
            finally:
                # Settled on every path, so a half-open trial never stays open for good.
                if healthy:
                    self.breaker.success()
                else:
                    self.breaker.failure(time.monotonic())
                if self.on_lookup is not None:
                    self.on_lookup(healthy, time.monotonic() - now)
        cached = self.cache.get(caller, time.monotonic())
        return (LookupAnswer(cached), Source.CACHE, error) if cached else (None, Source.CRM, error)

    async def _state(self, pbx: PBX, exten: str, context: str) -> int | None:
        try:
            return (await pbx.extension_state(exten, context)).state
        except AMIError as exc:
            log.warning("extension state of %s@%s unknown: %s", escape(exten), escape(context), escape(exc))
            return None

    @property
    def channel_wait_s(self) -> float:
        """Longest wait for AMI to report a request's channel: at most a quarter of the deadline."""
        return min(CHANNEL_WAIT_S, self.deadline_s / 4)

    async def decide(
        self,
        caller: str,
        context: str,
        *,
        started: float | None = None,
        call_id: str | None = None,
        pbx: PBX | None = None,
    ) -> Routed:
        """Route ``caller``: finishes within the deadline (``curlopt_timeout`` seconds).

        The deadline runs from ``started`` (``time.monotonic()``; default now):
        time already spent on the call counts. The decision is kept in
        :attr:`journal` (with ``call_id``, the call's Linkedid, when known).
        States are read on ``pbx`` (default: the ``default`` PBX).
        """
        pbx = pbx or self.pbx
        if started is None:
            started = time.monotonic()
        deadline = self.deadline_s
        # Keep a slice of the deadline for the extension-state checks after the lookup.
        reserve = min(0.5, deadline / 4)
        budget = deadline - reserve - (time.monotonic() - started)
        crm_answer, crm_source, crm_error = await self._ask_crm(caller, budget)
        crm_exten = crm_answer.exten if crm_answer is not None else None
        options = candidates(caller, crm_exten, crm_source, self.table.current(), self.config.general.default)
        states: dict[str, int | None] = {}
        try:
            async with asyncio.timeout(max(0.0, deadline - (time.monotonic() - started))):
                codes = await asyncio.gather(*(self._state(pbx, o.exten, context) for o in options))
            states = dict(zip((o.exten for o in options), codes, strict=True))
        except TimeoutError:
            log.warning("extension states not read within the deadline; routing on trust")
        decision = choose(options, states, self.config.url.good_status)
        elapsed = time.monotonic() - started
        self.decisions[decision.source] += 1
        crm = CrmRecord(crm_exten, crm_answer.caller_name if crm_answer else None, crm_source, crm_error)
        self.journal.record(
            wall=time.time(),
            caller=caller,
            context=context,
            crm=crm,
            candidates=candidate_records(options, states, decision),
            decision=decision,
            elapsed_s=elapsed,
            call_id=call_id,
        )
        log.info(
            "route %s -> %s via %s in %.1f ms (%s)%s",
            escape(caller) or "<unknown>",
            escape(decision.exten or "(stays)"),
            decision.source,
            elapsed * 1000,
            escape(decision.reason),
            f"; CRM: {escape(crm_error)}" if crm_error else "",
        )
        return Routed(decision, elapsed, crm_error, crm_answer)

    async def handle(self, session: AGISession) -> None:
        """The FastAGI handler: ``agi://host:port/route[?context=ctx&goto=no]``."""
        started = time.monotonic()
        request = session.request
        script = request.network_script.strip("/")
        if script != "route":
            log.warning("FastAGI script '%s' is not known (use /route); call left alone", escape(script))
            await session.verbose(f"salara: unknown script {escape(script)}")
            return
        context = request.query.get("context") or self.config.general.default_context
        try:
            fields.context("context", context)
        except fields.FieldError as exc:
            log.warning("FastAGI route: %s; call left alone", escape(exc))
            return
        caller = request.callerid if request.callerid not in ("", "unknown") else ""
        pbx, channels = self.pbx, self.channels
        if self.sites is not None and self.sites.several:
            site = self.sites.of_peer(session.peer.rpartition(":")[0], request.query.get("pbx"))
            pbx, channels = site.pbx, site.channels
        verdict = await self._check(request, caller, channels)
        if not verdict.ok:
            self.refused += 1
            log.warning(
                "FastAGI %s: not a live channel as AMI reports it (%s); not routed",
                session.peer,
                escape(verdict.reason),
            )
            return
        if verdict.linkedid is None:
            self.untracked += 1
            log.warning(
                "FastAGI %s (%s): %s; routing without tracking (no call events for it)",
                session.peer,
                escape(request.channel),
                escape(verdict.reason),
            )
        try:
            routed = await self.decide(caller, context, started=started, call_id=verdict.linkedid, pbx=pbx)
        except Exception:
            # A bug must not leave the caller unrouted: fall back without the CRM.
            log.exception("routing %s failed; using the table and default", escape(caller))
            options = candidates(caller, None, Source.CRM, self.table.current(), self.config.general.default)
            routed = Routed(choose(options, {}, self.config.url.good_status), 0.0, "routing failed")
        decision = routed.decision
        try:
            await session.set_variable("SALARA_ROUTE", decision.exten or "")
            await session.set_variable("SALARA_ROUTE_SOURCE", str(decision.source))
            if decision.exten is None:
                return
            answer = routed.crm_answer  # its name is the caller's wherever the call goes
            if answer is not None and answer.caller_name is not None:
                await session.set_variable("CALLERID(name)", answer.caller_name)  # the operator's phone shows it
            if self.tracker is not None and verdict.linkedid is not None:
                client_state = answer.client_state if answer is not None else None
                now = time.time(), time.monotonic()
                self.tracker.track(verdict.linkedid, caller, decision.exten, "route", *now, client_state=client_state)
                await self._record(session, verdict.linkedid)
            if request.query.get("goto", "yes").lower() not in ("no", "0", "false"):
                await session.exec("Goto", f"{context},{decision.exten},1")
        except AGIError as exc:
            log.warning("route of %s not applied: %s", escape(request.channel), escape(exc))

    async def _record(self, session: AGISession, linkedid: str) -> None:
        """``[recordings] record_inbound``: ``EXEC MixMonitor salara-rec-<id>.<format>,b`` (only while bridged)."""
        recordings = self.config.recordings
        if not recordings.record_inbound or self.tracker is None:
            return
        try:
            file = mixmonitor_file(linkedid, recordings.format)
        except RecordingError as exc:
            log.warning("call not recorded: %s", escape(exc))
            return
        if (await session.exec("MixMonitor", file, "b")).result_int == -2:
            log.warning("call %s not recorded: Asterisk has no MixMonitor (app_mixmonitor)", linkedid)
            return
        call = self.tracker.registry.calls.get(linkedid)
        if call is not None:
            call.recording = file

    async def _check(self, request: AGIRequest, caller: str, channels: LiveChannels | None) -> Verdict:
        if channels is None:
            return Verdict(True, None, "no channel registry to check against")
        try:
            return await channels.check(request, caller, self.channel_wait_s)
        except Exception:
            log.exception("checking FastAGI request %s failed; routing it untracked", escape(request.channel))
            return Verdict(True, None, "the check failed")
