"""The uvicorn side of the limits: connections per client address, request header deadline and size.

:func:`http_protocol` is uvicorn's httptools protocol with a deadline and a
size cap on request headers, which uvicorn itself does not have, and a cap
on the connections one client address holds open (:class:`ClientConnections`).
It also offers each request a way to drop its connection at once
(:data:`ABORT_EXTENSION`), and closes a connection whose request body was
refused before it all arrived (413) only after a bounded drain of the rest
(:mod:`~salara.api.security.linger`), so the client can read the answer.
Behind a reverse proxy in ``[api] trusted_proxies``, the proxy is not one
client: its clients are counted by ``X-Forwarded-For``, request by request.
uvicorn's settings naming it come from :mod:`~salara.api.security.serving`.

Its refusals answer in the compat shape, ``{"result": -2, "text": "Error: ..."}`` (``{"result":-2,"text":"Error"}``
with ``[general] answers = module``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from typing import Any, Final

from salara.api.compat.module import MODULE_ERROR_BODY
from salara.api.security.clientcap import ClientConnections
from salara.api.security.deadlines import HeaderDeadlines
from salara.api.security.linger import LINGER_BYTES, LINGER_S
from salara.api.security.transport import (
    WHOLE_ANSWER_EXTENSION,
    OneWriteTransport,
    QuickLane,
    answer_whole,
    can_answer_whole,
    closing_answer,
)

log = logging.getLogger(__name__)

ABORT_EXTENSION = "salara.abort"
"""ASGI scope extension salara's uvicorn protocol adds: ``{"abort": callable}`` drops the connection at once.

For a response whose client stopped reading: closing would wait for the
unread bytes to leave, which they never do (:class:`salara.api.v1.stream.EventStreamResponse`).
"""
OVER_CAP_EXTENSION = "salara.over_cap"
"""ASGI scope extension set on a relayed request whose client (by ``X-Forwarded-For``) is over its cap.

