"""The keep-alive HTTP/1.1 client of event posts (salara.crm.http1) against real servers on 127.0.0.1.

:class:`Scripted` is a small HTTP/1.1 server written here on
``asyncio.start_server``: it reads each request (head, Content-Length body),
records it with the number of the connection it came on, and lets the test's
``answer`` write whatever bytes it likes (a status line or none, chunks,
pauses, a reset). Every read and wait is bounded by ``WAIT_S``; waits are on
conditions, never on timing thresholds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import select
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from salara.config.values import HostPort
from salara.crm.client import USER_AGENT
from salara.crm.http1 import Answer, Http1Client
from tests.unit.crm_server import until

WAIT_S = 10.0
HEADERS = [("webhook-id", "msg_1"), ("webhook-timestamp", "1700000000")]


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the server read it: the connection's number, the request line, headers (lower-case names)."""

    connection: int
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Peer:
    """The server's side of one connection."""

    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: int = 0

    async def send(self, *pieces: bytes, pause_s: float = 0.0) -> None:
        """Write ``pieces`` one by one, each drained, ``pause_s`` apart."""
        for index, piece in enumerate(pieces):
            if index and pause_s:
                await asyncio.sleep(pause_s)
            self.writer.write(piece)
            await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Answerer = Callable[[Peer, Seen], Awaitable[bool]]
"""Answers one request; False closes the connection after it."""


