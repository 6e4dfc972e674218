"""The asyncio FastAGI server: one task per call.

The dialplan line ``AGI(agi://127.0.0.1:4573/route?x=1,arg)`` makes Asterisk
open one TCP connection per call, send the variable block and then wait for
commands until the connection closes; the dialplan goes on after the AGI line.
This module owns those sockets and nothing else: framing and parsing are
:mod:`salara.agi.protocol`'s, the commands of one call
:mod:`salara.agi.session`'s, what to do with the call is the handler's.

Per connection: the variable block must be complete within
``header_timeout_s`` (Asterisk writes it whole right after connecting, so a
silent or trickling peer is dropped quickly and frees its place); a peer that
closes before finishing it ends its session with a log line. The handler then
gets an :class:`AGISession`; whatever it raises is logged, never propagated.
When it returns, the socket is closed.

Without ``allow`` a connection is served only from loopback; with it
(``[agi] allow``: the PBXs' addresses or networks) only from an address
it names. Any other is closed at once, before a byte is read or written,
and logged (at most once per ``WARNING_INTERVAL_S``, with the count held back).

At most ``max_sessions`` connections are served at once. When they are all
taken, a new connection takes the place of the oldest one still without its
variable block (a real Asterisk never waits there, an idle socket does);
when there is none, the new connection is closed at once (Asterisk then
carries on with the dialplan rather than wait). Overload, and connections
dropped for want of a variable block, are logged at WARNING at most once per
``WARNING_INTERVAL_S`` each, with the count of those held back. What the
peer sent (the variable block's values, error texts quoting it) is logged
through :func:`~salara.logsafe.escape`: a ``%0a`` in the script path or a CR
in the caller ID cannot forge a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Final

from salara.agi.protocol import CLOSED, DEFAULT_MAX_LINE_BYTES, NEED_DATA, AGIConnection, AGIRequest
from salara.agi.session import READ_BYTES
from salara.agi.session import AGISession as AGISession  # re-exported: handlers type their argument with it
from salara.errors import AGIHangup, ProtocolError, RemoteProtocolError
from salara.logsafe import escape
from salara.ratelog import RateLimitedWarning

log = logging.getLogger(__name__)

_CLOSE_WAIT_S: Final = 1.0
WARNING_INTERVAL_S: Final = 10.0
"""Least time between two warnings of a kind a flood of connections repeats (those between are counted)."""


Handler = Callable[[AGISession], Awaitable[None]]


class AGIServer:
    """A FastAGI listener calling ``await handler(session)`` for each connection.

    Durations are in seconds. Use as ``async with AGIServer(handler) as server:``
    or call :meth:`start` and :meth:`close`; :attr:`port` is the bound port
    (useful with ``port=0``).
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        header_timeout_s: float = 1.0,
        command_timeout_s: float = 10.0,
        max_sessions: int = 200,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        allow: Iterable[str] = (),
    ) -> None:
        if header_timeout_s <= 0 or command_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_sessions < 1 or max_line_bytes < 1:
            raise ValueError("max_sessions and max_line_bytes must be positive")
        self._allow = tuple(ipaddress.ip_network(entry, strict=False) for entry in allow)  # ValueError: not one
        self._handler = handler
        self._host = host
        self._port = port
        self._header_timeout_s = header_timeout_s
        self._command_timeout_s = command_timeout_s
        self._max_sessions = max_sessions
        self._max_line_bytes = max_line_bytes
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], str] = {}
        """Sessions still reading their variable block (peer name), oldest first."""
        self._dropping: set[asyncio.Task[None]] = set()
        """Sessions cancelled to make room, not yet unwound."""
        self._overload = RateLimitedWarning(log, WARNING_INTERVAL_S)
        self._dropped = RateLimitedWarning(log, WARNING_INTERVAL_S)
        self.refused = 0
        """Connections closed at once because every session was taken."""
        self.displaced = 0
        """Connections without a variable block dropped to make room for a new one."""
        self.strangers = 0
        """Connections closed at once: from beyond loopback, and not from an address of ``allow``."""
        self._stranger = RateLimitedWarning(log, WARNING_INTERVAL_S)

    async def start(self) -> None:
        """Start listening; returns once the socket is bound."""
        if self._server is None:
            self._server = await asyncio.start_server(self._on_connect, self._host, self._port)
            log.info("FastAGI listening on %s:%d", self._host, self.port)

    async def serve(self) -> None:
        """Accept connections until cancelled (the supervised part of a running salara); starts if needed."""
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and end every running session (their handlers are cancelled)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> AGIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The port actually bound."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("AGIServer is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def active_sessions(self) -> int:
        """Connections being served right now."""
        return len(self._tasks) - len(self._dropping)

    def allowed(self, host: str) -> bool:
        """Whether a connection from ``host`` (an IP address) may be served: in ``allow``, else on loopback."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        if not self._allow:
            return address.is_loopback
        return any(address in network for network in self._allow)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        task = asyncio.current_task()
        if task is None:
            writer.close()
            return
        if not self.allowed(peer.rpartition(":")[0].strip("[]")):
            self.strangers += 1
            self._stranger.warn(time.monotonic(), "FastAGI %s closed: not an address [agi] allow names", peer)
            writer.transport.abort()  # not a word: nothing read, nothing written
            return
        if self.active_sessions >= self._max_sessions and not self._make_room(peer):
            self.refused += 1
            self._overload.warn(
                time.monotonic(),
                "FastAGI %s refused: %d sessions already running, all past their variable block "
                "(raise [agi] max_sessions if real calls meet this)",
                peer,
                self.active_sessions,
            )
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer, peer, task)
        finally:
            self._tasks.discard(task)
            self._waiting.pop(task, None)
            self._dropping.discard(task)
            await _close(writer)

    def _make_room(self, peer: str) -> bool:
        """Drop the oldest session still without its variable block; False if there is none."""
        for oldest, oldest_peer in self._waiting.items():
            del self._waiting[oldest]
            self._dropping.add(oldest)
            oldest.cancel()
            self.displaced += 1
            self._overload.warn(
                time.monotonic(),
                "FastAGI: all %d sessions taken; %s, still without its variable block, dropped for %s",
                self._max_sessions,
                oldest_peer,
                peer,
            )
            return True
        return False

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, task: asyncio.Task[None]
    ) -> None:
        connection = AGIConnection(max_line_bytes=self._max_line_bytes)
        self._waiting[task] = peer
        try:
            async with asyncio.timeout(self._header_timeout_s):
                request = await _read_request(connection, reader)
        except TimeoutError:
            self._dropped.warn(
                time.monotonic(), "FastAGI %s: no variable block within %s s; dropped", peer, self._header_timeout_s
            )
            return
        except (ProtocolError, OSError) as exc:
            self._dropped.warn(time.monotonic(), "FastAGI %s: %s; dropped", peer, escape(exc))
            return
        finally:
            self._waiting.pop(task, None)
        if request is None:
            log.info("FastAGI %s: disconnected before the end of its variable block", peer)
            return
        channel = escape(request.channel)
        log.info(
            "FastAGI %s: %s channel=%s uniqueid=%s callerid=%s",
            peer,
            escape(request.network_script),
            channel,
            escape(request.uniqueid),
            escape(request.callerid),
        )
        session = AGISession(request, connection, reader, writer, command_timeout_s=self._command_timeout_s, peer=peer)
        try:
            await self._handler(session)
        except AGIHangup as exc:
            log.info("FastAGI %s (%s): session ended: %s", peer, channel, escape(exc))
        except ProtocolError as exc:
            log.warning("FastAGI %s (%s): %s", peer, channel, escape(exc))
        except Exception:
            log.exception("FastAGI %s (%s): handler failed", peer, channel)


async def _read_request(connection: AGIConnection, reader: asyncio.StreamReader) -> AGIRequest | None:
    """The variable block, or None if the peer closed before its end."""
    while True:
        event = connection.next_event()
        if isinstance(event, AGIRequest):
            return event
        if event is CLOSED:
            return None
        if event is not NEED_DATA:
            raise RemoteProtocolError(f"expected the variable block, got {event!r}")
        connection.receive_data(await reader.read(READ_BYTES))


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the socket; a peer that stopped reading gets it aborted."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_WAIT_S):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    with contextlib.suppress(Exception):
        host, port, *_ = writer.get_extra_info("peername")
        return f"{host}:{port}"
    return "?"
