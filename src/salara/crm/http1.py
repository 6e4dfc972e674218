"""A keep-alive HTTP/1.1 client for event posts to one CRM endpoint, on asyncio and httptools.

CRMs written for the old C module may answer a bare ``{"result":0}`` with no
status line and close the connection; aiohttp reports a parse error and drops
the bytes. :class:`Http1Client` keeps them: an answer whose first bytes (after
any CR/LF) are not ``HTTP/`` is read until the server closes (or resets) and
returned as ``Answer(status=None, body=<every byte received>, legacy=True)``.

It keeps the guarantees of :func:`salara.crm.client.make_client`: certificates
verified against the system's trust store unless ``tls_verify`` is false,
redirects never followed, no proxy from the environment, no compression
(``accept-encoding: identity``), answers bounded (``max_answer_bytes``), and with
``api_listen`` no connection to salara's own API
(:class:`~salara.crm.client.SelfLoopGuard` on every resolved address).

HTTP/1.1 as RFC 9112 has it, one request at a time per connection (no
pipelining). The framing (Content-Length, chunked, read until close, 1xx) is
httptools' (llhttp), one parser per connection: llhttp starts on the next
answer by itself after a whole one. Deadlines of exchanges and idle
connections share one timer per client.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

import httptools

from salara.config.values import HostPort
from salara.crm.client import MAX_ANSWER_BYTES, USER_AGENT, SelfLoopGuard

MAX_HEAD_BYTES: Final = 64 * 1024
"""Most bytes of status lines and headers (1xx answers included) read before an answer is refused as malformed."""

_SET_HERE: Final = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "content-type", "user-agent", "accept-encoding")
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SAFE: Final = "".join(map(chr, range(0x21, 0x7F)))  # a target keeps printable ASCII; the rest is %-encoded
_NAMES_KEPT: Final = 256


@dataclass(frozen=True, slots=True)
class Answer:
    """The CRM's answer to one post.

    ``status`` is the HTTP status, None when the answer had no status line.
    ``body`` is the body or, with ``status`` None, every byte received before
    the close; None when it was over ``max_answer_bytes`` (the rest was not
    read). ``legacy`` is true exactly when there was no status line.
    """

    status: int | None
    body: bytes | None
    legacy: bool


class Http1Client:
    """Posts to the one endpoint ``url`` (``http://`` or ``https://``) over a pool of keep-alive connections.

    At most ``max_connections`` connections are open (or opening) at a time;
    a post waits for a free one. A connection is closed after ``idle_timeout_s``
    seconds idle, and when an answer says ``Connection: close``, is HTTP/1.0
    without keep-alive, is read until close, has no status line or is over
    ``max_answer_bytes`` bytes, or when the server closes it. ``user:pass@`` in
    the URL is sent as Basic auth (Latin-1, as aiohttp does); the fragment is
    not sent. Make it anywhere, use it in one event loop. Raises ValueError for
    a URL that is not http(s) with a host, and a ``user_agent`` with CR, LF or NUL.
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
        host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode("ascii")
        default = 443 if parts.scheme == "https" else 80
        self.host, self.port = host, parts.port or default
        self._origin = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        authority = f"[{host}]" if ":" in host else host
        authority += f":{self.port}" if self.port != default else ""
        target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_SAFE)
        lines = [f"POST {target} HTTP/1.1", f"host: {authority}", f"user-agent: {user_agent}"]
        lines += ["accept-encoding: identity", "content-type: application/json"]
        self._set_here: frozenset[str] = _SET_HERE
        if parts.username is not None or parts.password is not None:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            raw = userinfo.encode("latin-1") if userinfo.isascii() or max(userinfo) <= "\xff" else userinfo.encode()
            lines.append(f"authorization: Basic {base64.b64encode(raw).decode('ascii')}")
            self._set_here = _SET_HERE | {"authorization"}
        if any(c in user_agent for c in "\r\n\0"):
            raise ValueError("the user agent has CR, LF or NUL")
        self._head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context()
            if not tls_verify:
                self._tls.check_hostname, self._tls.verify_mode = False, ssl.CERT_NONE
        self._guard = SelfLoopGuard(api_listen) if api_listen is not None else None
        self._max_connections, self._max_answer = max_connections, max_answer_bytes
        self._idle_timeout_s = idle_timeout_s
        self._names: set[str] = set()  # header names found valid
        self._count = 0  # connections open or opening
        self._connections: set[_Connection] = set()
        self._idle: list[_Connection] = []  # the most recently used last
        self.waiters: list[asyncio.Future[_Connection | None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open or being opened now (at most ``max_connections``)."""
        return self._count

    async def post(self, body: bytes, headers: Sequence[tuple[str, str]], timeout_s: float) -> Answer:
        """POST ``body`` (JSON) with ``headers`` after the client's own; the answer.

        ``timeout_s`` seconds bound the whole exchange: the wait for a free
        connection, connecting, sending, reading the answer (TimeoutError).
        Raises ValueError before anything is sent for a header name that is
        not an RFC 9110 token or is one the client sets itself (host,
        content-length, content-type, user-agent, accept-encoding, connection,
        transfer-encoding; authorization with ``user:pass@`` in the URL), and
        for a value with CR, LF, NUL or a character outside Latin-1.
        Raises ConnectionError (an OSError) when the CRM cannot be reached
        (``ConnectionRefusedError`` for salara's own API), closes or resets the
        connection before a whole answer (a kept-alive one too: the request may
        not have reached it, and is not sent again), or answers malformed HTTP;
        ``ssl.SSLError`` (an OSError) when TLS fails, an unverified certificate too.
        """
        request = b"%b%d\r\n%b\r\n%b" % (self._head, len(body), self._header_block(headers) if headers else b"", body)
        if self._closed:
            raise ConnectionError(f"{self._origin}: the client is closed")
        deadline = asyncio.get_running_loop().time() + timeout_s
        conn = self._idle_connection()
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._acquire()
        try:
            answer = await conn.send(request, deadline)
        except BaseException:
            conn.drop()
            raise
        self._release(conn)
        return answer

    async def aclose(self) -> None:
        """Close every connection, idle or busy (a post in flight fails with ConnectionError); waits at most 1 s.

        Posts waiting for a connection, and later posts, fail with ConnectionError.
        """
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"{self._origin}: the client is closed"))
        self.waiters.clear()
        connections = list(self._connections)
        for conn in connections:
            conn.close() if conn.in_idle else conn.drop()
        if connections:
            await asyncio.wait([conn.lost for conn in connections], timeout=1.0)
        for conn in connections:
            conn.drop()

    def _header_block(self, headers: Sequence[tuple[str, str]]) -> bytes:
        """The ``name: value`` lines of the caller's headers, checked (ValueError, see :meth:`post`)."""
        names = self._names
        for name, _ in headers:
            if name not in names:
                if _TOKEN.fullmatch(name) is None or name.lower() in self._set_here:
                    raise ValueError(f"header name {name!r} is not a token or is one this client sets itself")
                if len(names) < _NAMES_KEPT:
                    names.add(name)
        text = "".join([f"{name}: {value}\r\n" for name, value in headers])
        if text.count("\n") != len(headers) or text.count("\r") != len(headers) or "\0" in text:
            bad = next(name for name, value in headers if "\r" in value or "\n" in value or "\0" in value)
            raise ValueError(f"the value of header {bad!r} has CR, LF or NUL")
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("a header value has a character outside Latin-1") from None

    def _idle_connection(self) -> _Connection | None:
        """The most recently used idle connection the server has not closed (EOF seen), or None."""
        while self._idle:
            conn = self._idle.pop()
            conn.in_idle = False
            if conn.usable:
                return conn
            conn.drop()
        return None

    async def _acquire(self) -> _Connection:
        """An idle connection, a new one in a free slot, or one a finished post hands over."""
        while True:
            conn = self._idle_connection()
            if conn is not None:
                return conn
            if self._count < self._max_connections:
                self._count += 1
                return await self._open()
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                got = await waiter
            except BaseException:
                if not waiter.done():
                    self.waiters.remove(waiter)
                elif not waiter.cancelled() and waiter.exception() is None:  # handed over, then cancelled
                    got = waiter.result()
                    self._release(got) if got is not None else self._pass_slot()
                raise
            if got is None:  # a slot passed on: open a connection in it
                return await self._open()
            if got.usable:
                return got
            got.drop()  # closed while handed over: its slot passes on when it is lost

    def _release(self, conn: _Connection) -> None:
        """After an answer: hand ``conn`` to a waiting post, keep it idle, or let it close."""
        if self._closed or not conn.usable:
            conn.drop()
            return
        if self._hand(conn):
            return
        conn.in_idle, conn.deadline = True, asyncio.get_running_loop().time() + self._idle_timeout_s
        self._idle.append(conn)
        self._arm(conn.deadline)

    def _hand(self, item: _Connection | None) -> bool:
        """Give ``item`` (a connection, or None: a slot to open one in) to the first waiting post, if any."""
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(item)
                return True
        return False

    def _pass_slot(self) -> None:
        """A connection is gone or was never made: its slot goes to a waiting post, else it is free."""
        self._count -= not self._hand(None)

    def _lost(self, conn: _Connection) -> None:
        """``conn``'s transport is closed, by either side."""
        if conn in self._connections:
            self._connections.discard(conn)
            if conn.in_idle:
                conn.in_idle = False
                self._idle.remove(conn)
            self._pass_slot()

    def _arm(self, when: float) -> None:
        """Have :meth:`_expire` run by ``when`` (loop time)."""
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = asyncio.get_running_loop().call_at(when, self._expire), when

    def _expire(self) -> None:
        """Time out the exchanges past their deadline, close the connections idle too long; set the timer again."""
        self._timer = None
        now, earliest = asyncio.get_running_loop().time(), float("inf")
        for conn in list(self._connections):
            if conn.waiter is None and not conn.in_idle:
                continue
            if conn.deadline > now:
                earliest = min(earliest, conn.deadline)
            elif conn.waiter is not None:
                conn.fail(TimeoutError())
            else:
                conn.close()
        if earliest != float("inf"):
            self._arm(earliest)

    async def _open(self) -> _Connection:
        """A new connection in a slot already counted; the slot passes on if connecting fails."""
        try:
            conn = await self._connect()
        except BaseException:
            self._pass_slot()
            raise
        self._connections.add(conn)
        return conn

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
            except OSError as error:
                refused += sock is None and error.errno == errno.ECONNREFUSED
                errors.append(f"{info[4][0]}: {os.strerror(error.errno) if error.errno else error}")
                last = error.errno or last
                if sock is not None:
                    sock.close()
                continue
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            try:  # TLS: the handshake, SNI the host, the certificate verified unless tls_verify is false
                hostname = self.host if self._tls is not None else None
                await loop.create_connection(lambda: conn, sock=sock, ssl=self._tls, server_hostname=hostname)
            except BaseException:
                sock.close()
                raise
            return conn
        if infos and refused == len(infos):
            listen = self._guard.listen if self._guard else ""
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"{self._origin} is salara's own API ({listen}); not connecting"
            )
        raise OSError(last, f"cannot connect to {self._origin}: {'; '.join(errors) or 'no address'}")


class _Connection(asyncio.Protocol):
    """One connection of the pool and its answer parser; at most one request in flight."""

    def __init__(self, client: Http1Client) -> None:
        self._client, self._max = client, client._max_answer
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.usable = False  # connected, not closed by either side, no byte that no request asked for
        self.in_idle = False
        self.deadline = 0.0  # of the exchange in flight, or of the idle time
        self._reused = False
        self.waiter: asyncio.Future[Answer] | None = None
        self._received, self._started, self._prefix = 0, False, b""  # this answer: bytes, begun with HTTP/, start
        self._legacy: bytearray | None = None  # with no status line: every byte received
        self._status, self._size, self._framed, self._headers_done, self._keep_alive = 0, 0, False, False, False
        self._chunks: list[bytes] = []

    def send(self, request: bytes, deadline: float) -> asyncio.Future[Answer]:
        """Write ``request`` whole: the future of its answer (or error; TimeoutError past ``deadline``)."""
        assert self.transport is not None
        self.waiter = waiter = self._loop.create_future()
        self._received, self._started, self._prefix, self._legacy = 0, False, b"", None
        self.on_message_begin()
        self.deadline = deadline
        self._client._arm(deadline)
        self.transport.write(request)
        return waiter

    def close(self) -> None:
        """Close gracefully (an idle connection)."""
        self.usable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def drop(self) -> None:
        """Close at once (a broken, stale or abandoned exchange)."""
        self.usable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.usable = transport, True

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            self.drop()  # bytes on an idle connection: no request asked for them
            return
        self._received += len(data)
        if self._legacy is not None:
            self._legacy += data
            self._check_legacy_size()
            return
        if not self._started:
            if data.startswith(b"HTTP/") and not self._prefix:
                self._started = True
            elif not self._may_be_http(data):
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(ConnectionError(f"{self._client._origin}: the answer switched protocols"))
        except httptools.HttpParserError as error:
            self.fail(ConnectionError(f"{self._client._origin}: malformed HTTP answer: {error}"))  # dropped
        else:
            if self.waiter is None:
                return
            if self._size > self._max:
                self._finish(Answer(self._status, None, False))
                self.drop()
            elif not self._headers_done and self._received > MAX_HEAD_BYTES:
                self.fail(ConnectionError(f"{self._client._origin}: answer head over {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool | None:
        self._closed_by_peer(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer(exc)
        if not self.lost.done():
            self.lost.set_result(None)
        self._client._lost(self)

    def on_message_begin(self) -> None:
        if self.waiter is None:
            self.usable = False  # a second answer to one request
        self._status, self._size, self._framed, self._headers_done = 0, 0, False, False
        self._chunks.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 14 and name.lower() == b"content-length":
            self._framed = True
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._framed = value.rpartition(b",")[2].strip().lower() == b"chunked"

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status, self._keep_alive = self._parser.get_status_code(), self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._max:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is None:
            return
        if self._status < 200:  # 1xx: the answer follows
            self.on_message_begin()
            return
        self._finish(Answer(self._status, self._body(), False))
        if not self._keep_alive or self._size > self._max:
            self.close()

    def _may_be_http(self, data: bytes) -> bool:
        """Whether this answer so far may be HTTP (its start is kept until known); if not, it is legacy."""
        prefix = self._prefix + data
        start = prefix.lstrip(b"\r\n")
        if start.startswith(b"HTTP/"):
            self._started, self._prefix = True, b""
        elif b"HTTP/".startswith(start):
            self._prefix = prefix  # too short to tell
        else:
            self._legacy = bytearray(prefix)
            self._check_legacy_size()
            return False
        return True

    def _check_legacy_size(self) -> None:
        if self._legacy is not None and len(self._legacy) > self._max:
            self._finish(Answer(None, None, True))
            self.drop()

    def _body(self) -> bytes | None:
        chunks = self._chunks
        body = None if self._size > self._max else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return body

    def _closed_by_peer(self, exc: Exception | None) -> None:
        """The server closed (``exc`` None) or reset the connection: end or fail the answer in flight."""
        self.usable = False
        if self.waiter is None:
            return
        origin, what = self._client._origin, "reset" if exc is not None else "closed"
        if self._legacy is not None or (self._received and not self._started):
            self._finish(Answer(None, bytes(self._legacy if self._legacy is not None else self._prefix), True))
        elif self._received == 0 and self._reused:
            message = f"{origin} {what} a kept-alive connection before answering (the request may not have reached it)"
            self.fail(ConnectionResetError(errno.ECONNRESET, message))
        elif self._received == 0:
            self.fail(ConnectionResetError(errno.ECONNRESET, f"{origin} {what} the connection without answering"))
        elif exc is None and self._headers_done and not self._framed:
            self._finish(Answer(self._status, self._body(), False))  # read until close: the close ends it
        else:
            self.fail(ConnectionError(f"{origin} {what} the connection in mid-answer"))

    def _finish(self, answer: Answer) -> None:
        waiter, self.waiter, self._reused = self.waiter, None, True
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.drop()
