"""The HTTP side of salara towards the CRM: the client session and bounded answers.

Every request salara makes to the CRM (event posts, routing lookups, the
test post) goes through a session of :func:`make_client`: certificates
verified, no redirects followed, no proxy from the environment, no
compression; answers are read with :func:`read_limited`.

A session made with ``api_listen`` (salara's own API address) refuses to
connect to that API (:class:`SelfLoopGuard`): the address each connection
goes to is checked when the socket is made, after the name is resolved, so
a name the config could not see through (``localhost``, the machine's
hostname, its LAN address while the API listens on ``0.0.0.0``) cannot make
salara post its events to itself.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from salara import __version__
from salara.config.hosts import normalise_host
from salara.config.values import HostPort

log = logging.getLogger(__name__)

USER_AGENT: Final = f"salara/{__version__}"

MAX_ANSWER_BYTES = 64 * 1024
"""Largest CRM answer read: an answer to an event is only logged, a routing answer is a few dozen bytes."""

SELF_LOOP_LOG_INTERVAL_S: Final = 60.0
"""A refused connection to salara's own API is logged at most this often per address."""

ClientFactory = Callable[[], aiohttp.ClientSession]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class SelfLoopGuard:
    """Says whether a connection to ``(address, port)`` would reach salara's own API at ``listen``.

    It would when the port is the API's and the address is a loopback one
    (``127.0.0.0/8``, ``::1``, a v4-mapped loopback), the unspecified one
    (``0.0.0.0``, ``::``: this machine), the API's own listen address, or,
    while the API listens on every address (``0.0.0.0``, ``::``) or on a
    name, any address of this machine. "An address of this machine" is one
    a socket can be bound to (so with ``net.ipv4.ip_nonlocal_bind`` set,
    every address counts as one, on the API's port only).

    :meth:`socket_factory` is the check wired into aiohttp: it makes the
    socket for an address aiohttp is about to connect to, or raises OSError
    (``ECONNREFUSED``, the message naming salara's own API) so that aiohttp
    tries the name's next address or fails the request with
    :class:`aiohttp.ClientConnectorError`; nothing is sent.
    """

    def __init__(self, listen: HostPort) -> None:
        self.listen = listen
        host = normalise_host(listen.host)
        self._any = host in ("", "0.0.0.0", "::")
        try:
            self._own: Address | None = ipaddress.ip_address(host)
        except ValueError:
            self._own, self._any = None, True  # a name: whatever it resolves to is one of ours
        self._logged: dict[tuple[str, int], float] = {}

    def refuses(self, address: str, port: int, scope_id: int = 0) -> bool:
        """Whether ``address`` (an IP address, text) and ``port`` are salara's own API; see the class doc.

        ``scope_id`` is an IPv6 link-local address's interface. An address
        that is not an IP address is not refused (it cannot be connected to).
        """
        if port != self.listen.port:
            return False
        try:
            ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback or ip.is_unspecified or ip == self._own:
            return True
        return self._any and _is_ours(ip, scope_id)

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's ``socket_factory``: a socket for ``addr_info`` (a ``getaddrinfo`` row), unless it is refused.

        Raises OSError (``ECONNREFUSED``) for salara's own API, logged at
        ERROR at most every :data:`SELF_LOOP_LOG_INTERVAL_S` per address.
        """
        family, kind, proto, _, sockaddr = addr_info
        address, port = str(sockaddr[0]), int(sockaddr[1])
        if self.refuses(address, port, int(sockaddr[3]) if len(sockaddr) > 3 else 0):
            now = time.monotonic()
            if now - self._logged.get((address, port), float("-inf")) >= SELF_LOOP_LOG_INTERVAL_S:
                self._logged[(address, port)] = now
                log.error(
                    "not connecting to %s:%d: that is salara's own API ([url] rest_server=%s); the request is"
                    " refused (events wait in the outbox): point [url] dest_url_event at the CRM",
                    address,
                    port,
                    self.listen,
                )
            raise OSError(errno.ECONNREFUSED, f"{address}:{port} is salara's own API ([url] rest_server={self.listen})")
        return socket.socket(family, kind, proto)


def _is_ours(ip: Address, scope_id: int) -> bool:
    """Whether ``ip`` is an address of this machine: a socket can be bound to it."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
        (str(ip), 0, 0, scope_id) if ip.version == 6 else (str(ip), 0)
    )
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind(sockaddr)
    except OSError:
        return False
    return True


def make_client(
    *,
    tls_verify: bool = True,
    concurrency: int = 8,
    timeout_s: float = 300.0,
    user_agent: str = USER_AGENT,
    api_listen: HostPort | None = None,
) -> aiohttp.ClientSession:
    """An HTTP session for the CRM; call it inside a running event loop (aiohttp needs one).

    Certificates are verified against the system's trust store unless
    ``tls_verify`` is false. At most ``concurrency`` connections are open at a
    time (a request waits for one), and they are kept alive for the next
    request. A request takes at most ``timeout_s`` seconds in all unless it
    gives its own ``timeout`` (TimeoutError past it). Every request sends
    ``user-agent: user_agent``. Redirects are never followed: every request
    of salara passes ``allow_redirects=False`` (aiohttp has no session-wide
    switch). Proxy variables of the environment are not used. With
    ``api_listen`` (``[url] rest_server``), no connection is made to
    salara's own API (:class:`SelfLoopGuard`): such a request fails with
    :class:`aiohttp.ClientConnectorError` before anything is sent.
    """
    guard = SelfLoopGuard(api_listen) if api_listen is not None else None
    connector = aiohttp.TCPConnector(
        limit=concurrency, ssl=tls_verify, socket_factory=guard.socket_factory if guard is not None else None
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    # No compression: a few-kilobyte gzip answer could inflate to gigabytes.
    headers = {"user-agent": user_agent, "accept-encoding": "identity"}
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers, auto_decompress=False)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The answer's body if it is at most ``limit`` bytes, else None (the rest is not read).

    A CRM answer is tiny; reading it whole would let a broken or hostile CRM
    fill salara's memory. An answer read to its end keeps the connection
    for reuse; a longer one is dropped with its connection.
    """
    body = await response.content.read(limit + 1)
    while len(body) <= limit:
        more = await response.content.read(limit + 1 - len(body))
        if not more:
            return body
        body += more
    response.close()
    return None
