"""A keep-alive HTTP/1.1 client for event posts to one CRM endpoint, on asyncio and httptools (llhttp).

CRMs written for the old C module may answer a bare ``{"result":0}`` with no status line and close;
aiohttp reports a parse error and drops the bytes. Here an answer whose first bytes (after any CR/LF)
are not ``HTTP/`` is read until the close or reset: ``Answer(status=None, body=<the bytes>, legacy=True)``.
The guarantees of :func:`salara.crm.client.make_client` hold: certificates verified unless
``tls_verify`` is false, no redirects, no proxy from the environment, no compression, bounded
answers, no connection to salara's own API (:class:`~salara.crm.client.SelfLoopGuard`). RFC 9112.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import quote, unquote, urlsplit

import httptools

from salara.config.values import HostPort
from salara.crm.client import MAX_ANSWER_BYTES, USER_AGENT, SelfLoopGuard

MAX_HEAD_BYTES: Final = 64 * 1024  # of status lines and headers (1xx answers too): more is a malformed answer
_SET_HERE: Final = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "content-type", "user-agent", "accept-encoding")
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEVER: Final = float("inf")
_SAFE: Final = "".join(map(chr, range(0x21, 0x7F)))  # a target keeps printable ASCII; the rest is %-encoded


@dataclass(frozen=True, slots=True)
class Answer:
    """The CRM's answer; ``legacy``: no status line (``body``: all bytes until the close); ``body`` None: too large."""

    status: int | None
    body: bytes | None
    legacy: bool
    retry_after: bytes | None = None  # the Retry-After header's value, if sent


