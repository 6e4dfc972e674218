"""Compat answers written by salara's protocol itself (salara.api.compat.quick): which, and with the usual bytes.

salara's uvicorn protocol is driven over fake transports (as in
test_api_security.py), the app behind it real and AMI faked: its states
are never known at once, so what is answered at once here is what needs
no state (refusals); a real salara answers polls of followed hints so in
tests/integration/test_compat_api.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from salara import config
from salara.api.app import create_app
from salara.api.security.connections import HOLD_S
from salara.api.security.serving import uvicorn_options
from salara.control import CallControl
from tests.unit.test_api_security import TOKEN, FakeAMI, FakeTransport, section

CONF = "[api]\nmax_body_bytes=2048\n" + section("crm", TOKEN, rights="call,message,state")
POLL = b'{"exten":"9001"}'


def post(body: bytes = POLL, token: str | None = None, extra: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth + extra
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Server:
    """salara's protocol class over one server state, with or without the quick lane."""

    def __init__(self, tmp_path: Any, *, quick: bool = True, **environ: str) -> None:
        import uvicorn
        from uvicorn.server import ServerState

        path = tmp_path / "salara.conf"
        path.write_text(CONF)
        path.chmod(0o600)
        self.loaded = config.load(path, environ=environ)
        self.ami = FakeAMI()
        app = create_app(CallControl.over(self.ami, self.loaded))  # type: ignore[arg-type]
        options = uvicorn_options(self.loaded, app.quick_lane if quick else None)
        self.protocol_class = options.pop("http")
        self.config = uvicorn.Config(app, http=self.protocol_class, access_log=False, **options)  # as salara runs it
        self.state = ServerState()
        self.opened: list[Any] = []

    def connect(self) -> tuple[Any, FakeTransport]:
        protocol = self.protocol_class(config=self.config, server_state=self.state, app_state={})
        transport = FakeTransport(("127.0.0.1", 40000 + len(self.opened)))
        protocol.connection_made(transport)
        self.opened.append(protocol)
        return protocol, transport

    async def answered(self, *reads: bytes, apart_s: float = 0.0) -> tuple[bytes, bytes]:
        """(what was written without running the ASGI app, everything written), ``reads`` on one new connection.

        The reads arrive ``apart_s`` seconds apart.
        """
        protocol, transport = self.connect()
        runs = RUNS[0]
        for number, data in enumerate(reads):
            if number and apart_s:
                await asyncio.sleep(apart_s)
            protocol.data_received(data)
        for _ in range(20):
            await asyncio.sleep(0.01)
        return (transport.written if RUNS[0] == runs else b""), transport.written

    async def warm(self) -> None:
        """One request the usual way: the app builds its compat stack (and the lane's answerer) at the first."""
        await self.answered(post(token=TOKEN))

    async def close(self) -> None:
        for protocol in self.opened:
            protocol.connection_lost(None)
        await asyncio.sleep(0.02)


RUNS = [0]
"""Requests the ASGI app was run for (uvicorn's request cycles' ``run_asgi``), counted by :func:`counted`."""


@pytest.fixture(autouse=True)
def counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    run_asgi = RequestResponseCycle.run_asgi

    async def run(self: Any, app: Any) -> None:
        RUNS[0] += 1
        await run_asgi(self, app)

    monkeypatch.setattr(RequestResponseCycle, "run_asgi", run)


def undated(answer: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"", answer)


async def usual(tmp_path: Any, *reads: bytes) -> bytes:
    server = Server(tmp_path, quick=False)
    try:
        await server.warm()
        return (await server.answered(*reads))[1]
    finally:
        await server.close()


async def test_a_refusal_is_written_without_the_asgi_app_with_the_usual_bytes(tmp_path: Any) -> None:
    server = Server(tmp_path)
    try:
        await server.warm()
        before = len(server.ami.actions)
        at_once, written = await server.answered(post())  # no token
        assert at_once.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert written == at_once  # nothing more came
        assert b'www-authenticate: Bearer realm="salara"\r\n' in at_once
        assert undated(at_once) == undated(await usual(tmp_path, post()))
        assert len(server.ami.actions) == before
    finally:
        await server.close()


async def test_a_malformed_request_is_refused_at_once_as_the_usual_way_refuses_it(tmp_path: Any) -> None:
    server = Server(tmp_path)
    try:
        await server.warm()
        before = len(server.ami.actions)
        for body in (b'{"exten": ', b'{"exten":"9001\\r\\nAction: Originate"}', b"[1]"):
            at_once, _ = await server.answered(post(body, TOKEN))
            assert at_once.startswith(b"HTTP/1.1 400 Bad Request\r\n"), body
            assert undated(at_once) == undated(await usual(tmp_path, post(body, TOKEN))), body
            assert json.loads(at_once.split(b"\r\n\r\n", 1)[1])["result"] == -2
        assert len(server.ami.actions) == before
    finally:
        await server.close()


async def test_two_requests_in_one_read_are_answered_in_order(tmp_path: Any) -> None:
    server = Server(tmp_path)
    try:
        await server.warm()
        _, written = await server.answered(post() + post(b"{", TOKEN))  # the second waits behind the first
        assert re.findall(rb"HTTP/1.1 (\d+) ", written) == [b"401", b"400"]
        assert written.index(b"token is required") < written.index(b"invalid JSON")
    finally:
        await server.close()


async def test_a_request_whose_state_needs_asterisk_goes_the_usual_way(tmp_path: Any) -> None:
    server = Server(tmp_path)
    try:
        await server.warm()
        before = len(server.ami.actions)
        at_once, written = await server.answered(post(token=TOKEN))
        assert at_once == b""  # the fake AMI keeps no hint: ExtensionState is asked
        assert written.startswith(b"HTTP/1.1 200 OK\r\n")
        assert server.ami.actions[before:] == ["ExtensionState"]
    finally:
        await server.close()


async def test_a_late_body_and_a_relayed_request_go_the_usual_way(tmp_path: Any) -> None:
    server = Server(tmp_path)
    try:
        await server.warm()
        whole = post()
        at_once, _ = await server.answered(whole[:-4], whole[-4:])  # the body in a read of its own, at once
        assert at_once.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        at_once, written = await server.answered(whole[:-4], whole[-4:], apart_s=HOLD_S + 0.05)
        assert at_once == b""
        assert written.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        relayed = post(extra=b"X-Forwarded-For: 203.0.113.9\r\n")
        at_once, written = await server.answered(relayed)
        assert at_once == b""
        assert written.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    finally:
        await server.close()


async def test_the_old_module_s_error_body_is_kept_at_once(tmp_path: Any) -> None:
    server = Server(tmp_path, SALARA_GENERAL_ANSWERS="module")
    try:
        await server.warm()
        at_once, _ = await server.answered(post())
        assert at_once.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert at_once.endswith(b'\r\n\r\n{"result":-2,"text":"Error"}')
    finally:
        await server.close()


async def test_nothing_read_after_an_answer_that_closes_its_connection_is_run(tmp_path: Any) -> None:
    # HTTP/1.0 with keep-alive asked: uvicorn closes after the answer, the parser reads on. What it reads
    # after the answer must not be run (a call made, its answer lost: a client that retries calls twice).
    server = Server(tmp_path)
    try:
        await server.warm()
        asked = len(server.ami.actions)
        refused = post(extra=b"Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0", 1)  # 401 at once
        _, written = await server.answered(refused + post(b'{"exten":"9002"}', token=TOKEN))
        assert re.findall(rb"HTTP/1.1 (\d+) ", written) == [b"401"]
        assert server.ami.actions[asked:] == []
    finally:
        await server.close()
