"""The API's access control and limits, in process: the real app over ASGI, AMI faked.

The client address is what the ASGI server puts in ``scope["client"]`` (uvicorn
takes it from the socket). httpx's ASGI transport lets a test set it, which is
how a client beyond loopback is shown here without sending a packet anywhere;
the integration tests show the same through a real uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from salara import config
from salara.api.app import create_app
from salara.api.security import tokens as auth
from salara.control import CallControl

TOKEN = "unit-test-token-0123456789abcdefghijklmnopq"
STATE_ONLY = "unit-test-state-0123456789abcdefghijklmnopq"
ADMIN = "unit-test-admin-0123456789abcdefghijklmnopq"
REMOTE = ("203.0.113.5", 40000)
LOCAL = ("127.0.0.1", 40000)


class FakeResponse:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.ok = True
        self.message = ""
        self.events: tuple[Any, ...] = ()
        self.items: tuple[Any, ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)


class FakeAMI:
    """Records the actions the API would send; every extension is Idle."""

    def __init__(self) -> None:
        self.ready = True
        self.last_error: str | None = None
        self.actions: list[str] = []
        self.originated: list[list[tuple[str, object]]] = []
        """The fields of every Originate."""

    def add_event_listener(self, listener: object) -> None:
        """No events: the answers carry no hint, so no state is kept between requests."""

    def add_state_listener(self, listener: object) -> None:
        pass

    async def action(self, name: str, fields: object = None, check: bool = True) -> FakeResponse:
        self.actions.append(name)
        return FakeResponse({"Status": "0"})

    async def originate(self, fields: list[tuple[str, object]], timeout_s: float) -> tuple[str, asyncio.Future[Any]]:
        self.actions.append("Originate")
        self.originated.append(list(fields))
        return "1", asyncio.get_running_loop().create_future()


def section(name: str, token: str, **values: str) -> str:
    lines = [f"[token {name}]", f"hash = {auth.hash_token(token)}", *(f"{k} = {v}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


WITH_TOKENS = (
    "[general]\ndefault_context=phones\n[api]\nmax_body_bytes=2048\nrequest_timeout=0.3\nmax_fields=8\n"
    "max_field_bytes=100\nmax_json_depth=3\n"
    + section("crm", TOKEN, rights="call,message,state", destinations="^[0-9]{3,4}$", rate="3/60")
    + section("monitor", STATE_ONLY, rights="state")
    + section("ops", ADMIN, rights="admin")
)


def client_for(text: str, address: tuple[str, int] = LOCAL) -> tuple[httpx.AsyncClient, FakeAMI]:
    ami = FakeAMI()
    app = create_app(CallControl.over(ami, config.build(config.parse_text(text))))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app, client=address)
    return httpx.AsyncClient(transport=transport, base_url="http://salara"), ami


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_without_tokens_loopback_is_served_and_others_are_refused() -> None:
    local, ami = client_for("[general]\ndefault_context=phones\n")
    async with local:
        assert (await local.post("/", json={"exten": "9001"})).json() == {"result": 0, "text": "Idle"}
        assert (await local.post("/", json={"operator": "8001", "phone": "0044207"})).status_code == 200
    assert ami.actions == ["ExtensionState", "ExtensionState", "Originate"]
    remote, ami = client_for("[general]\ndefault_context=phones\n", REMOTE)
    async with remote:
        for method, path in (("POST", "/"), ("GET", "/any/path?exten=9001"), ("GET", "/ready")):
            response = await remote.request(method, path, json={"exten": "9001"} if method == "POST" else None)
            assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
        compat = await remote.post("/", json={"operator": "8001", "phone": "9002"})
        assert compat.json()["result"] == -2
        assert "loopback" in compat.json()["text"]
        assert (await remote.get("/v1/tracked-calls")).status_code == 403
        assert (await remote.get("/health")).status_code == 200
    assert ami.actions == []


async def test_the_opt_in_serves_remote_clients_without_a_token() -> None:
    remote, ami = client_for("[api]\nallow_remote_without_token=yes\n", REMOTE)
    async with remote:
        assert (await remote.post("/", json={"exten": "9001"})).status_code == 200
    assert ami.actions == ["ExtensionState"]


async def test_tokens_are_required_from_everyone_once_configured(caplog: pytest.LogCaptureFixture) -> None:
    local, ami = client_for(WITH_TOKENS)
    async with local:
        missing = await local.post("/", json={"exten": "9001"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["result"] == -2
        wrong = await local.post("/", json={"exten": "9001"}, headers=bearer(TOKEN[:-1] + "x"))
        assert wrong.status_code == 401
        assert (await local.get("/ready", headers={"x-api-key": "nope"})).json()["error"] == "unauthorized"
        assert ami.actions == []
        assert (await local.post("/", json={"exten": "9001"}, headers=bearer(TOKEN))).status_code == 200
        assert (await local.post("/", json={"exten": "9001"}, headers={"x-api-key": STATE_ONLY})).status_code == 200
        assert (await local.get("/ready", headers=bearer(STATE_ONLY))).status_code == 200
        assert (await local.get("/health")).status_code == 200
    assert TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text
    assert "API request refused (401)" in caplog.text


async def test_rights_are_checked_before_any_ami_action() -> None:
    local, ami = client_for(WITH_TOKENS)
    async with local:
        call = {"operator": "8001", "phone": "9002"}
        refused = await local.post("/", json=call, headers=bearer(STATE_ONLY))
        assert refused.status_code == 403
        assert "lacks the 'call' right" in refused.json()["text"]
        message = {"operator": "8001", "phone": "9002", "msg": "hi"}
        assert (await local.post("/", json=message, headers=bearer(STATE_ONLY))).status_code == 403
        assert (await local.post("/", json={"exten": "9001"}, headers=bearer(ADMIN))).status_code == 403
        international = await local.post("/", json={"operator": "8001", "phone": "0044207123"}, headers=bearer(TOKEN))
        assert international.status_code == 403
        assert "destinations" in international.json()["text"]
        context = await local.post("/", json={**call, "context": "from-trunk"}, headers=bearer(TOKEN))
        assert context.status_code == 403
        assert ami.actions == []
        assert (await local.get("/v1/tracked-calls", headers=bearer(TOKEN))).status_code == 403
        assert (await local.get("/v1/tracked-calls", headers=bearer(ADMIN))).status_code == 200
        assert (await local.delete("/v1/tracked-calls/x", headers=bearer(STATE_ONLY))).json()["error"] == "forbidden"
        assert ami.actions == []
        for _ in range(3):
            assert (await local.post("/", json=call, headers=bearer(TOKEN))).status_code == 200
        limited = await local.post("/", json=call, headers=bearer(TOKEN))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) == 20
    assert ami.actions.count("Originate") == 3


async def test_size_shape_and_time_limits() -> None:
    local, ami = client_for(WITH_TOKENS)
    headers = bearer(TOKEN)
    async with local:
        big = await local.post("/", content=b'{"exten": "' + b"9" * 3000 + b'"}', headers=headers)
        assert big.status_code == 413
        assert big.headers["connection"] == "close"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 500

        assert (await local.post("/", content=chunks(), headers=headers)).status_code == 413

        async def trickle() -> AsyncIterator[bytes]:
            yield b'{"exten":'
            await asyncio.sleep(1)
            yield b'"9001"}'

        slow = await local.post("/", content=trickle(), headers=headers)
        assert slow.status_code == 408
        assert slow.json()["result"] == -2
        deep = await local.post("/", content=b'{"exten": "9001", "x": [[[[1]]]]}', headers=headers)
        assert deep.status_code == 400 and "nested" in deep.json()["text"]
        abyss = await local.post("/", content=b"[" * 2000, headers=headers)
        assert abyss.status_code == 400
        many = await local.post("/", json={f"k{i}": i for i in range(9)}, headers=headers)
        assert many.status_code == 400 and "fields" in many.json()["text"]
        query = await local.get("/?" + "&".join(f"k{i}=1" for i in range(9)), headers=headers)
        assert query.status_code == 400
        form = await local.post("/", data={f"k{i}": "1" for i in range(9)}, headers=headers)
        assert form.status_code == 400
        long = await local.post("/", json={"exten": "9001", "note": "x" * 101}, headers=headers)
        assert long.status_code == 400 and "longer than 100 bytes" in long.json()["text"]
        v1 = await local.post("/v1/anything", content=b"x" * 3000, headers=headers)
        assert v1.status_code == 413 and v1.json()["error"] == "payload_too_large"
        assert (await local.post("/", json={"exten": "9001"}, headers=headers)).status_code == 200
    assert ami.actions == ["ExtensionState"]


# -- connections per client --------------------------------------------------------


def test_connections_are_capped_per_client_address() -> None:
    from salara.api.security.clientcap import ClientConnections

    clients = ClientConnections(cap=3)
    assert [clients.opened("127.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert clients.count("127.0.0.1") == 3 and clients.refused == 1
    assert clients.opened("192.0.2.7")  # another client is not affected
    assert clients.opened("::ffff:127.0.0.1") is False  # v4-mapped: the same client
    clients.closed("127.0.0.1")
    assert clients.opened("127.0.0.1")
    for _ in range(3):
        clients.closed("127.0.0.1")
    assert clients.count("127.0.0.1") == 0 and "127.0.0.1" not in clients.open_by_client


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    from salara.api.security.clientcap import ClientConnections, client_key

    assert client_key("2001:db8:1:2::1") == client_key("[2001:db8:1:2:ffff::9]") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    clients = ClientConnections(cap=2)
    assert [clients.opened(f"2001:db8:1:2::{n}") for n in range(1, 4)] == [True, True, False]
    assert clients.opened("2001:db8:1:3::1")


def test_a_cap_of_zero_counts_but_never_refuses() -> None:
    from salara.api.security.clientcap import ClientConnections

    clients = ClientConnections(cap=0)
    assert all(clients.opened("127.0.0.1") for _ in range(1000))


def test_refusals_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    from salara.api.security.clientcap import ClientConnections

    clients = ClientConnections(cap=1, log_interval_s=10)
    with caplog.at_level("WARNING", logger="salara.api.security.clientcap"):
        for now in (0.0, 1.0, 2.0, 11.0):
            clients.log_refusal("203.0.113.5", now)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "(1 refused so)" in lines[0] and "(3 refused so)" in lines[1]


class FakeTransport:
    """Just enough of an asyncio transport for uvicorn's protocol: a peer address, writes, close."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = b""
        self.closed = self.aborted = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 5058)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def test_the_uvicorn_protocol_closes_a_connection_over_the_per_client_cap() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    from salara.api.security.serving import uvicorn_options

    loaded = config.load(None, environ={"SALARA_API_MAX_CONNECTIONS_PER_CLIENT": "2"})
    options = uvicorn_options(loaded)
    protocol_class = options.pop("http")
    server = uvicorn.Config(create_app(CallControl.over(FakeAMI(), loaded)), http=protocol_class, **options)  # type: ignore[arg-type]
    state = ServerState()

    def connect(peer: tuple[str, int]) -> tuple[Any, FakeTransport]:
        protocol = protocol_class(config=server, server_state=state, app_state={})
        transport = FakeTransport(peer)
        protocol.connection_made(transport)
        return protocol, transport

    held = [connect(("127.0.0.1", 40000 + n)) for n in range(2)]
    assert not any(transport.closed for _, transport in held)
    _, extra = connect(("127.0.0.1", 40009))
    assert extra.closed and extra.written.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 5" in extra.written and b"too many open connections" in extra.written
    other, elsewhere = connect(("127.0.0.2", 40000))  # another address is still taken in
    assert not elsewhere.closed
    held[0][0].connection_lost(None)  # one closes: its slot is free again
    latest, again = connect(("127.0.0.1", 40010))
    assert not again.closed
    for protocol in (held[1][0], other, latest):
        protocol.connection_lost(None)


async def test_the_uvicorn_protocol_offers_requests_a_way_to_abort_their_connection() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    from salara.api.security.connections import ABORT_EXTENSION
    from salara.api.security.serving import uvicorn_options

    loaded = config.load(None, environ={})
    options = uvicorn_options(loaded)
    protocol_class = options.pop("http")
    server = uvicorn.Config(create_app(CallControl.over(FakeAMI(), loaded)), http=protocol_class, **options)  # type: ignore[arg-type]
    protocol = protocol_class(config=server, server_state=ServerState(), app_state={})
    transport = FakeTransport(("127.0.0.1", 40000))
    protocol.connection_made(transport)
    protocol.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    abort = protocol.scope["extensions"][ABORT_EXTENSION]["abort"]
    abort()
    assert transport.aborted
    protocol.connection_lost(None)
