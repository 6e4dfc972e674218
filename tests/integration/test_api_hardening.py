"""The API's edges on a real salara and the real test Asterisk: what each right opens, big bodies, proxies."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest

from salara.api.security import tokens as auth
from testpbx import pbx
from tests.amiwatch import EventWatch
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess, free_port


def token_section(name: str, token: str, **values: str) -> str:
    lines = [f"[token {name}]", f"hash = {auth.hash_token(token)}", *(f"{k} = {v}" for k, v in values.items())]
    return "\n" + "\n".join(lines) + "\n"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Tokens:
    """monitor (state), caller (call only, any number in phones)."""

    def __init__(self) -> None:
        self.monitor = auth.new_token()
        self.caller = auth.new_token()

    def config(self, extra: str = "") -> str:
        return (
            EXAMPLE_CONFIG.read_text()
            + extra
            + token_section("monitor", self.monitor, rights="state")
            + token_section("caller", self.caller, rights="call", contexts="phones", destinations="any")
        )


def start(salara_factory: SalaraFactory, tokens: Tokens, extra: str = "", **env: str) -> SalaraProcess:
    salara = salara_factory(tokens.config(extra), start=False, **env)
    salara.headers = bearer(tokens.monitor)
    salara.secrets |= {tokens.monitor, tokens.caller}
    salara.start()
    return salara


# -- 7: what needs a token needs a right ----------------------------------------------------


def test_ready_details_and_the_api_description_need_the_state_right(salara_factory: SalaraFactory) -> None:
    tokens = Tokens()
    salara = start(salara_factory, tokens)
    plain = httpx.get(salara.url + "/ready", headers=bearer(tokens.caller))
    assert plain.status_code == 200 and plain.json() == {"status": "ready"}
    detailed = httpx.get(salara.url + "/ready", headers=bearer(tokens.monitor)).json()
    assert detailed["status"] == "ready"
    assert detailed["ami"] == {"host": "127.0.0.1", "port": 5038, "last_error": None}
    assert detailed["outbox"] == {"recovered_from": None}  # the store opened its file as it was
    for path in ("/docs", "/redoc", "/openapi.json"):
        refused = httpx.get(salara.url + path, headers=bearer(tokens.caller))
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden", path
        assert httpx.get(salara.url + path, headers=bearer(tokens.monitor)).status_code == 200, path
        assert httpx.get(salara.url + path).status_code == 401, path
    assert httpx.get(salara.url + "/health").json() == {"status": "ok"}


def test_ready_tells_the_state_right_where_a_damaged_outbox_went(salara_factory: SalaraFactory) -> None:
    tokens = Tokens()
    salara = salara_factory(tokens.config(), start=False)
    salara.headers = bearer(tokens.monitor)
    salara.secrets |= {tokens.monitor, tokens.caller}
    (salara.workdir / "outbox.db").write_bytes(b"\x00 not a database \xff" * 100)
    salara.start()
    aside = [p for p in salara.workdir.iterdir() if p.name.startswith("outbox.db.corrupt-")]
    assert len(aside) == 1
    detailed = httpx.get(salara.url + "/ready", headers=bearer(tokens.monitor))
    assert detailed.status_code == 200 and detailed.json()["outbox"] == {"recovered_from": str(aside[0])}
    assert httpx.get(salara.url + "/ready", headers=bearer(tokens.caller)).json() == {"status": "ready"}


# -- 8: a readable 413 -------------------------------------------------------------------------


def recv_all(sock: socket.socket, timeout_s: float) -> bytes:
    """What the server sent until it closed (or ``timeout_s`` of silence); a reset ends it too."""
    sock.settimeout(timeout_s)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


BIG = 5 * 1024 * 1024


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/", "/v1/calls"])
def test_a_big_body_sent_at_once_reads_its_413(salara_factory: SalaraFactory, framing: str, path: str) -> None:
    # No Expect: 100-continue: the whole body is on its way before any answer can be read.
    salara = salara_factory()
    body = b'{"exten":"' + b"9" * BIG + b'"}'
    if framing == "chunked":
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:65536], body[65536:])) + b"0\r\n\r\n"
        head = b"Transfer-Encoding: chunked\r\n"
    else:
        framed, head = body, b"Content-Length: %d\r\n" % len(body)
    request = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head + b"\r\n"
    with socket.create_connection(("127.0.0.1", salara.port)) as sock:
        sock.sendall(request + framed)  # as most clients do: the whole request, then read (no reset meanwhile)
        answer = recv_all(sock, 10)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert (b'"result":-2' if path == "/" else b'"payload_too_large"') in answer
    assert salara.post({"exten": "9001"}).status_code == 200


def test_the_rest_of_a_refused_body_is_drained_for_a_bounded_time_only(salara_factory: SalaraFactory) -> None:
    salara = salara_factory()
    sock = socket.create_connection(("127.0.0.1", salara.port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
    cut: list[float] = []

    def keep_sending() -> None:  # a client that never stops: 1 MB every 0.05 s, until salara cuts it
        try:
            while time.monotonic() - started < 20:
                sock.sendall(b"9" * 1_000_000)
                time.sleep(0.05)
        except OSError:
            cut.append(time.monotonic() - started)

    started = time.monotonic()
    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        answer = recv_all(sock, 15)  # the answer, then the end of salara's side of the stream
        sender.join(20)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert cut and cut[0] < 7, cut  # drained for a bounded time and size, whatever the client does
    assert salara.post({"exten": "9001"}).status_code == 200


# -- 12: the old module's answers as its code gave them ----------------------------------------

MODULE_ERROR = b'{"result":-2,"text":"Error"}'


def live_local_channel(ami_events: EventWatch) -> str:
    reply = pbx.ami_command(
        "Action: Originate", "Channel: Local/9999@sim", "Application: Wait", "Data: 30", "Async: true"
    )
    assert "Success" in reply
    up = ami_events.wait_for(
        lambda e: (
            e.get("Event") == "Newstate"
            and e.get("Channel", "").startswith("Local/9999@sim-")
            and e.get("ChannelStateDesc") == "Up"
        )
    )
    return str(up["Channel"])


def test_answers_module_sends_the_module_s_channel_states_and_errors(
    salara_factory: SalaraFactory, ami_events: EventWatch
) -> None:
    salara = salara_factory(SALARA_GENERAL_ANSWERS="module")
    channel = live_local_channel(ami_events)
    try:
        up = salara.post({"chan": channel})
        assert (up.status_code, up.content) == (200, b'{"result":6,"text":"UP"}')
    finally:
        pbx.hangup_all()
    gone = salara.post({"chan": channel})
    assert (gone.status_code, gone.content) == (200, b'{"result":-1,"text":"Channel not present"}')
    assert salara.post({"peer": "nosuchpeer"}).content == b'{"result":-1,"text":"Error"}'
    for answer, status in (
        (httpx.post(salara.url + "/", json={"foo": "bar"}), 400),
        (httpx.post(salara.url + "/", json={"exten": "9001\r\nAction: Originate"}), 400),
        (httpx.get(salara.url + "/?exten=9001%0D%0A"), 400),
        (httpx.put(salara.url + "/", json={"exten": "9001"}), 405),
        (httpx.post(salara.url + "/", content=b"9" * 100_000), 413),
        (httpx.post(salara.url + "/", json={"exten": "9001"}, headers={"x-forwarded-for": "203.0.113.9"}), 403),
    ):
        assert (answer.status_code, answer.content) == (status, MODULE_ERROR), answer.request


def test_answers_readme_keeps_the_documented_channel_state(
    salara_factory: SalaraFactory, ami_events: EventWatch
) -> None:
    salara = salara_factory()
    channel = live_local_channel(ami_events)
    try:
        assert salara.post({"chan": channel}).json() == {"result": 0, "text": "Up (6)"}
    finally:
        pbx.hangup_all()
    assert salara.post({"foo": "bar"}).json()["text"].startswith("Error: unknown request")


def test_answers_module_while_ami_is_down(salara_factory: SalaraFactory) -> None:
    salara = salara_factory(start=False, SALARA_AMI_PORT=str(free_port()), SALARA_GENERAL_ANSWERS="module")
    salara.start(wait_ready=False)
    answer = salara.post({"exten": "9001"})
    assert (answer.status_code, answer.content) == (503, MODULE_ERROR)


# -- 13: behind a reverse proxy ------------------------------------------------------------------


def read_answer(sock: socket.socket, timeout_s: float) -> bytes:
    """The status line and headers of one answer on a kept-alive connection (b"" if none came in time)."""
    sock.settimeout(timeout_s)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def relayed(token: str, client: str, method: str = "GET /ready", extra: str = "") -> bytes:
    return (
        f"{method} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Forwarded-For: {client}\r\n{extra}\r\n"
    ).encode()


def test_a_reverse_proxy_is_not_one_client_its_clients_are(salara_factory: SalaraFactory) -> None:
    tokens = Tokens()
    salara = start(salara_factory, tokens, SALARA_API_MAX_CONNECTIONS_PER_CLIENT="4", SALARA_API_REQUEST_TIMEOUT="30")
    relay = {**bearer(tokens.monitor), "x-forwarded-for": "203.0.113.1"}
    assert httpx.get(salara.url + "/ready", headers=relay).status_code == 200  # the proxy on loopback relays
    opened: list[socket.socket] = []
    try:
        for n in range(10):  # a busy proxy: more connections than one client may hold, all kept alive
            sock = socket.create_connection(("127.0.0.1", salara.port))
            opened.append(sock)
            sock.sendall(relayed(tokens.monitor, f"203.0.113.{10 + n}"))
            assert read_answer(sock, 5).startswith(b"HTTP/1.1 200 "), n
        # One client behind the proxy is capped by its X-Forwarded-For: 4 requests in progress at most.
        waiting = []
        for _ in range(6):
            sock = socket.create_connection(("127.0.0.1", salara.port))
            opened.append(sock)
            sock.sendall(relayed(tokens.monitor, "198.51.100.7", "POST /", "Content-Length: 20\r\n"))
            waiting.append(sock)
        answers = [read_answer(sock, 1) for sock in waiting]
        assert answers[:4] == [b""] * 4  # waiting for their bodies
        assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers[4:]), answers[4:]
        assert all(b"retry-after: 5" in answer for answer in answers[4:])
        other = socket.create_connection(("127.0.0.1", salara.port))
        opened.append(other)
        other.sendall(relayed(tokens.monitor, "198.51.100.8"))
        assert read_answer(other, 5).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in opened:
            sock.close()
    time.sleep(0.3)
    again = {**bearer(tokens.monitor), "x-forwarded-for": "198.51.100.7"}
    assert httpx.get(salara.url + "/ready", headers=again).status_code == 200
    assert "more than 4 open connections from 198.51.100.7" in salara.log()


def test_trusted_proxies_is_whose_x_forwarded_for_counts(salara_factory: SalaraFactory) -> None:
    salara = salara_factory(SALARA_API_TRUSTED_PROXIES="")
    relayed_for = {"x-forwarded-for": "203.0.113.9"}
    # Nobody's header is trusted: the request is loopback's (by default it would be 203.0.113.9's: 403).
    assert httpx.get(salara.url + "/ready", headers=relayed_for).json()["status"] == "ready"
    assert salara.post({"exten": "9001"}).status_code == 200
