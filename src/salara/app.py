"""Wiring: build every part from the config and run them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import uvicorn

from salara.agi.server import AGIServer
from salara.ami.client import AMIClient, AMISettings
from salara.api.app import create_app
from salara.api.security.connections import uvicorn_options
from salara.api.security.tokens import exposure_problem
from salara.calls import CallTracker
from salara.config import Config
from salara.control import CallControl
from salara.errors import ConfigError
from salara.events import EventPipeline
from salara.live import EventHub
from salara.metrics import Metrics, Sources
from salara.outbox import Outbox
from salara.router import CrmLookup, LiveChannels, Router, RouteTable
from salara.service import Telephony
from salara.webhooks import DeliveryWorker, make_client

log = logging.getLogger(__name__)

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
"""``[event] verbose`` 0 off, 1 on, 2 debug, 3 dump -> logging level."""


def setup_logging(verbose: int) -> None:
    logging.basicConfig(
        level=LOG_LEVELS.get(verbose, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def ami_settings(config: Config) -> AMISettings:
    ami = config.ami
    return AMISettings(
        host=ami.host,
        port=ami.port,
        username=ami.username,
        secret=ami.secret,
        auth=ami.auth,
        ping_interval_s=ami.ping_interval,
        reconnect_max_s=ami.reconnect_max,
    )


CRM_CONNECTIONS = 100
"""Routing lookups in flight at most (more wait for a connection, within their deadline)."""


def crm_client(config: Config) -> aiohttp.ClientSession:
    """The HTTP session for routing lookups (call it inside the event loop).

    TLS verified unless ``[url] tls_verify=no``; each request takes at most
    ``[general] curlopt_timeout`` seconds in all; redirects are not followed
    (:class:`~salara.router.CrmLookup` asks for that on every request).
    """
    return make_client(
        tls_verify=config.url.tls_verify,
        concurrency=CRM_CONNECTIONS,
        timeout_s=config.general.curlopt_timeout,
        user_agent="salara",
    )


class NoStore:
    """The pipeline's store when there is no CRM to send events to: they go to the live stream only."""

    def add(
        self, items: Sequence[tuple[str, bytes]], *, ids: Sequence[str] | None = None, tracking: object = None
    ) -> list[str]:
        return list(ids or ())  # tracking too lives in memory only


@dataclass
class Services:
    """Every long-lived part of a running salara."""

    config: Config
    ami: AMIClient
    tracker: CallTracker
    telephony: Telephony
    router: Router
    crm: aiohttp.ClientSession
    outbox: Outbox | None
    delivery: DeliveryWorker | None
    pipeline: EventPipeline | None
    control: CallControl | None = None
    hub: EventHub | None = None
    metrics: Metrics | None = None

    @classmethod
    def build(cls, config: Config) -> Services:
        ami = AMIClient(ami_settings(config))
        tracker = CallTracker(config.event)
        telephony = Telephony(ami, config, tracker)
        crm = crm_client(config)
        lookup = CrmLookup(crm, config.url.dest_url, config.keys.key_word) if config.url.dest_url else None
        control = CallControl(telephony)
        control.attach()  # the active-call registry: AMI events, resync after each login
        # FastAGI requests are checked against that registry (Linkedid included).
        channels = LiveChannels(control.registry, ami, lambda: control.resyncs)
        router = Router(
            config, telephony, lookup, tracker, RouteTable(config.path, dict(config.routes)), channels=channels
        )
        hub = EventHub()
        outbox = delivery = None
        extended = config.event.payload == "extended"
        if config.url.dest_url_event:
            outbox = Outbox(config.outbox.path, max_rows=config.outbox.max_rows)
            delivery = DeliveryWorker(
                outbox,
                config.url.dest_url_event,
                client=lambda: make_client(tls_verify=config.url.tls_verify, concurrency=config.outbox.concurrency),
                secret=config.url.webhook_secret,
                concurrency=config.outbox.concurrency,
                timeout_s=config.general.curlopt_timeout,
                retry_max_s=config.outbox.retry_max,
            )
            pipeline = EventPipeline(
                tracker, outbox, extended=extended, notify=delivery.notify, live_listeners=[hub.publish]
            )
            pipeline.restore(outbox.load_tracking())  # calls tracked before a restart; checked at AMI login
        else:
            log.warning("no [url] dest_url_event: call events go to the live stream (/v1/events) only")
            pipeline = EventPipeline(tracker, NoStore(), extended=extended, live_listeners=[hub.publish])
        ami.add_event_listener(pipeline.on_event)
        sources = Sources(
            control=control,
            hub=hub,
            pipeline=pipeline,
            outbox=outbox,
            delivery=delivery,
            router=router,
            tracker=tracker,
        )
        metrics = Metrics(sources)
        metrics.watch_ami(ami)
        return cls(config, ami, tracker, telephony, router, crm, outbox, delivery, pipeline, control, hub, metrics)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Start the background work: AMI session, event delivery, tracked-call sweep."""
        config = self.config
        tasks = [asyncio.create_task(self.ami.run(), name="ami")]
        if self.delivery is not None:
            tasks.append(asyncio.create_task(self.delivery.run(), name="delivery"))
        if self.pipeline is not None:
            self.ami.add_state_listener(self.pipeline.on_ami_state)
            sweep = self.pipeline.sweep_forever(
                self.ami, config.event.sweep_interval, grace_s=config.event.timeout_makecall + 60
            )
            tasks.append(asyncio.create_task(sweep, name="sweep"))
        return tasks

    async def close(self) -> None:
        await self.crm.close()
        if self.outbox is not None:
            self.outbox.close()


async def serve(config: Config) -> None:
    """Run salara until SIGINT/SIGTERM: AMI client, FastAGI router and HTTP API.

    Raises :class:`ConfigError` before starting anything when the API would be
    open beyond loopback without a token.
    """
    problem = exposure_problem(config)
    if problem is not None:
        raise ConfigError("url", "rest_server", problem)
    services = Services.build(config)
    app = create_app(services.telephony, control=services.control, hub=services.hub, metrics=services.metrics)
    listen = config.url.rest_server
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            log_config=None,
            access_log=config.event.verbose >= 2,
            lifespan="off",
            timeout_graceful_shutdown=5,
            **uvicorn_options(config),
        )
    )
    agi = AGIServer(
        services.router.handle,
        config.agi.listen.host,
        config.agi.listen.port,
        header_timeout_s=config.agi.header_timeout,
        max_sessions=config.agi.max_sessions,
    )
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
    tasks = services.tasks()
    # uvicorn handles SIGINT/SIGTERM itself, then raises the signal again once
    # it has stopped, to run the handler it found; make that one a no-op so the
    # cleanup below runs and salara exits 0.
    for handled in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handled, lambda *_: None)
    try:
        await server.serve()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await agi.close()
        await services.close()
    log.info("salara stopped")
