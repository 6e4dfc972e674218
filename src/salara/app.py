"""The one wiring module: build every part from the config, connect them, run them supervised.

Every AMI listener and observer is registered here (:meth:`Services.build`),
never in a constructor, so this module is where to read what feeds what:

- AMI events -> :class:`~salara.events.pipeline.EventPipeline` (the call
  model's one fold: registry, tracking, CRM events) -> store -> delivery and
  the live stream (:class:`~salara.events.hub.EventHub`); AMI events also
  go to the metrics.
- AMI logins -> :class:`~salara.events.resync.Resynchronizer` (one
  ``CoreShowChannels`` per login) and the routing's channel check.

:func:`serve` runs the long-lived parts (AMI client, delivery, resync, the
FastAGI and HTTP servers) under one :class:`asyncio.TaskGroup`: one that
raises or stops is logged by name and ends the service with
:class:`~salara.supervision.PartFailed` (``salara serve`` exits non-zero, systemd restarts it).
Per-request tasks (a FastAGI session, a live stream) are not parts.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import uvicorn

from salara.agi.server import AGIServer
from salara.ami.client import AMIClient
from salara.api.app import create_app
from salara.api.security.serving import uvicorn_options
from salara.api.security.tokens import exposure_problem
from salara.api.ui.feed import CallFeed
from salara.calls.lifecycle import CallLifecycle
from salara.calls.tracking import CallTracker
from salara.config import Config
from salara.config.changes import Reload
from salara.control import CallControl
from salara.crm.admin import WebhookAdmin
from salara.crm.delivery import DeliveryWorker
from salara.crm.endpoints import Deliveries
from salara.errors import ConfigError
from salara.events.hub import EventHub
from salara.events.pipeline import BATCH_WINDOW_S, EventPipeline
from salara.events.resync import Resynchronizer
from salara.events.retention import Retention
from salara.events.subscriptions import Subscriptions
from salara.metrics import Metrics, Sources
from salara.nodes import LeaderGauge, Node
from salara.recordings.recorder import Recorder
from salara.reload import RetiredClients, crm_client, crm_lookup, reload
from salara.routing.channels import LiveChannels
from salara.routing.script import Router
from salara.routing.table import RouteTable
from salara.sites import Sites
from salara.store.interface import Store
from salara.store.opening import open_store, wakeups
from salara.supervision import supervise
from salara.systemd import Notifier

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Every long-lived part of a running salara, connected."""

    config: Config
    ami: AMIClient
    control: CallControl
    pipeline: EventPipeline
    resync: Resynchronizer
    router: Router
    crm: aiohttp.ClientSession
    hub: EventHub
    metrics: Metrics
    outbox: Store | None = None
    deliveries: Deliveries | None = None
    feed: CallFeed | None = None
    """Wakes the console's live calls (``/ui``) after the call model folded an event."""
    node: Node | None = None  # nodes on a PostgreSQL store: this one's role (salara.nodes); None: SQLite

    @classmethod
    def build(cls, config: Config) -> Services:
        """Build and connect the parts (call inside the event loop: the CRM client needs it)."""
        sites = Sites.of(config)  # one per [ami] section: its AMI client, operations and id space
        ami, pbx = sites.default.ami, sites.default.pbx
        tracker = CallTracker(config.event)
        control = CallControl(pbx, tracker, config, sites=sites)
        hub = EventHub()
        # call.started ... call.ended: to the live stream and the store always; to the endpoints that ask
        lifecycle = CallLifecycle(
            tracker.registry, inbound_contexts=config.calls.inbound_contexts, recording_url=control.recordings.url
        )
        # Stored even without an endpoint: the event log (/v1/event-log) and call tracking over restarts.
        outbox = open_store(config.outbox)  # [outbox] url: PostgreSQL; else the SQLite file at path
        deliveries = Deliveries(outbox, config)
        if not deliveries.workers:
            log.warning("no [url] dest_url_event and no [webhook NAME]: call events are stored for /v1/event-log only")
        pipeline = EventPipeline(
            tracker,
            outbox,
            notify=deliveries.notify,
            live_listeners=[hub.publish],
            lifecycle=lifecycle,
            subscriptions=Subscriptions.of(config),
            batch_window_s=BATCH_WINDOW_S,
        )
        pipeline.restore(outbox.load_tracking())  # calls tracked before a restart; checked at AMI login
        for site in sites:
            # With several PBXs, each one's list speaks for its own channels only.
            site.resync = Resynchronizer(
                pipeline,
                site.ami,
                interval_s=config.event.sweep_interval,
                grace_s=config.event.timeout_makecall + 60,
                space=site.space if sites.several else None,
            )
            # FastAGI requests are checked against the registry, trusted once resynchronised since the login.
            site.channels = LiveChannels(tracker.registry, site.ami, site.resync.completed, site.space)
            site.ami.add_state_listener(site.resync.on_ami_state)
            site.ami.add_state_listener(site.channels.on_ami_state)
        resync = sites.default.resync
        assert resync is not None
        crm = crm_client(config)
        lookup = crm_lookup(config, crm)
        routes = RouteTable(config.path, dict(config.routes))
        router = Router(config, pbx, lookup, tracker, routes, channels=sites.default.channels, sites=sites)
        metrics = Metrics(
            Sources(
                ami=ami,
                control=control,
                hub=hub,
                pipeline=pipeline,
                outbox=outbox,
                delivery=deliveries.default,
                router=router,
                tracker=tracker,
            )
        )
        deliveries.on_attempt = metrics.observe_delivery  # every endpoint's attempts, in one histogram
        resyncs = [site.resync for site in sites if site.resync is not None]
        node = Node.of(config.outbox, control, pipeline, resyncs, outbox)  # PostgreSQL: one of several nodes
        metrics.registry.register(LeaderGauge(node))
        feed = CallFeed()
        for site in sites:
            site.add_event_listener(pipeline.on_event)
            site.add_event_listener(feed.on_event)  # after the fold: the registry has the change
            site.ami.add_event_listener(metrics.count_event)
            site.add_event_listener(Recorder(site.pbx, tracker.registry).on_event)  # after the fold
            site.ami.add_action_listener(metrics.observe_action)
        return cls(config, ami, control, pipeline, resync, router, crm, hub, metrics, outbox, deliveries, feed, node)

    def __post_init__(self) -> None:
        self.retired = RetiredClients()
        """CRM lookup clients a reload replaced, closed once their lookups are done (:mod:`salara.reload`)."""

    @property
    def delivery(self) -> DeliveryWorker | None:
        """The ``default`` endpoint's delivery worker (else the first endpoint's), for metrics; None: no endpoint."""
        return self.deliveries.default if self.deliveries is not None else None

    def parts(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The long-lived parts by name: AMI, resync, the duties (delivery...; on PostgreSQL: while leading)."""
        parts: dict[str, Callable[[], Awaitable[None]]] = {"recordings": self.control.recordings.run}  # retention
        for site in self.control.sites:
            assert site.resync is not None
            named = "" if site is self.control.sites.default else f" {site.name}"  # "ami", "ami branch"...
            parts["ami" + named], parts["resync" + named] = site.ami.run, site.resync.run
        duties: dict[str, Callable[[], Awaitable[None]]] = {}  # the node part runs them while it leads
        if self.deliveries is not None:
            duties["delivery"] = self.deliveries.run
            wake = wakeups(self.config.outbox, self.deliveries.notify)  # PostgreSQL: LISTEN/NOTIFY
            if wake is not None:
                duties["store-wakeups"] = wake
        if self.outbox is not None:
            keep_s = self.config.outbox.keep_days * 86400.0
            duties["retention"] = Retention(self.outbox, keep_s=keep_s).run
        return parts | (duties if self.node is None else {"node": functools.partial(self.node.run, duties)})

    def reload(self) -> Reload | None:
        """Read the config again and take what may change live (SIGHUP): :func:`salara.reload.reload`."""
        return reload(self)

    async def close(self) -> None:
        self.pipeline.flush()  # the events of the last batch window
        await self.retired.close_all()
        await self.crm.close()
        if self.outbox is not None:
            self.outbox.close()


def ami_status(ami: AMIClient, config: Config) -> str:
    """One line on AMI for ``systemctl status`` (sd_notify ``STATUS=``)."""
    where = f"{config.ami.host}:{config.ami.port}"
    if ami.ready:
        return f"serving; AMI connected to {where}"
    return f"serving; AMI not connected to {where}: {ami.last_error or 'connecting'}"


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens (:attr:`listening`; uvicorn itself only sets a flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


async def serve(config: Config) -> None:
    """Run salara until SIGINT/SIGTERM: AMI client, event delivery, FastAGI router and HTTP API.

    SIGHUP reloads the config (:meth:`Services.reload`). Under systemd
    (``$NOTIFY_SOCKET``, :mod:`salara.systemd`) it says ``READY=1`` once the
    HTTP API and FastAGI listen (AMI may still be down), AMI's state in
    ``STATUS=`` on each change, ``RELOADING=1`` then ``READY=1`` around a
    reload, ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC``, ``STOPPING=1``.

    Raises :class:`~salara.errors.ConfigError` before starting anything when
    the API would be open beyond loopback without a token or the FastAGI port
    is taken, and :class:`~salara.supervision.PartFailed` when a long-lived part fails.
    """
    problem = exposure_problem(config)
    if problem is not None:
        raise ConfigError("url", "rest_server", problem)
    services = Services.build(config)
    webhooks = (
        WebhookAdmin(services.deliveries, lambda: services.config, services.reload) if services.deliveries else None
    )
    app = create_app(
        services.control, hub=services.hub, metrics=services.metrics, feed=services.feed, webhooks=webhooks
    )
    listen = config.url.rest_server
    server = _Server(
        uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            log_config=None,
            access_log=config.event.verbose >= 2,
            lifespan="off",
            timeout_graceful_shutdown=5,
            **uvicorn_options(config, app.quick_lane),
        )
    )
    # What is built by now lives as long as the process: out of the collector's sight, so a
    # full collection under load scans only what requests left, not the whole app (tens of ms).
    gc.freeze()
    agi = AGIServer(
        services.control.sites.with_call_id(services.control.tracker.registry.channels, services.router.handle),
        config.agi.listen.host,
        config.agi.listen.port,
        header_timeout_s=config.agi.header_timeout,
        max_sessions=config.agi.max_sessions,
        allow=config.agi.allow,
    )
    services.metrics.sources.agi = agi  # FastAGI sessions on /metrics
    try:
        await agi.start()
    except OSError as exc:
        await services.close()
        raise ConfigError("agi", "listen", f"cannot listen on {config.agi.listen}: {exc.strerror or exc}") from None
    log.info(
        "salara starting: API on %s://%s, FastAGI on %s, AMI %s:%d",
        "https" if config.api.tls_cert else "http",
        listen,
        config.agi.listen,
        config.ami.host,
        config.ami.port,
    )
    # uvicorn handles SIGINT/SIGTERM itself, then raises the signal again once
    # it has stopped, to run the handler it found; make that one a no-op so the
    # cleanup below runs and salara exits 0. The handlers found are put back at the end.
    previous = {handled: signal.signal(handled, lambda *_: None) for handled in (signal.SIGINT, signal.SIGTERM)}
    notifier = Notifier()

    def tell_ami_state(_ready: bool) -> None:
        notifier.status(ami_status(services.ami, services.config))

    services.ami.add_state_listener(tell_ami_state)
    reload_wanted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload_wanted.set)

    async def http() -> None:
        serving = asyncio.ensure_future(server.serve())
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:  # another part failed: let uvicorn close its sockets first
            server.should_exit = True
            await serving
            raise

    async def systemd() -> None:
        """READY=1 once uvicorn listens (FastAGI already does), then the watchdog; never returns."""
        await server.listening.wait()  # this part is cancelled if http fails first
        notifier.ready(ami_status(services.ami, services.config))
        await notifier.watchdog()
        await asyncio.Event().wait()

    async def reloads() -> None:
        """Reload the config on every SIGHUP (several at once: one reload)."""
        while True:
            await reload_wanted.wait()
            reload_wanted.clear()
            notifier.reloading()
            try:
                services.reload()
            except Exception:  # a bug in applying it: say so, keep serving what was applied
                log.exception("config reload failed part way; restart salara to be sure of the config in use")
            notifier.ready(ami_status(services.ami, services.config))

    parts = {**services.parts(), "fastagi": agi.serve, "http": http, "systemd": systemd, "reload": reloads}
    try:
        await supervise(parts, main="http")
    finally:
        notifier.stopping()
        loop.remove_signal_handler(signal.SIGHUP)
        await agi.close()
        await services.close()
        notifier.close()
        for handled, handler in previous.items():
            signal.signal(handled, handler)
    log.info("salara stopped")
