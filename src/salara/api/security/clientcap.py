"""The cap on open connections per client address (``[api] max_connections_per_client``).

:class:`ClientConnections` counts them by :func:`client_key`; salara's
uvicorn protocol (:func:`~salara.api.security.connections.http_protocol`)
asks it as each connection opens and tells it as each closes.
"""

from __future__ import annotations

import functools
import ipaddress
import logging

from salara.ratelog import Throttle

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)  # parsed once per address: twice per connection otherwise
def client_key(host: str | None) -> str:
    """What :class:`ClientConnections` counts by: the IPv4 address, or the /64 of an IPv6 one.

    One IPv6 client usually holds a whole /64, so counting its addresses one
    by one would not cap it. A v4-mapped address counts as its IPv4 address.
    """
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ClientConnections:
    """Open connections by client address (:func:`client_key`), at most ``cap`` each (0: no cap).

    Without it, one client holding ``[api] max_connections`` connections
    (each trickling a byte now and then within ``request_timeout``) leaves
    uvicorn answering 503 to every other client. With it, one address holds
    at most ``cap``; what stays possible is a flood from many addresses.
    Refusals are logged at most once per ``log_interval_s``, so a flood
    does not flood the log too.
    """

    def __init__(self, cap: int, log_interval_s: float = 10.0) -> None:
        self.cap = cap
        self.log_interval_s = log_interval_s
        self.open_by_client: dict[str, int] = {}
        self.refused = 0
        self._unlogged = 0
        self._throttle = Throttle(log_interval_s)

    def count(self, host: str | None) -> int:
        return self.open_by_client.get(client_key(host), 0)

    def opened(self, host: str | None) -> bool:
        """A connection from ``host`` opened: True if it may stay (now counted), False if over the cap."""
        key = client_key(host)
        count = self.open_by_client.get(key, 0)
        if self.cap and count >= self.cap:
            self.refused += 1
            return False
        self.open_by_client[key] = count + 1
        return True

    def closed(self, host: str | None) -> None:
        """A counted connection from ``host`` closed."""
        key = client_key(host)
        count = self.open_by_client.get(key, 0) - 1
        if count > 0:
            self.open_by_client[key] = count
        else:
            self.open_by_client.pop(key, None)

    def log_refusal(self, host: str | None, now: float) -> None:
        self._unlogged += 1
        if self._throttle.due(now) is None:
            return
        log.warning(
            "API connection from %s closed (503): more than %d open connections from %s (%d refused so)",
            host or "?",
            self.cap,
            client_key(host),
            self._unlogged,
        )
        self._unlogged = 0