The protocol only reads the headers; :class:`~salara.api.security.middleware.SecurityMiddleware`
answers such a request 503 (``Retry-After``, the connection closed) before anything else.
"""


HOLD_S: Final = 0.05
"""Longest a request's task waits for the rest of its body, to be answered at once (seconds; some clients
send the body apart from the headers, a fraction of a millisecond later)."""


def http_protocol(
    header_timeout_s: float,
    max_header_bytes: int,
    max_connections_per_client: int = 0,
    *,
    module_errors: bool = False,
    trusted_proxies: tuple[str, ...] = (),
    quick: QuickLane | None = None,
) -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with a deadline and a size cap on request headers, and a per-client cap.

    uvicorn (0.3x-0.5x) closes idle keep-alive connections but has no limit on
    how long a client may take to send a request's headers, nor (with
    httptools) on their size: a client trickling one header byte at a time
    would hold its connection forever. Here a request whose headers are not
    complete ``header_timeout_s`` after the connection opened (or after its
    first byte, on a kept-alive connection) gets 408 and the connection is
    closed (within a tenth more: one timer looks at all connections,
    :class:`~salara.api.security.deadlines.HeaderDeadlines`); one whose
    headers exceed ``max_header_bytes`` gets 431. A
    connection beyond ``max_connections_per_client`` open ones of its client
    address (:class:`ClientConnections`; 0: no cap) gets 503 at once and is
    closed, before it can take one of uvicorn's ``limit_concurrency`` slots
    for long. None when httptools is not installed (then uvicorn's h11 limits
    apply, and no per-client cap). With ``module_errors`` (``[general]
    answers = module``) these refusals carry the old module's body,
    ``{"result":-2,"text":"Error"}``, instead of the reason.

    ``trusted_proxies`` (addresses, networks: ``[api] trusted_proxies``) are
    reverse proxies. Once one has relayed a request (sent ``X-Forwarded-For``),
    its connections are no longer counted as its own: each of their requests
    counts for its client, as uvicorn reads it from that header, from its
    headers to its answer (over the cap: :data:`OVER_CAP_EXTENSION`, 503),
    and a connection whose headers are still arriving counts for the proxy
    (so a proxy address that trickles headers is capped still). Before it
    relays, a trusted address is capped as any client.

    With ``quick`` (the app's :class:`~salara.api.security.transport.QuickLane`), a
    request whose body arrives within :data:`HOLD_S` of its headers is first
    offered to the lane's answerer: an answer known at once is written
    without the request's ASGI task (:mod:`salara.api.compat.quick`);
    otherwise, or when the body is later, the task starts as for any request.
    """
    try:
        from uvicorn.middleware.proxy_headers import _TrustedHosts
        from uvicorn.protocols.http.flow_control import FlowControl
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
        from uvicorn.protocols.utils import is_ssl
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        return None

    clients = ClientConnections(max_connections_per_client)
    deadlines = HeaderDeadlines(header_timeout_s)
    trusted = _TrustedHosts(list(trusted_proxies))  # what uvicorn's ProxyHeadersMiddleware trusts
    relaying: set[str] = set()
    """Trusted addresses that have relayed a request: their connections are not capped as theirs."""
    whole_answer: Any = {"send": functools.partial(answer_whole, STATUS_LINE, RequestResponseCycle)}

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _awaiting_headers = True
        _header_bytes = 0
        _headers_due = 0.0
        """When (``loop.time()``) the headers of the request being read are due."""
        _counted = False
        _linger_timer: asyncio.TimerHandle | None = None
        _linger_left = -1
        """Bytes still to drop before closing; -1 while not lingering."""
        _trusted = False
        _exempt = False
        """A relaying proxy's connection: its requests are counted, by client, not the connection."""
        _pending = False
        """An exempt connection whose headers are arriving, counted for the proxy meanwhile."""
        _requests: dict[Any, str]
        """Requests of an exempt connection in progress (uvicorn's cycles): the client each counts for."""
        _may_hold = False
        """Set while uvicorn starts a request whose task may wait for a quick answer."""
        _held: tuple[Any, Any] | None = None
        """``(cycle, app)`` of the request waiting for its body, its task not started."""
        _hold_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            # uvicorn's (but its trace line: salara has no trace level), with the addresses the transport holds:
            # uvicorn asks the transport's socket, and on uvloop each ask makes a socket object (a twentieth of
            # a new connection's cost).
            self.connections.add(self)
            self.transport = transport
            self.flow = FlowControl(transport)
            self.server = socket_address(transport.get_extra_info("sockname"), path=True)
            self.client = socket_address(transport.get_extra_info("peername"))  # type: ignore[assignment]
            self.scheme = "https" if is_ssl(transport) else "http"
            self._requests = {}
            host = self._host()
            self._trusted = host in trusted
            self._exempt = self._trusted and host in relaying
            if not self._exempt:
                if not clients.opened(host):
                    self._over_cap(host)
                    return
                self._counted = True
            self._headers_due = self.loop.time() + header_timeout_s
            deadlines.watch(self, self.loop)

        def _host(self) -> str | None:
            return self.client[0] if self.client else None

        def _over_cap(self, key: str | None) -> None:
            clients.log_refusal(key, time.monotonic())
            self._refuse(503, "too many open connections from this address", log_it=False, retry_after_s=5)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._linger_timer is not None:
                self._linger_timer.cancel()
                self._linger_timer = None
            self._give_back()
            self._release_held(start=False)
            super().connection_lost(exc)

        def handle_websocket_upgrade(self) -> None:
            # The connection becomes uvicorn's WebSocket protocol's (salara has no WebSocket endpoint: 403), and
            # this protocol is never told it closed.
            self._give_back()
            super().handle_websocket_upgrade()

        def _give_back(self) -> None:
            """The connection is no longer this protocol's: its deadline and its counts are dropped."""
            self._awaiting_headers = False
            deadlines.forget(self)
            if self._counted or self._pending:
                self._counted = self._pending = False
                clients.closed(self._host())
            for client in self._requests.values():
                clients.closed(client)
            self._requests.clear()

        def data_received(self, data: bytes) -> None:
            if self._linger_left >= 0:  # the rest of a refused request: dropped unread
                self._linger_left -= len(data)
                if self._linger_left < 0:
                    self._end_linger()
                return
            if not self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
                self._expect_request()  # from its first byte: the parser begins none for CR LF between requests
            if self._awaiting_headers and self._header_bytes + len(data) > max_header_bytes:
                end = data.find(b"\r\n\r\n")  # headers whole in this read are parsed, and answered, at once
                if self._header_bytes + (len(data) if end < 0 else end + 4) > max_header_bytes:
                    self._refuse(431, f"request headers larger than {max_header_bytes} bytes")
                    return
            super().data_received(data)
            if self._held is not None and self._hold_timer is None:  # its body is still to come
                self._hold_timer = self.loop.call_later(HOLD_S, self._release_held)
            if self._awaiting_headers and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._exempt and not self._pending:  # a proxy's headers still arriving: the proxy's
                    if not clients.opened(self._host()):
                        self._over_cap(self._host())
                        return
                    self._pending = True

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self.transport.abort}}
            if not self._awaiting_headers:  # a further request, read while the one before is answered
                self._expect_request()

        def _expect_request(self) -> None:
            self._header_bytes = 0
            self._awaiting_headers = True
            self._headers_due = self.loop.time() + header_timeout_s

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            client = self._relayed_client()
            self._may_hold = client is None and quick is not None and quick.answer is not None
            try:
                super().on_headers_complete()
            finally:
                self._may_hold = False
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:  # no cycle made (an upgrade): an earlier one's
                return
            if self._held is None or self._held[0] is not cycle:  # one answered at once needs neither
                self._wrap(cycle)
            if client is None:
                return
            if not clients.opened(client):
                clients.log_refusal(client, time.monotonic())
                self.scope["extensions"][OVER_CAP_EXTENSION] = {"retry_after_s": 5}
                return
            self._requests[cycle] = client
            answered = cycle.on_response

            def over() -> None:
                counted_for = self._requests.pop(cycle, None)
                if counted_for is not None:  # not given back already (its connection lost, or upgraded)
                    clients.closed(counted_for)
                answered()

            cycle.on_response = over

        def _wrap(self, cycle: Any) -> None:
            """Give the request's cycle salara's transport and the whole-answer extension, before its task runs."""
            cycle.transport = OneWriteTransport(self, cycle)
            cycle.scope["extensions"][WHOLE_ANSWER_EXTENSION] = whole_answer

        def _start_held(self, cycle: Any, app: Any) -> None:
            self._wrap(cycle)
            super()._start_asgi_task(cycle, app)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if self.transport.is_closing():  # read after an answer that closed the connection: never answered
                return
            if self._may_hold and app is self.app and not cycle.waiting_for_100_continue and can_answer_whole(cycle):
                self._held = (cycle, app)  # until its body has all arrived (on_message_complete)
                return
            super()._start_asgi_task(cycle, app)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            held = self._held
            if held is None or held[0] is not self.cycle:
                return
            self._held = None
            if self._hold_timer is not None:
                self._hold_timer.cancel()
                self._hold_timer = None
            if not self.parser.should_keep_alive():  # nothing follows on this connection: the parser stops
                self._answer_held(*held)
                return
            # Answered once the loop has read what else is ready, as a task would be: a request answered at once
            # brings the client's next one back alone, and the loop then wakes for every request (a fifth more CPU).
            self.loop.call_soon(self._answer_held, *held)

        def _release_held(self, *, start: bool = True) -> None:
            """The held request's body is late (or its connection gone): its task starts (or not), as any request's."""
            if self._hold_timer is not None:
                self._hold_timer.cancel()
                self._hold_timer = None
            held, self._held = self._held, None
            if held is not None and start and not self.transport.is_closing():
                self._start_held(*held)

        def _answer_held(self, cycle: Any, app: Any) -> None:
            answer = None
            if quick is not None and quick.answer is not None and can_answer_whole(cycle):
                try:
                    answer = quick.answer(cycle.scope, bytes(cycle.body))  # uvicorn collects it in a bytearray
                except Exception:
                    log.exception("compat request not answered at once (answered the usual way)")
            if answer is None or not answer_whole(STATUS_LINE, RequestResponseCycle, cycle.send, *answer):
                self._start_held(cycle, app)

        def _relayed_client(self) -> str | None:
            """The client a trusted proxy's request counts for, or None (not relayed: its connection counts)."""
            if not self._trusted:
                return None
            host = self._host() or ""
            forwarded = b""
            for name, value in self.headers:  # a loop, not a comprehension: this runs for every request
                if name == b"x-forwarded-for":
                    forwarded = forwarded + b", " + value if forwarded else value
            if forwarded:
                if len(relaying) < 4096:
                    relaying.add(host)
                if self._counted:  # this connection is a proxy's from now on
                    clients.closed(host)
                    self._counted, self._exempt = False, True
            if not self._exempt:
                return None
            if self._pending:
                clients.closed(host)
                self._pending = False
            if not forwarded:
                return host
            relayed_for, _ = trusted.get_trusted_client_address(forwarded.decode("latin1"))
            return str(relayed_for) or host

        def close_after_answer(self, cycle: Any) -> None:
            """Close once ``cycle``'s answer is sent: at once, or after draining its unread body (bounded)."""
            if self.transport.is_closing() or self._linger_left >= 0:
                return
            if cycle is not self.cycle or not cycle.more_body:
                self.transport.close()
                return
            self._linger_left = LINGER_BYTES
            self._linger_timer = self.loop.call_later(LINGER_S, self._end_linger)
            if self.transport.can_write_eof():  # the answer, then end of stream: the client stops sending
                self.transport.write_eof()
            self.flow.resume_reading()

        def _end_linger(self) -> None:
            if self._linger_timer is not None:
                self._linger_timer.cancel()
                self._linger_timer = None
            self.transport.close()

        def headers_overdue(self, now: float) -> bool:
            return self._awaiting_headers and now >= self._headers_due and not self.transport.is_closing()

        def headers_late(self) -> None:
            self._refuse(408, f"request headers did not arrive within {header_timeout_s:g} s")

        def _refuse(self, status: int, reason: str, *, log_it: bool = True, retry_after_s: int | None = None) -> None:
            self._awaiting_headers = False
            if log_it:
                client = self.client[0] if self.client else "?"
                log.warning("API connection from %s closed (%d): %s", client, status, reason)
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # an answer to an earlier request is under way
                return
            body = MODULE_ERROR_BODY if module_errors else json.dumps({"result": -2, "text": f"Error: {reason}"})
            retry_after = [(b"retry-after", b"%d" % retry_after_s)] if retry_after_s is not None else []
            self.transport.write(closing_answer(STATUS_LINE[status], body, retry_after))
            self.transport.close()

    return GuardedHttpToolsProtocol


def socket_address(name: Any, *, path: bool = False) -> tuple[str, int | None] | None:
    """``(host, port)`` of a transport's ``peername`` or ``sockname`` (IPv4, IPv6), as uvicorn puts it in a scope.

    With ``path`` (a ``sockname``), a Unix socket's is ``(path, None)``; None otherwise (no TCP address).
    """
    if isinstance(name, tuple | list) and len(name) >= 2:  # IPv6: (host, port, flowinfo, scope_id)
        return str(name[0]), int(name[1])
    return (name, None) if path and isinstance(name, str) else None