def ok(body: bytes = b'{"ok":true}', status: int = 200, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\n%bContent-Length: %d\r\n\r\n%b" % (status, extra, len(body), body)


async def answer_ok(peer: Peer, request: Seen) -> bool:
    await peer.send(ok())
    return True


@dataclass
class Scripted:
    answer: Answerer = answer_ok
    tls: ssl.SSLContext | None = None
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    ended: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """Answers that hang wait for this (set when the server stops)."""
    port: int = 0
    _server: asyncio.Server | None = None

    def url(self, path: str = "/events?source=salara", host: str = "127.0.0.1", userinfo: str = "") -> str:
        return f"{'https' if self.tls else 'http'}://{userinfo}{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), WAIT_S)

    async def hang(self) -> None:
        """Wait (bounded) until the server stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), WAIT_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(self.connections, reader, writer)
        self.connections += 1
        try:
            while (request := await self._read(peer)) is not None:
                self.requests.append(request)
                peer.requests += 1
                if not await self.answer(peer, request):
                    break
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.ended += 1
            writer.close()

    @staticmethod
    async def _read(peer: Peer) -> Seen | None:
        try:
            head = await asyncio.wait_for(peer.reader.readuntil(b"\r\n\r\n"), WAIT_S)
        except (asyncio.IncompleteReadError, TimeoutError):
            return None
        line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for text in lines:
            if text:
                name, _, value = text.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(peer.reader.readexactly(int(headers.get("content-length", "0"))), WAIT_S)
        return Seen(peer.number, line, headers, body)


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    crm = Scripted()
    await crm.start()
    yield crm
    await crm.stop()


@contextlib.asynccontextmanager
async def client_for(url: str, **options: object) -> AsyncIterator[Http1Client]:
    options.setdefault("max_connections", 4)
    client = Http1Client(url, **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose()


# -- answers -------------------------------------------------------------------------


async def test_a_post_is_sent_whole_with_its_headers_and_a_content_length_answer_read(server: Scripted) -> None:
    async with client_for(server.url()) as client:
        answer = await client.post(b'{"event":"call.started"}', HEADERS, 5.0)
    assert answer == Answer(200, b'{"ok":true}', False)
    (request,) = server.requests
    assert request.line == "POST /events?source=salara HTTP/1.1"
    assert request.headers == {
        "host": f"127.0.0.1:{server.port}",
        "user-agent": USER_AGENT,
        "accept-encoding": "identity",
        "content-type": "application/json",
        "content-length": "24",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
    }
    assert request.body == b'{"event":"call.started"}'


async def test_a_chunked_answer_arriving_in_pieces_is_joined(server: Scripted) -> None:
    async def chunked(peer: Peer, request: Seen) -> bool:
        head = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        await peer.send(head + b'c\r\n{"res', b'ult":0}\r\n', b"1\r\n\n\r\n0\r\n\r\n", pause_s=0.02)
        return True

    server.answer = chunked
    async with client_for(server.url()) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(201, b'{"result":0}\n', False)
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(201, b'{"result":0}\n', False)
    assert [request.connection for request in server.requests] == [0, 0]


async def test_an_answer_without_length_is_read_until_the_close(server: Scripted) -> None:
    async def until_close(peer: Peer, request: Seen) -> bool:
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst,", b"second", pause_s=0.02)
        return False

    server.answer = until_close
    async with client_for(server.url()) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, b"first,second", False)
        await until(lambda: client.open_connections == 0, "the connection closed")


async def test_interim_1xx_answers_are_skipped_and_redirects_are_not_followed(server: Scripted) -> None:
    async def interim_then_redirect(peer: Peer, request: Seen) -> bool:
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        await peer.send(interim, ok(b"moved", 307, b"Location: /elsewhere\r\n"), pause_s=0.02)
        return True

    server.answer = interim_then_redirect
    async with client_for(server.url()) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(307, b"moved", False)
    assert len(server.requests) == 1


async def test_a_malformed_http_answer_or_one_cut_short_raises(server: Scripted) -> None:
    answers = iter([b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])

    async def broken(peer: Peer, request: Seen) -> bool:
        await peer.send(next(answers))
        return False

    server.answer = broken
    async with client_for(server.url()) as client:
        with pytest.raises(ConnectionError, match="malformed HTTP answer"):
            await client.post(b"{}", HEADERS, 5.0)
        with pytest.raises(ConnectionError, match="mid-answer"):
            await client.post(b"{}", HEADERS, 5.0)


async def test_a_status_line_split_in_pieces_is_still_http(server: Scripted) -> None:
    answers = iter([(b"\r\nHT", ok(b"x" * 10)[2:]), (b"H", ok(b"y" * 200)[1:])])

    async def split(peer: Peer, request: Seen) -> bool:
        await peer.send(*next(answers), pause_s=0.05)
        return True

    server.answer = split
    async with client_for(server.url(), max_answer_bytes=100) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, b"x" * 10, False)
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, None, False)


async def test_an_upgrade_or_an_endless_head_is_refused(server: Scripted) -> None:
    answers = iter([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", b"HTTP/1.1 200 OK\r\n"])

    async def odd(peer: Peer, request: Seen) -> bool:
        head = next(answers)
        await peer.send(head, *([b"x-pad: " + b"p" * 1000 + b"\r\n"] * 70 if head.endswith(b"OK\r\n") else []))
        await server.hang()
        return False

    server.answer = odd
    async with client_for(server.url()) as client:
        with pytest.raises(ConnectionError, match="malformed HTTP answer"):
            await client.post(b"{}", HEADERS, 5.0)
        with pytest.raises(ConnectionError, match="answer head over"):
            await client.post(b"{}", HEADERS, 5.0)


# -- answers without a status line ---------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [[b'{"result":0}'], [b'{"res', b'ult":0}'], [b"\r\n", b'{"result":0}'], [b"HT", b"ML here"]],
    ids=["one-write", "two-writes", "crlf-first", "http-like-start"],
)
async def test_an_answer_without_a_status_line_is_every_byte_before_the_close(
    server: Scripted, pieces: list[bytes]
) -> None:
    async def legacy(peer: Peer, request: Seen) -> bool:
        await peer.send(*pieces, pause_s=0.05)
        return False

    server.answer = legacy
    async with client_for(server.url()) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(None, b"".join(pieces), True)
        await until(lambda: client.open_connections == 0, "the connection closed")


async def test_a_legacy_answer_over_the_limit_has_no_body(server: Scripted) -> None:
    async def legacy(peer: Peer, request: Seen) -> bool:
        await peer.send(b'{"result":0,"pad":"' + b"x" * 200, b'"}', pause_s=0.02)
        return False

    server.answer = legacy
    async with client_for(server.url(), max_answer_bytes=100) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(None, None, True)
        await until(lambda: client.open_connections == 0, "the connection dropped")


async def test_an_answer_without_a_status_line_that_never_ends_times_out(server: Scripted) -> None:
    async def legacy_open(peer: Peer, request: Seen) -> bool:
        await peer.send(b'{"result":0}')
        await server.hang()
        return False

    server.answer = legacy_open
    async with client_for(server.url()) as client:
        with pytest.raises(TimeoutError):
            await client.post(b"{}", HEADERS, 0.2)
        await until(lambda: client.open_connections == 0, "the connection dropped")


# -- connections ---------------------------------------------------------------------


async def test_connections_are_kept_alive_and_bounded(server: Scripted) -> None:
    open_seen: list[int] = []

    async def slow_ok(peer: Peer, request: Seen) -> bool:
        open_seen.append(client.open_connections)
        await asyncio.sleep(0.01)
        await peer.send(ok(request.body))
        return True

    server.answer = slow_ok
    async with client_for(server.url(), max_connections=3) as client:
        for n in range(5):
            assert await client.post(b"%d" % n, HEADERS, 5.0) == Answer(200, b"%d" % n, False)
        assert {request.connection for request in server.requests} == {0}
        bodies = [b'{"n":%d}' % n for n in range(20)]
        answers = await asyncio.gather(*(client.post(body, HEADERS, 10.0) for body in bodies))
        assert [answer.body for answer in answers] == bodies
        assert client.open_connections <= 3
    assert len(server.requests) == 25 and server.connections <= 3
    assert max(open_seen) <= 3


async def test_a_connection_the_server_closes_is_not_kept(server: Scripted) -> None:
    answers = iter([ok(extra=b"Connection: close\r\n"), b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", ok()])

    async def closing(peer: Peer, request: Seen) -> bool:
        await peer.send(next(answers))
        return True

    server.answer = closing
    async with client_for(server.url()) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
        assert (await client.post(b"{}", HEADERS, 5.0)).body == b"ok"
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
    assert [request.connection for request in server.requests] == [0, 1, 2]


async def test_an_idle_connection_closed_by_the_server_is_dropped_before_reuse(server: Scripted) -> None:
    # The server closes after each answer without saying so: the client sees the EOF
    # while the connection is idle and opens a new one for the next post.
    async def answer_then_close(peer: Peer, request: Seen) -> bool:
        await peer.send(ok())
        return False

    server.answer = answer_then_close
    async with client_for(server.url()) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
        await until(lambda: client.open_connections == 0, "the EOF seen on the idle connection")
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
    assert [request.connection for request in server.requests] == [0, 1]


async def test_a_kept_alive_connection_closed_before_the_answer_raises_and_is_not_retried(server: Scripted) -> None:
    # The race the EOF check cannot close: the server drops the connection as the
    # request arrives. The request may or may not have been handled; the caller decides.
    async def close_second(peer: Peer, request: Seen) -> bool:
        if peer.requests == 2:
            return False
        await peer.send(ok())
        return True

    server.answer = close_second
    async with client_for(server.url()) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
        with pytest.raises(ConnectionResetError, match="kept-alive connection before answering"):
            await client.post(b"{}", HEADERS, 5.0)
    assert [request.connection for request in server.requests] == [0, 0]


async def test_bytes_on_an_idle_connection_drop_it(server: Scripted) -> None:
    async def answer_then_408(peer: Peer, request: Seen) -> bool:
        await peer.send(ok())
        if peer.requests == 1:
            await asyncio.sleep(0.02)
            await peer.send(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        return True

    server.answer = answer_then_408
    async with client_for(server.url()) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
        await until(lambda: client.open_connections == 0, "the connection dropped")
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
    assert [request.connection for request in server.requests] == [0, 1]


@pytest.mark.parametrize("last_words", [b"", b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"])
async def test_an_eof_the_loop_has_not_read_yet_still_keeps_the_idle_connection_from_reuse(
    server: Scripted, last_words: bytes
) -> None:
    # The server ends an idle connection (after a 408, or not) and the EOF is already in
    # the client's socket when the next post comes, before the loop has polled the socket.
    peers: list[Peer] = []

    async def answer_and_keep(peer: Peer, request: Seen) -> bool:
        peers.append(peer)
        await peer.send(ok())
        return True

    server.answer = answer_and_keep
    async with client_for(server.url()) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
        await until(lambda: len(client._idle) == 1, "the connection idle")
        (peer,) = peers
        peer.writer.write(last_words)
        peer.writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        # No await from here to the post: the loop does not run, the EOF stays unread.
        readable, _, _ = select.select([client._idle[0].sock], [], [], WAIT_S)
        assert readable
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
    assert [request.connection for request in server.requests] == [0, 1]


async def test_a_reset_or_a_close_without_any_answer_raises(server: Scripted) -> None:
    async def reset(peer: Peer, request: Seen) -> bool:
        peer.reset()
        return False

    async def close(peer: Peer, request: Seen) -> bool:
        return False

    async with client_for(server.url()) as client:
        server.answer = reset
        with pytest.raises(ConnectionResetError, match="without answering"):
            await client.post(b"{}", HEADERS, 5.0)
        server.answer = close
        with pytest.raises(ConnectionError, match="closed the connection without answering"):
            await client.post(b"{}", HEADERS, 5.0)
        await until(lambda: client.open_connections == 0, "the connections dropped")


async def test_a_refused_connection_names_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client_for(f"http://127.0.0.1:{port}/") as client:
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            await client.post(b"{}", HEADERS, 5.0)
        assert client.open_connections == 0


async def test_idle_connections_are_closed_after_the_idle_timeout_and_by_aclose(server: Scripted) -> None:
    client = Http1Client(server.url(), max_connections=2, idle_timeout_s=0.05)
    await client.post(b"{}", HEADERS, 5.0)
    await until(lambda: server.ended == 1 and client.open_connections == 0, "the idle connection closed")
    await client.post(b"{}", HEADERS, 5.0)
    await client.aclose()
    assert client.open_connections == 0
    await until(lambda: server.ended == 2, "the server saw the close")
    with pytest.raises(ConnectionError, match="closed"):
        await client.post(b"{}", HEADERS, 5.0)


# -- limits --------------------------------------------------------------------------


async def test_an_answer_over_the_limit_has_no_body_and_its_connection_is_dropped(server: Scripted) -> None:
    answers = iter([ok(b"x" * 100), ok(b"x" * 101), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"])

    async def big(peer: Peer, request: Seen) -> bool:
        head = next(answers)
        await peer.send(head + (b"40\r\n" + b"y" * 64 + b"\r\n") * 2 if head.endswith(b"\n\r\n") else head)
        return True

    server.answer = big
    async with client_for(server.url(), max_answer_bytes=100) as client:
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, b"x" * 100, False)
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, None, False)
        assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, None, False)
        await until(lambda: client.open_connections == 0, "the connections dropped")
    assert [request.connection for request in server.requests] == [0, 0, 1]


async def test_timeout_bounds_the_answer_and_the_wait_for_a_connection(server: Scripted) -> None:
    async def never(peer: Peer, request: Seen) -> bool:
        await server.hang()
        return False

    server.answer = never
    async with client_for(server.url(), max_connections=1) as client:
        with pytest.raises(TimeoutError):
            await client.post(b"{}", HEADERS, 0.1)
        await until(lambda: client.open_connections == 0, "the timed-out connection dropped")
        first = asyncio.create_task(client.post(b"{}", HEADERS, WAIT_S))
        await until(lambda: len(server.requests) == 2, "the first post in flight")
        with pytest.raises(TimeoutError):
            await client.post(b"{}", HEADERS, 0.1)  # waits for the one connection
        assert len(server.requests) == 2 and client.open_connections == 1
        server.release.set()
        with pytest.raises(ConnectionError):
            await first
    server.release.clear()


@pytest.mark.parametrize(
    "headers",
    [
        [("webhook-id", "msg_1\r\nx-forged: 1")],
        [("webhook-id", "msg_1\n")],
        [("webhook-id", "msg\0")],
        [("x-forged\r\nwebhook-id", "msg_1")],
        [("bad name", "1")],
        [("Content-Length", "0")],
        [("webhook-id", "msg_\u20ac")],
    ],
    ids=["crlf-value", "lf-value", "nul-value", "crlf-name", "space-name", "own-header", "not-latin-1"],
)
async def test_a_header_that_could_forge_the_request_is_refused_before_anything_is_sent(
    server: Scripted, headers: list[tuple[str, str]]
) -> None:
    async with client_for(server.url()) as client:
        with pytest.raises(ValueError):
            await client.post(b"{}", [*HEADERS, *headers], 5.0)
        assert client.open_connections == 0
    assert server.connections == 0 and server.requests == []


def test_the_request_head_is_built_from_the_url() -> None:
    head = Http1Client("http://Example.ORG/a b/é?q=1#frag", max_connections=1)._head
    assert head.startswith(b"POST /a%20b/%C3%A9?q=1 HTTP/1.1\r\nhost: example.org\r\n")
    head = Http1Client("https://[::1]:8443", max_connections=1)._head
    assert head.startswith(b"POST / HTTP/1.1\r\nhost: [::1]:8443\r\n") and head.endswith(b"\r\ncontent-length: ")
    for url in ("ftp://example.org/", "http:///path", "http://host:99999/"):
        with pytest.raises(ValueError):
            Http1Client(url, max_connections=1)
    with pytest.raises(ValueError):
        Http1Client("http://example.org/", max_connections=1, user_agent="salara\r\nx: 1")


async def test_user_and_password_in_the_url_are_sent_as_basic_auth(server: Scripted) -> None:
    async with client_for(server.url(userinfo="crm%40user:p%3Ass@")) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200
    (request,) = server.requests
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"crm@user:p:ss").decode()
    assert request.headers["host"] == f"127.0.0.1:{server.port}"


# -- salara's own API ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_salaras_own_api_is_never_connected_to(server: Scripted, host: str) -> None:
    own = HostPort("0.0.0.0", server.port)
    async with client_for(server.url(host=host), api_listen=own) as client:
        with pytest.raises(ConnectionRefusedError, match="salara's own API"):
            await client.post(b"{}", HEADERS, 5.0)
        assert client.open_connections == 0
    assert server.connections == 0
    async with client_for(server.url(host=host), api_listen=HostPort("127.0.0.1", server.port + 1)) as client:
        assert (await client.post(b"{}", HEADERS, 5.0)).status == 200


# -- TLS -----------------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for localhost and 127.0.0.1, and its key (openssl CLI)."""
    cert, key = tmp_path / "crm.crt", tmp_path / "crm.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_verifies_certificates_unless_turned_off_and_sends_the_host_as_sni(
    self_signed: tuple[Path, Path],
) -> None:
    names: list[str | None] = []
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*self_signed)
    tls.sni_callback = lambda _sock, name, _context: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    server = Scripted(tls=tls)
    await server.start()
    try:
        async with client_for(server.url(host="localhost")) as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.post(b"{}", HEADERS, 5.0)
            assert client.open_connections == 0
        async with client_for(server.url(host="localhost"), tls_verify=False) as client:
            assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, b'{"ok":true}', False)
            assert await client.post(b"{}", HEADERS, 5.0) == Answer(200, b'{"ok":true}', False)
        assert [request.connection for request in server.requests] == [0, 0]  # the refused handshake made none
        assert names == ["localhost", "localhost"]
    finally:
        await server.stop()
