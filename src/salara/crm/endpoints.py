"""The event endpoints of a running salara: one delivery worker each, and what an admin does with them.

``default`` is ``[url] dest_url_event`` (when set), posting as it always
has; each ``[webhook NAME]`` is another endpoint with its own URL, events,
payload, secret and timeout (:class:`~salara.config.webhooks.Webhook`). Each
has its own :class:`~salara.crm.delivery.DeliveryWorker` on the one store:
its own connections, adaptive limit, retry schedule and per-call order, so a
slow or dead endpoint holds back no other.

:class:`Deliveries` runs the workers as one part of the service and takes a
new set when the config changes (:mod:`salara.reload`): a worker whose
settings changed is stopped (the events it had claimed go back to due) and
a new one starts; one that did not change goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from salara.config import Config
from salara.crm.delivery import DeliveryWorker
from salara.store.interface import Store
from salara.store.records import DEFAULT_ENDPOINT, Result

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """What a worker is made from: when these change, the worker is replaced."""

    url: str
    secret: str
    timeout_s: float
    disable_on_gone: bool
    tls_verify: bool
    concurrency: int
    retry_max_s: float
    retry_for_s: float


def endpoint_settings(config: Config) -> dict[str, EndpointSettings]:
    """The endpoints of ``config`` by name: ``default`` when ``dest_url_event`` is set, then each ``[webhook NAME]``."""
    outbox = config.outbox

    def endpoint(url: str, secret: str, timeout_s: float, disable_on_gone: bool) -> EndpointSettings:
        return EndpointSettings(
            url,
            secret,
            timeout_s,
            disable_on_gone,
            config.url.tls_verify,
            outbox.concurrency,
            outbox.retry_max,
            outbox.retry_for,
        )

    settings: dict[str, EndpointSettings] = {}
    if config.url.dest_url_event:
        timeout_s = config.general.curlopt_timeout
        settings[DEFAULT_ENDPOINT] = endpoint(config.url.dest_url_event, config.url.webhook_secret, timeout_s, False)
    for name, webhook in config.webhooks.items():
        timeout_s = webhook.timeout if webhook.timeout is not None else config.general.curlopt_timeout
        settings[name] = endpoint(webhook.url, webhook.secret, timeout_s, True)
    return settings


def make_worker(name: str, settings: EndpointSettings, store: Store, config: Config) -> DeliveryWorker:
    """The worker posting ``store``'s deliveries of endpoint ``name`` (never to salara's own API)."""
    return DeliveryWorker(
        store,
        settings.url,
        tls_verify=settings.tls_verify,
        api_listen=config.url.rest_server,
        secret=settings.secret,
        concurrency=settings.concurrency,
        timeout_s=settings.timeout_s,
        retry_max_s=settings.retry_max_s,
        retry_for_s=settings.retry_for_s,
        endpoint=name,
        disable_on_gone=settings.disable_on_gone,
    )


class Deliveries:
    """The delivery workers by endpoint name, run together by :meth:`run`; :meth:`update` takes a new config."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.settings = endpoint_settings(config)
        self.workers: dict[str, DeliveryWorker] = {
            name: make_worker(name, settings, store, config) for name, settings in self.settings.items()
        }
        self._changed = asyncio.Event()
        self._on_attempt: Callable[[Result, float], None] | None = None

    @property
    def on_attempt(self) -> Callable[[Result, float], None] | None:
        """Told every attempt's result and seconds, by every worker, those of later endpoints too (metrics)."""
        return self._on_attempt

    @on_attempt.setter
    def on_attempt(self, observer: Callable[[Result, float], None] | None) -> None:
        self._on_attempt = observer
        for worker in self.workers.values():
            worker.on_attempt = observer

    @property
    def default(self) -> DeliveryWorker | None:
        """The ``default`` endpoint's worker, else the first one (metrics of one worker), else None."""
        return self.workers.get(DEFAULT_ENDPOINT) or next(iter(self.workers.values()), None)

    def notify(self) -> None:
        """Tell every worker that events were added."""
        for worker in self.workers.values():
            worker.notify()

    def update(self, config: Config) -> list[str]:
        """Take ``config``'s endpoints: changed ones get a new worker, removed ones stop; returns what changed."""
        settings = endpoint_settings(config)
        changed = sorted(
            name for name in settings.keys() | self.settings.keys() if settings.get(name) != self.settings.get(name)
        )
        workers: dict[str, DeliveryWorker] = {}
        for name, wanted in settings.items():
            old = self.workers.get(name)
            if old is not None and self.settings.get(name) == wanted:
                workers[name] = old
                continue
            worker = workers[name] = make_worker(name, wanted, self.store, config)
            worker.on_attempt = self._on_attempt
            if old is not None:
                worker.stats = old.stats
        self.settings, self.workers = settings, workers
        if changed:
            self._changed.set()
        return changed

    async def run(self) -> None:
        """Run every worker until cancelled; a worker that stops by itself ends this with its error."""
        running: dict[str, tuple[DeliveryWorker, asyncio.Task[None]]] = {}
        try:
            while True:
                self._changed.clear()
                for name in [name for name, (worker, _) in running.items() if self.workers.get(name) is not worker]:
                    await _stop(running.pop(name)[1])
                for name, worker in self.workers.items():
                    if name not in running:
                        running[name] = (worker, asyncio.create_task(worker.run(), name=f"delivery-{name}"))
                changed = asyncio.create_task(self._changed.wait(), name="deliveries-changed")
                tasks = {task for _, task in running.values()}
                try:
                    done, _ = await asyncio.wait({*tasks, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                for task in done & tasks:
                    task.result()  # a worker ended by itself: its error ends the part
                    raise RuntimeError(f"{task.get_name()} stopped")
        finally:
            for _, task in running.values():
                await _stop(task)

    def enable(self, name: str) -> bool:
        """Enable endpoint ``name`` again after a ``410 Gone``; False when it was not disabled."""
        was = self.store.enable(name)
        worker = self.workers.get(name)
        if worker is not None and worker.disabled:
            worker.enable()
            was = True
        return was

    def disabled(self) -> Mapping[str, tuple[float, str]]:
        """The endpoints disabled by a ``410 Gone``: ``{name: (since, Unix s; reason)}``."""
        return self.store.disabled()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
