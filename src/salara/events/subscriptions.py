"""Which endpoints get which events, in which payload: the subscriptions of a config.

Pure. ``default`` (``[url] dest_url_event``, when set) gets the SPEC §2
events the ``[event]`` modes let through, in ``[event] payload``, and the
lifecycle events with ``lifecycle = yes`` (extended payload only); each
``[webhook NAME]`` gets the types in its ``events`` (empty: every type of
its payload), in its own payload. Every event is stored whoever gets it (the
event log); an event type no endpoint gets is stored with no delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from salara.config.schema import Config
from salara.eventtypes import COMPAT_TYPES, EVENT_TYPES, LIFECYCLE_TYPES
from salara.store.records import DEFAULT_ENDPOINT


@dataclass(frozen=True, slots=True)
class Route:
    """Where events of one type go: endpoints of the extended (or lifecycle) body, endpoints of the compat body."""

    extended: tuple[str, ...] = ()
    compat: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """Event type -> :class:`Route`. Build with :meth:`of` (a config) or :meth:`single` (one endpoint)."""

    routes: Mapping[str, Route] = field(default_factory=dict)

    def route(self, event_type: str) -> Route:
        """Where events of ``event_type`` go (nowhere for a type no endpoint gets)."""
        return self.routes.get(event_type, _NOWHERE)

    @classmethod
    def single(cls, *, extended: bool, lifecycle: bool = False, name: str = DEFAULT_ENDPOINT) -> Subscriptions:
        """One endpoint ``name``: every SPEC §2 type in the compat or extended body; lifecycle types if asked."""
        compat_route = Route(extended=(name,)) if extended else Route(compat=(name,))
        routes = dict.fromkeys(COMPAT_TYPES, compat_route)
        if lifecycle and extended:
            routes.update(dict.fromkeys(LIFECYCLE_TYPES, Route(extended=(name,))))
        return cls(routes)

    @classmethod
    def of(cls, config: Config) -> Subscriptions:
        """The subscriptions of ``config``: ``default`` when ``dest_url_event`` is set, and each ``[webhook NAME]``."""
        extended: dict[str, list[str]] = {name: [] for name in EVENT_TYPES}
        compat: dict[str, list[str]] = {name: [] for name in EVENT_TYPES}
        if config.url.dest_url_event:
            default = cls.single(extended=config.event.payload == "extended", lifecycle=config.event.lifecycle)
            for event_type, route in default.routes.items():
                extended[event_type] += route.extended
                compat[event_type] += route.compat
        for name, webhook in config.webhooks.items():
            for event_type in EVENT_TYPES:
                if webhook.wants(event_type):
                    (compat if webhook.payload == "compat" else extended)[event_type].append(name)
        return cls({name: Route(tuple(extended[name]), tuple(compat[name])) for name in EVENT_TYPES})


_NOWHERE = Route()
