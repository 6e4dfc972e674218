"""What a SIGHUP does to a running salara: the config read again, its live keys handed to the parts.

:func:`reload` reads the file (and the ``SALARA_*`` environment) again;
:func:`salara.config.changes.plan` says what may change live and what needs a
restart; :func:`apply` gives the new values to the parts that hold them, as
attributes they read on every use, so no call, AMI session, FastAGI session
or HTTP connection is dropped:

- call control, routing and the event model take the new config (event
  modes, ``watch_makecall``, ``timeout_makecall``, ``default``,
  ``curlopt_timeout``, ``operator_technology``, ``good_status``, the
  ``[keys]``...); the resynchronisation its interval; the CRM breaker and
  answer cache their limits (their state kept);
- the logging its level (``verbose``) and format (``log_format``);
- a change of the CRM routing lookup's URL or client options makes a new
  lookup client (lookups under way finish on the old one, closed later);
- a change of an endpoint's settings (``dest_url_event`` and its options,
  a ``[webhook NAME]`` added, changed or removed) starts a new delivery
  worker for it on the same outbox (:class:`~salara.crm.endpoints.Deliveries`):
  the old one is stopped, the events it had claimed go back to due and the
  new one posts them; which endpoints get which events changes with it.

The builders of the CRM clients live here too, as :mod:`salara.app` builds
the same parts at start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

import aiohttp

from salara import config as config_module
from salara.config import Config
from salara.config.changes import LOOKUP_KEYS, WEBHOOK_KEYS, Reload, plan
from salara.crm.client import make_client
from salara.crm.lookup import CrmLookup
from salara.errors import SalaraError
from salara.events.subscriptions import Subscriptions
from salara.logformat import setup_logging

if TYPE_CHECKING:
    from salara.app import Services

log = logging.getLogger(__name__)

CRM_CONNECTIONS: Final = 100
"""Routing lookups in flight at most (more wait for a connection, within their deadline)."""


def crm_client(config: Config) -> aiohttp.ClientSession:
    """The HTTP session for routing lookups (call it inside the event loop).

    TLS verified unless ``[url] tls_verify=no``; each request takes at most
    ``[general] curlopt_timeout`` seconds in all; redirects are not followed
    (:class:`~salara.crm.lookup.CrmLookup` asks for that on every request).
    """
    return make_client(
        tls_verify=config.url.tls_verify,
        concurrency=CRM_CONNECTIONS,
        timeout_s=config.general.curlopt_timeout,
        user_agent="salara",
    )


def crm_lookup(config: Config, client: aiohttp.ClientSession) -> CrmLookup | None:
    """The routing lookup of ``[url] dest_url`` on ``client``; None without a ``dest_url``."""
    if not config.url.dest_url:
        return None
    return CrmLookup(client, config.url.dest_url, config.keys.key_word, name_key=config.routing.key_caller_name)


class RetiredClients:
    """CRM lookup clients a reload replaced: each closed later (lookups under way on it finish), or at stop."""

    def __init__(self) -> None:
        self._retired: list[aiohttp.ClientSession] = []
        self._closers: set[asyncio.Task[None]] = set()

    def retire(self, client: aiohttp.ClientSession, *, after_s: float) -> None:
        """Close ``client`` in ``after_s`` seconds, or at :meth:`close_all`."""
        self._retired.append(client)

        async def close_later() -> None:
            await asyncio.sleep(after_s)
            await client.close()

        task = asyncio.create_task(close_later(), name="crm-client-retired")
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def close_all(self) -> None:
        """Close every retired client now (the service stops)."""
        for task in list(self._closers):
            task.cancel()
        for client in self._retired:
            await client.close()
        self._retired.clear()


def reload(services: Services) -> Reload | None:
    """Read ``services``' config file again and :func:`apply` it; None when the old config is kept.

    A file that does not load, or whose values fail the checks across keys
    (:func:`salara.config.check_config`), is logged at ERROR with the reason
    and changes nothing. Keys that need a restart are logged at WARNING and
    keep their value. Raises nothing.
    """
    path = services.config.path
    shown = path or "(no file: defaults and environment)"
    try:
        reloaded = plan(services.config, config_module.load(path))
        config_module.check_config(reloaded.config)
    except SalaraError as exc:
        log.error("config %s not reloaded, still using the one loaded before: %s", shown, exc)
        return None
    apply(services, reloaded)
    log.info("config reloaded from %s: %s", shown, ", ".join(reloaded.changed) or "nothing changed")
    if reloaded.restart:
        log.warning(
            "config: %s changed in %s; kept as it was until salara restarts", "; ".join(reloaded.restart), shown
        )
    return reloaded


def apply(services: Services, reloaded: Reload) -> None:
    """Hand ``reloaded.config``'s live values to the parts of ``services`` that hold them (see the module doc)."""
    previous = services.config
    config = services.config = reloaded.config
    control, router = services.control, services.router
    control.config = router.config = config
    control.tracker.modes = config.event
    for site in control.sites:
        site.pbx.good_status = config.url.good_status
        if site.resync is not None:
            site.resync.interval_s = config.event.sweep_interval
            site.resync.grace_s = config.event.timeout_makecall + 60
    routing = config.routing
    router.breaker.failures, router.breaker.cooldown_s = routing.breaker_failures, routing.breaker_cooldown
    router.cache.max_age_s, router.cache.max_entries = routing.cache_max_age, routing.cache_size
    setup_logging(config.event.verbose, config.general.log_format)
    if reloaded.touches(LOOKUP_KEYS):
        old = services.crm
        services.crm = crm_client(config)
        router.lookup = crm_lookup(config, services.crm)
        services.retired.retire(old, after_s=2 * previous.general.curlopt_timeout + 1)
    deliveries = services.deliveries
    if deliveries is not None and (reloaded.touches(WEBHOOK_KEYS) or reloaded.webhooks):
        changed = deliveries.update(config)
        services.pipeline.subscriptions = Subscriptions.of(config)
        services.metrics.sources.delivery = deliveries.default
        if changed:
            log.info("webhook endpoints changed: %s", ", ".join(changed))