class Http1Client:
    """Posts to the one endpoint ``url`` (``http://`` or ``https://``) over a pool of keep-alive connections.

    At most ``max_connections`` are open (or opening); a post waits for one. A connection is closed
    after ``idle_timeout_s`` seconds idle, and after an answer that says ``Connection: close``, is
    HTTP/1.0 without keep-alive, is read until close, has no status line or is over ``max_answer_bytes``.
    ``user:pass@`` in the URL is sent as Basic auth (Latin-1, as aiohttp does). Use it in one event
    loop. Raises ValueError for a URL that is not http(s) with a host, or a ``user_agent`` with CR, LF, NUL.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        tls_verify: bool = True,
        user_agent: str = USER_AGENT,
        api_listen: HostPort | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        idle_timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or max_connections < 1:
            raise ValueError("the CRM URL must be http:// or https:// with a host, max_connections at least 1")
        if any(c in user_agent for c in "\r\n\0"):
            raise ValueError("the user agent has CR, LF or NUL")
        host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode("ascii")
        default = 443 if parts.scheme == "https" else 80
        self.host, self.port = host, parts.port or default
        authority = f"[{host}]" if ":" in host else host
        self._origin = f"{authority}:{self.port}"
        target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_SAFE)
        lines = [f"POST {target} HTTP/1.1", f"host: {authority if self.port == default else self._origin}"]
        lines += [f"user-agent: {user_agent}", "accept-encoding: identity", "content-type: application/json"]
        if parts.username is not None or parts.password is not None:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            raw = userinfo.encode("latin-1") if max(userinfo) <= "\xff" else userinfo.encode()
            lines.append(f"authorization: Basic {base64.b64encode(raw).decode('ascii')}")
        self._head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        if self._tls is not None and not tls_verify:
            self._tls.check_hostname, self._tls.verify_mode = False, ssl.CERT_NONE
        self._guard = SelfLoopGuard(api_listen) if api_listen is not None else None
        self._max_connections, self._max_answer, self._idle_s = max_connections, max_answer_bytes, idle_timeout_s
        self._names: set[str] = set()
        self._connections: set[_Connection] = set()
        self._idle: list[_Connection] = []  # the most recently used last
        self._waiters: list[asyncio.Future[_Connection | None]] = []  # posts waiting for a connection, in turn
        self._timer: asyncio.TimerHandle | None = None  # one for every deadline: exchanges and idle times
        self._count, self._timer_at, self._closed = 0, 0.0, False  # count: connections open or opening

    @property
    def open_connections(self) -> int:
        """Connections open or being opened now (at most ``max_connections``)."""
        return self._count

    async def post(self, body: bytes, headers: Sequence[tuple[str, str]], timeout_s: float) -> Answer:
        """POST ``body`` (JSON) with ``headers`` after the client's own; the answer.

        ``timeout_s`` seconds bound the whole exchange (waiting for a connection,
        connecting, sending, reading): TimeoutError. ValueError, nothing sent: a
        header name not an RFC 9110 token or one the client sets (host, content-*,
        user-agent, accept-encoding, connection, transfer-encoding), a value
        with CR, LF, NUL or beyond Latin-1. ConnectionError
        (an OSError): the CRM unreachable (ConnectionRefusedError for salara's own
        API), a close or reset before a whole answer (on a kept-alive connection
        too: the request may not have reached it; it is not sent again), malformed
        HTTP. ``ssl.SSLError`` (an OSError): TLS failed, an unverified certificate too.
        """
        request = b"%b%d\r\n%b\r\n%b" % (self._head, len(body), self._header_block(headers) if headers else b"", body)
        if self._closed:
            raise ConnectionError(f"{self._origin}: the client is closed")
        deadline = asyncio.get_running_loop().time() + timeout_s
        conn = self._idle_connection()  # none while posts wait: a finished one hands its connection over
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._acquire()
        try:
            answer = await conn.send(request, deadline)
        except BaseException:
            conn.close(abort=True)
            raise
        self._release(conn)
        return answer

    async def aclose(self) -> None:
        """Drop every connection (posts in flight, waiting or to come fail with ConnectionError); wait <= 1 s."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"{self._origin}: the client is closed"))
        for conn in self._connections:
            conn.close(abort=True)
        if self._connections:
            await asyncio.wait([conn.lost for conn in self._connections], timeout=1.0)

    def _header_block(self, headers: Sequence[tuple[str, str]]) -> bytes:
        for name, _ in headers:
            if name not in self._names:  # names found valid, at most 256 kept
                if _TOKEN.fullmatch(name) is None or name.lower() in _SET_HERE:
                    raise ValueError(f"header name {name!r} is not a token or is one this client sets itself")
                self._names.add(name) if len(self._names) < 256 else None
        text = "".join([f"{name}: {value}\r\n" for name, value in headers])
        if text.count("\n") != len(headers) or text.count("\r") != len(headers) or "\0" in text:
            raise ValueError("a header value has CR, LF or NUL")
        return text.encode("latin-1")  # UnicodeEncodeError (a ValueError) beyond Latin-1

    def _idle_connection(self) -> _Connection | None:
        """The most recently used idle connection the server has not closed (no EOF seen or unread), or None."""
        while self._idle:
            conn = self._idle.pop()
            try:  # an EOF unread in the socket too (MSG_PEEK): the loop may not have polled since it came
                if conn.usable:
                    conn.sock.recv(1, socket.MSG_PEEK)  # b"": an EOF; a byte: one no request asked for (a 408, say)
            except (BlockingIOError, InterruptedError):
                return conn  # nothing waits
            except OSError:  # a reset
                pass
            conn.close(abort=True)
        return None

    async def _acquire(self) -> _Connection:
        """An idle connection, a new one in a free slot, or one a finished post hands over (in turn)."""
        while (conn := self._idle_connection()) is None:
            if self._count < self._max_connections:
                self._count += 1
            else:
                waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    conn = await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                        self._release(got) if (got := waiter.result()) is not None else self._pass_slot()
                    raise  # (a waiter cancelled or failed is skipped by _hand)
                if conn is not None:
                    self._idle.append(conn)  # handed over: checked as an idle one is (closed: dropped, slot passed on)
                    continue
            try:  # a slot of our own (None handed over: a slot passed on): open a connection in it
                conn = await self._connect()
            except BaseException:
                self._pass_slot()
                raise
            self._connections.add(conn)
            return conn
        return conn

    def _release(self, conn: _Connection) -> None:
        """After an answer: hand ``conn`` to a waiting post, keep it idle, or let it close."""
        if self._closed or not conn.usable:
            conn.close(abort=True)
        elif not self._hand(conn):
            conn.deadline = asyncio.get_running_loop().time() + self._idle_s
            self._idle.append(conn)
            self._arm(conn.deadline)

    def _hand(self, item: _Connection | None) -> bool:
        """Give ``item`` (a connection, or None: a slot to open one in) to the first waiting post, if any."""
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(item)
                return True
        return False

    def _pass_slot(self) -> None:
        self._count -= not self._hand(None)

    def _lost(self, conn: _Connection) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._pass_slot()

    def _arm(self, when: float) -> None:
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = asyncio.get_running_loop().call_at(when, self._expire), when

    def _expire(self) -> None:
        """Time out exchanges past their deadline (TimeoutError), close connections idle too long; re-arm."""
        self._timer, now, earliest = None, asyncio.get_running_loop().time(), _NEVER
        for conn in list(self._connections):
            if conn.deadline > now:
                earliest = min(earliest, conn.deadline)
            else:
                conn.fail(TimeoutError()) if conn.waiter is not None else conn.close()
        if earliest != _NEVER:
            self._arm(earliest)

    async def _connect(self) -> _Connection:
        """Connect to the first of the host's addresses that takes it, skipping salara's own API."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise socket.gaierror(error.errno, f"cannot resolve {self.host}: {error.strerror}") from None
        conn, errors, last, refused = _Connection(self), [], errno.ECONNREFUSED, 0
        for info in infos:
            sock = None
            try:  # the guard logs a refusal (rate-limited) and raises ConnectionRefusedError
                sock = self._guard.socket_factory(info) if self._guard else socket.socket(*info[:3])
                sock.setblocking(False)
                await loop.sock_connect(sock, info[4])
                conn.sock = sock  # TLS: the handshake, SNI the host, the certificate verified unless not tls_verify
                hostname = self.host if self._tls is not None else None
                await loop.create_connection(lambda: conn, sock=sock, ssl=self._tls, server_hostname=hostname)
                return conn
            except BaseException as error:
                if sock is not None:
                    sock.close()
                if not isinstance(error, OSError) or isinstance(error, ssl.SSLError):
                    raise  # TLS failed: not a reason to try the next address
                refused += sock is None and error.errno == errno.ECONNREFUSED
                errors.append(str(error))
                last = error.errno or last
        if infos and refused == len(infos):
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"{self._origin} is salara's own API; not connecting")
        raise OSError(last, f"cannot connect to {self._origin}: {'; '.join(errors) or 'no address'}")


class _Connection(asyncio.Protocol):
    """One connection of the pool and its answer parser; at most one request in flight."""

    def __init__(self, client: Http1Client) -> None:
        self._client, self._max, self._loop = client, client._max_answer, asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport  # from connection_made, before the pool sees the connection
        self.sock: socket.socket  # the TCP socket under the transport (and under TLS), for a MSG_PEEK
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.deadline, self._reused = _NEVER, False  # deadline: of the exchange in flight, or of the idle time
        self.waiter: asyncio.Future[Answer] | None = None
        self._received, self._started, self._legacy = 0, False, False  # this answer: bytes, HTTP/, no status line
        self._prefix = bytearray()  # this answer's bytes until it is seen to begin with HTTP/
        self._status, self._size, self._framed = 0, 0, False  # of the message being parsed (1xx too)
        self._chunks: list[bytes] = []
        self._retry_after: bytes | None = None

    def send(self, request: bytes, deadline: float) -> asyncio.Future[Answer]:
        """Write ``request`` whole: the future of its answer (or error; TimeoutError past ``deadline``)."""
        self.waiter = waiter = self._loop.create_future()
        self._received, self._started, self._legacy, self.deadline = 0, False, False, deadline
        self._prefix.clear()
        self.on_message_begin()
        self._client._arm(deadline)
        self.transport.write(request)
        return waiter

    @property
    def usable(self) -> bool:
        """Connected, not closing: no EOF seen (the transport closes on it), nothing amiss."""
        return not self.transport.is_closing()

    def close(self, *, abort: bool = False) -> None:
        """Close gracefully (idle, or the answer ends it), or at once (broken, stale, abandoned)."""
        if not self.transport.is_closing():
            self.transport.abort() if abort else self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:  # bytes no request asked for: on_message_begin drops it
        self._received += len(data)
        if not self._started and (self._prefix or not data.startswith(b"HTTP/")):
            self._prefix += data  # the answer so far, until it is seen to begin with HTTP/ (all of it if not)
            start = b"" if self._legacy else bytes(self._prefix[:69].lstrip(b"\r\n")[:5])  # after <= 64 CR/LF
            if start != b"HTTP/":  # no status line (the close ends the answer), or too short to tell yet
                self._legacy = self._legacy or not b"HTTP/".startswith(start) or len(self._prefix) >= 69
                if len(self._prefix) > self._max:
                    self._finish(Answer(None, None, True))
                    self.close(abort=True)
                return
            data = bytes(self._prefix)
            self._prefix.clear()
        self._started = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:  # after an answer too
            self.fail(ConnectionError(f"{self._client._origin}: malformed HTTP answer: {error!r}"))
            return
        if self.waiter is None:
            return
        if self._size > self._max:
            self._finish(Answer(self._status, None, False))
            self.close(abort=True)
        elif not self._status and self._received > MAX_HEAD_BYTES:
            self.fail(ConnectionError(f"{self._client._origin}: answer head over {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer(exc)
        if not self.lost.done():
            self.lost.set_result(None)
        self._client._lost(self)

    def on_message_begin(self) -> None:
        if self.waiter is None:
            self.close(abort=True)  # a second answer to one request
        self._status, self._size, self._framed, self._retry_after = 0, 0, False, None  # status 0: head incomplete
        self._chunks.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 14 and name.lower() == b"content-length":
            self._framed = True
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._framed = value.rpartition(b",")[2].strip().lower() == b"chunked"
        elif len(name) == 11 and name.lower() == b"retry-after":
            self._retry_after = value

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._max:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 1xx: the answer follows
            self.on_message_begin()
            return
        self._finish(Answer(self._status, self._body(), False, self._retry_after))
        if not self._parser.should_keep_alive() or self._size > self._max:
            self.close()

    def _body(self) -> bytes | None:
        return None if self._size > self._max else b"".join(self._chunks)  # one chunk: itself, not a copy

    def _closed_by_peer(self, exc: Exception | None) -> None:
        """The server closed (``exc`` None) or reset the connection: end or fail the answer in flight, if any."""
        origin, what = self._client._origin, "reset" if exc is not None else "closed"
        if self._received and not self._started:  # no status line, or too short to tell: what came is the answer
            self._finish(Answer(None, bytes(self._prefix), True))
        elif self._received == 0:
            kept = "a kept-alive connection before answering (the request may not have reached it)"
            message = f"{origin} {what} {kept if self._reused else 'the connection without answering'}"
            self.fail(ConnectionResetError(errno.ECONNRESET, message))
        elif exc is None and self._status and not self._framed:
            self._finish(Answer(self._status, self._body(), False))  # read until close: the close ends it
        else:
            self.fail(ConnectionError(f"{origin} {what} the connection in mid-answer"))

    def fail(self, error: Exception) -> None:
        """Fail the exchange in flight with ``error``; the connection is dropped."""
        self._finish(error)
        self.close(abort=True)

    def _finish(self, outcome: Answer | Exception) -> None:
        waiter, self.waiter, self._reused, self.deadline = self.waiter, None, True, _NEVER
        if waiter is not None and not waiter.done():
            waiter.set_exception(outcome) if isinstance(outcome, Exception) else waiter.set_result(outcome)
