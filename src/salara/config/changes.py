"""What a reload (SIGHUP) may change in a running salara, and what needs a restart.

Pure: two :class:`Config` in, a :class:`Reload` out. :func:`plan` compares
the config in use with the one just read: keys whose holder can take a new
value live (event modes, routing fallbacks, CRM URLs and webhook settings,
log level and format...) are taken; keys fixed when the service started
(what it listens on, how it reaches AMI, the API's limits, the event store...)
keep their old value in the config that is used from now on, and are named
as needing a restart. The README's table of restart-only keys is
:data:`RESTART_KEYS` and :data:`RESTART_WHEN`.

The ``[route]`` table and the ``[token NAME]`` sections are re-read by their
own watchers (:class:`~salara.routing.table.RouteTable`, the API's token
reloader) whenever their file changes, SIGHUP or not; they are live here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from salara.config.schema import SECTIONS, Config

RESTART_KEYS: Final = frozenset(
    {
        ("general", "default_context"),  # the API's token principals and /v1 routes keep it
        ("general", "answers"),  # the compat error middleware is installed or not at start
        ("event", "payload"),  # the event pipeline's bodies
        ("event", "lifecycle"),
        ("url", "rest_server"),  # the HTTP listener
        ("agi", "listen"),  # the FastAGI listener and its limits
        ("agi", "max_sessions"),
        ("agi", "header_timeout"),
        ("calls", "inbound_contexts"),
        ("outbox", "path"),  # the open event store
        ("outbox", "url"),
        ("outbox", "node"),
        ("outbox", "lease"),
        ("outbox", "takeover"),  # the leadership's intervals
        ("outbox", "max_rows"),
    }
    | {("ami", key) for key in SECTIONS["ami"].model_fields}  # the AMI session
    | {("api", key) for key in SECTIONS["api"].model_fields}  # the HTTP server's TLS, limits and proxies
)
"""``(section, key)`` that only a restart changes."""

RESTART_WHEN: Final[dict[tuple[str, str], tuple[str, Callable[[Any, Any], bool]]]] = {
    ("url", "dest_url_event"): (
        "set or emptied (events go to the CRM, or not)",
        lambda old, new: bool(old) != bool(new),
    ),
    ("event", "hangup"): (
        "changed to or from 2 (which channels are kept over a restart)",
        lambda old, new: (old == 2) != (new == 2),
    ),
}
"""``(section, key)``: (when, test of old and new value) for keys that need a restart only for some changes."""

WEBHOOK_KEYS: Final = frozenset(
    {
        ("url", "dest_url_event"),
        ("url", "webhook_secret"),
        ("url", "tls_verify"),
        ("general", "curlopt_timeout"),
        ("outbox", "retry_max"),
        ("outbox", "retry_for"),
        ("outbox", "concurrency"),
    }
)
"""Keys the event delivery workers are built with: a change starts new ones on the same outbox."""

LOOKUP_KEYS: Final = frozenset(
    {
        ("url", "dest_url"),
        ("url", "tls_verify"),
        ("general", "curlopt_timeout"),
        ("keys", "key_word"),
        ("routing", "key_caller_name"),
    }
)
"""Keys the CRM routing lookup (and its HTTP client) is built with."""


@dataclass(frozen=True, slots=True)
class Reload:
    """What :func:`plan` found: the config to use now, and the keys changed, by kind.

    ``changed`` and ``restart`` hold ``"[section] key"`` names in the
    schema's order; ``restart`` entries say why when only some changes need
    a restart. ``routes``, ``tokens`` and ``webhooks`` say whether those changed.
    """

    config: Config
    changed: tuple[str, ...]
    restart: tuple[str, ...]
    keys: frozenset[tuple[str, str]]
    """``(section, key)`` of every live change (what the wiring acts on)."""
    routes: bool = False
    tokens: bool = False
    webhooks: bool = False

    def touches(self, keys: frozenset[tuple[str, str]]) -> bool:
        """Whether any of ``keys`` changed live."""
        return not self.keys.isdisjoint(keys)


def plan(old: Config, new: Config) -> Reload:
    """Compare the config in use (``old``) with the one read (``new``): what changes live, what waits.

    The returned :attr:`Reload.config` is ``new`` with every restart-only
    key that differs set back to its ``old`` value, so what the service
    shows (``/ready``'s AMI address, say) stays what it uses. Raises nothing.
    """
    changed: list[str] = []
    restart: list[str] = []
    live: set[tuple[str, str]] = set()
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        before, after = getattr(old, name), getattr(new, name)
        kept: dict[str, object] = {}
        for key in type(after).model_fields:
            was, now = getattr(before, key), getattr(after, key)
            if was == now:
                continue
            label = f"[{name}] {key}"
            conditional = RESTART_WHEN.get((name, key))
            if (name, key) in RESTART_KEYS or (conditional is not None and conditional[1](was, now)):
                restart.append(f"{label}: {conditional[0]}" if conditional is not None else label)
                kept[key] = was
            else:
                changed.append(label)
                live.add((name, key))
        sections[name] = after.model_copy(update=kept) if kept else after
    routes = dict(old.routes) != dict(new.routes)
    tokens = dict(old.tokens) != dict(new.tokens)
    if routes:
        changed.append("[route]")
    if tokens:
        changed.append("[token ...]")
    webhooks = dict(old.webhooks) != dict(new.webhooks)
    if webhooks:
        changed.append("[webhook ...]")
    if dict(old.pbxs) != dict(new.pbxs):  # each PBX's AMI session is made at start
        restart.append("[ami ...]")
    config = dataclasses.replace(new, **sections, pbxs=old.pbxs)
    return Reload(config, tuple(changed), tuple(restart), frozenset(live), routes, tokens, webhooks)
