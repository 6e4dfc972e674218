"""Who may place calls, checked on a real salara and the real test Asterisk (issue: security).

Every test that expects a refusal also checks, through :class:`AMIRecorder`,
that salara sent no AMI action for it (Ping, its keepalive, aside).

A client beyond loopback is shown through uvicorn's trusted-proxy handling: a
request from loopback with ``X-Forwarded-For: 203.0.113.9`` is, to salara, the
request of 203.0.113.9 relayed by a reverse proxy on the same machine (uvicorn
trusts that header from loopback only, and salara pins that trust). Servers in
tests listen on 127.0.0.1 only, so no test binds another address; what decides
"loopback or not" is unit-tested in tests/unit/test_auth.py.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from salara.api.security import tokens as auth
from tests.amiwatch import AMIRecorder
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess, free_port

CALL_RIGHTS = "call,message,state"


def token_section(name: str, token: str, **values: str) -> str:
    lines = [f"[token {name}]", f"hash = {auth.hash_token(token)}", *(f"{k} = {v}" for k, v in values.items())]
    return "\n" + "\n".join(lines) + "\n"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def new_actions(recorder: AMIRecorder, before: int) -> list[str]:
    """AMI actions salara sent since ``before`` (an index into ``recorder.actions()``), Ping aside."""
    return [action for action in recorder.actions()[before:] if action != "Ping"]


class Tokens:
    """Fresh tokens for one test: crm (calls to 3-4 digit numbers, in phones), monitor (state), ops (admin)."""

    def __init__(self) -> None:
        self.crm = auth.new_token()
        self.monitor = auth.new_token()
        self.ops = auth.new_token()

    def config(self, crm_rate: str = "50/60") -> str:
        return (
            EXAMPLE_CONFIG.read_text()
            + token_section(
                "crm", self.crm, rights=CALL_RIGHTS, contexts="phones", destinations="^[0-9]{3,4}$", rate=crm_rate
            )
            + token_section("monitor", self.monitor, rights="state")
            + token_section("ops", self.ops, rights="admin,state")
        )

    def all(self) -> set[str]:
        return {self.crm, self.monitor, self.ops}


def start_secured(
    salara_factory: SalaraFactory, recorder: AMIRecorder, tokens: Tokens, crm_rate: str = "50/60", **env: str
) -> SalaraProcess:
    salara = salara_factory(tokens.config(crm_rate), start=False, SALARA_AMI_PORT=str(recorder.port), **env)
    salara.headers = bearer(tokens.monitor)
    salara.secrets |= tokens.all()
    salara.start()
    return salara


# -- authentication -----------------------------------------------------------------


def test_without_tokens_a_client_beyond_loopback_is_refused(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    relayed = {"x-forwarded-for": "203.0.113.9"}
    before = len(ami_recorder.actions())
    for request in (
        {"operator": "8001", "phone": "9002"},
        {"operator": "8001", "phone": "9002", "msg": "hi"},
        {"exten": "9001"},
        {"peer": "8001"},
    ):
        response = httpx.post(salara.url + "/", json=request, headers=relayed)
        assert response.status_code == 403
        assert response.json()["result"] == -2
        assert "loopback" in response.json()["text"]
    assert httpx.get(salara.url + "/?exten=9001", headers=relayed).status_code == 403
    assert httpx.get(salara.url + "/ready", headers=relayed).json()["error"] == "forbidden"
    assert httpx.get(salara.url + "/health", headers=relayed).status_code == 200
    assert new_actions(ami_recorder, before) == []
    assert "API request refused (403)" in salara.log() and "203.0.113.9" in salara.log()
    # The same request straight from loopback is served, as the old module did.
    assert salara.post({"exten": "9001"}).status_code == 200
    assert new_actions(ami_recorder, before) == ["ExtensionState"]


def test_wrong_or_missing_token_is_401_and_reaches_no_ami(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens)
    wrong = auth.new_token()
    salara.secrets.add(wrong)
    before = len(ami_recorder.actions())
    call = {"operator": "8001", "phone": "9002"}
    for headers in ({}, bearer(wrong), {"x-api-key": wrong}, {"authorization": f"Basic {tokens.crm}"}):
        response = httpx.post(salara.url + "/", json=call, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["result"] == -2
        assert httpx.get(salara.url + "/any/path?exten=9001", headers=headers).status_code == 401
    assert httpx.get(salara.url + "/ready").status_code == 401
    assert httpx.get(salara.url + "/v1/tracked-calls").json()["error"] == "unauthorized"
    assert new_actions(ami_recorder, before) == []
    assert "API request refused (401)" in salara.log()
    # A right token, as a header of either kind, gets through.
    assert httpx.post(salara.url + "/", json={"exten": "9001"}, headers={"x-api-key": tokens.crm}).status_code == 200


def test_a_token_without_the_right_is_403_and_reaches_no_ami(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens)
    before = len(ami_recorder.actions())
    for token, request in (
        (tokens.monitor, {"operator": "8001", "phone": "9002"}),
        (tokens.monitor, {"operator": "8001", "phone": "9002", "msg": "hi"}),
        (tokens.ops, {"operator": "8001", "phone": "9002"}),
    ):
        response = httpx.post(salara.url + "/", json=request, headers=bearer(token))
        assert response.status_code == 403
        assert "right" in response.json()["text"]
    assert httpx.get(salara.url + "/v1/tracked-calls", headers=bearer(tokens.crm)).status_code == 403
    assert new_actions(ami_recorder, before) == []
    assert httpx.get(salara.url + "/v1/tracked-calls", headers=bearer(tokens.ops)).status_code == 200
    assert "lacks the 'call' right" in salara.log()


def test_destinations_outside_the_allow_list_are_refused_before_ami(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens)
    before = len(ami_recorder.actions())
    for phone in ("0044207946000", "+442079460000", "810442079460000", "90012"):
        response = httpx.post(salara.url + "/", json={"operator": "8001", "phone": phone}, headers=bearer(tokens.crm))
        assert response.status_code == 403, phone
        assert "destinations" in response.json()["text"]
    other_context = {"operator": "8001", "phone": "9002", "context": "sim"}
    assert httpx.post(salara.url + "/", json=other_context, headers=bearer(tokens.crm)).status_code == 403
    # Not even the operator's ExtensionState was asked for.
    assert new_actions(ami_recorder, before) == []
    # An allowed number goes on to AMI (8002 never registers: Unavailable, so no call is placed).
    allowed = httpx.post(salara.url + "/", json={"operator": "8002", "phone": "9002"}, headers=bearer(tokens.crm))
    assert allowed.json() == {"result": 4, "text": "Unavailable"}
    assert new_actions(ami_recorder, before) == ["ExtensionState"]


def test_v1_call_variables_cannot_reach_asterisks_own(salara_factory: SalaraFactory, ami_recorder: AMIRecorder) -> None:
    # The review's toll fraud: the called party gets the transfer key (#) into a context the token may not use.
    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens)
    before = len(ami_recorder.actions())
    call = {"from": "8001", "to": "9001", "context": "phones"}
    for variables in (
        {"BRIDGE_FEATURES": "t", "__TRANSFER_CONTEXT": "sim"},
        {"BRIDGE_FEATURES": "t", "TRANSFER_CONTEXT": "sim"},
        {"_CRM_ID": "1"},
        {"CRM_ID": "1", "DYNAMIC_FEATURES": "blindxfer"},
    ):
        response = httpx.post(
            f"{salara.url}/v1/calls", json={**call, "variables": variables}, headers=bearer(tokens.crm)
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_failed"
    # Nothing reached Asterisk (the resync after login may be recorded late: not a request's).
    assert [a for a in new_actions(ami_recorder, before) if a != "CoreShowChannels"] == []


def test_calls_and_messages_are_rate_limited_per_token(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens, crm_rate="2/60")
    call = {"operator": "8002", "phone": "9002"}  # 8002 is Unavailable: nothing rings
    headers = bearer(tokens.crm)
    assert httpx.post(salara.url + "/", json=call, headers=headers).status_code == 200
    assert httpx.post(salara.url + "/", json={**call, "msg": "x"}, headers=headers).status_code == 200
    before = len(ami_recorder.actions())
    limited = httpx.post(salara.url + "/", json=call, headers=headers)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    assert new_actions(ami_recorder, before) == []
    # State queries are not counted.
    assert httpx.post(salara.url + "/", json={"exten": "9001"}, headers=headers).status_code == 200


# -- hard limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"exten": "9001\\r"}',
        b'{"exten": "9001\\n"}',
        b'{"exten": "9001\\u0000"}',
        b'{"operator": "8001", "phone": "9002", "msg": "a\\r\\nAction: Originate"}',
        b'{"operator": "8001", "phone": "9002", "context": "phones\\u0000"}',
        b'{"exten": "' + b"9" * 81 + b'"}',
        b'{"peer": "' + b"8" * 200 + b'"}',
        b'{"operator": "8001", "phone": "9002", "msg": "' + b"m" * 1000 + b'"}',
        b'{"exten": "9001", "pad": "' + b"x" * 70_000 + b'"}',
        b'{"exten": "9001", "x": ' + b"[" * 50 + b"]" * 50 + b"}",
        b"[" * 60_000,
        b"{" + b",".join(b'"k%d": 1' % i for i in range(40)) + b"}",
        b"exten=9001%0D%0AAction%3A%20Originate",
        b"exten=9001%00",
    ],
    ids=[
        "CR",
        "LF",
        "NUL",
        "CRLF-in-msg",
        "NUL-in-context",
        "long-exten",
        "long-peer",
        "long-msg",
        "oversized",
        "deep",
        "abyss",
        "many-fields",
        "form-CRLF",
        "form-NUL",
    ],
)
def test_bad_values_are_refused_with_4xx(salara_factory: SalaraFactory, ami_recorder: AMIRecorder, body: bytes) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port))
    before = len(ami_recorder.actions())
    content_type = "application/json" if body[:1] in (b"{", b"[") else "application/x-www-form-urlencoded"
    response = httpx.post(salara.url + "/", content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500
    assert response.json()["result"] == -2
    assert new_actions(ami_recorder, before) == []
    assert salara.post({"exten": "9001"}).status_code == 200


def _recv_all(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_slow_clients_are_cut_while_others_are_served(salara_factory: SalaraFactory, ami_recorder: AMIRecorder) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port), SALARA_API_REQUEST_TIMEOUT="2")
    port = salara.port
    silent = socket.create_connection(("127.0.0.1", port))  # connects, says nothing
    trickle_headers = socket.create_connection(("127.0.0.1", port))
    trickle_headers.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    trickle_body = socket.create_connection(("127.0.0.1", port))
    trickle_body.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{"exten":')
    big_headers = socket.create_connection(("127.0.0.1", port))
    big_headers.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 40_000 + b"\r\n")
    started = time.monotonic()
    stop = threading.Event()

    def keep_trickling() -> None:  # one header byte every 0.3 s: never complete
        while not stop.wait(0.3):
            with contextlib.suppress(OSError):
                trickle_headers.sendall(b"X")

    threading.Thread(target=keep_trickling, daemon=True).start()
    try:
        # Meanwhile others are served at once.
        for _ in range(5):
            t0 = time.monotonic()
            assert salara.post({"exten": "9001"}).status_code == 200
            assert time.monotonic() - t0 < 3  # at once, not after request_timeout (10 s)
        assert _recv_all(big_headers, 5).startswith(b"HTTP/1.1 431 ")
        assert _recv_all(trickle_body, 5).startswith(b"HTTP/1.1 408 ")
        assert _recv_all(trickle_headers, 5).startswith(b"HTTP/1.1 408 ")
        assert _recv_all(silent, 5).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 6
    finally:
        stop.set()
        for sock in (silent, trickle_headers, trickle_body, big_headers):
            sock.close()
    assert salara.post({"exten": "9001"}).status_code == 200
    assert "request headers did not arrive within 2 s" in salara.log()


def test_connections_beyond_the_limit_get_503_until_others_close(salara_factory: SalaraFactory) -> None:
    salara = salara_factory(SALARA_API_MAX_CONNECTIONS="4", SALARA_API_REQUEST_TIMEOUT="30")
    held = [socket.create_connection(("127.0.0.1", salara.port)) for _ in range(4)]
    time.sleep(0.2)
    try:
        over = httpx.post(salara.url + "/", json={"exten": "9001"})
        assert over.status_code == 503  # uvicorn's own answer to an overload
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert salara.post({"exten": "9001"}).status_code == 200


def from_address(source: str, port: int) -> socket.socket:
    """A connection to salara (on 127.0.0.1) from the loopback address ``source`` (127.0.0.0/8 is all local)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_one_client_cannot_take_every_connection(salara_factory: SalaraFactory) -> None:
    # The attack: connections that each send a byte and wait, more than [api] max_connections.
    salara = salara_factory(
        SALARA_API_MAX_CONNECTIONS="8", SALARA_API_MAX_CONNECTIONS_PER_CLIENT="4", SALARA_API_REQUEST_TIMEOUT="30"
    )
    port = salara.port
    flood = []
    for _ in range(12):
        sock = from_address("127.0.0.1", port)
        with contextlib.suppress(OSError):
            sock.sendall(b"G")
        flood.append(sock)
    try:
        time.sleep(0.3)
        refused = [sock for sock in flood if _recv_all(sock, 0.2).startswith(b"HTTP/1.1 503 ")]
        assert len(refused) == 8  # all but the first 4, closed at once
        # Another client address is served meanwhile, /health and the API alike.
        for path in ("/health", "/?exten=9001"):
            with from_address("127.0.0.2", port) as other:
                other.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                assert _recv_all(other, 5).startswith(b"HTTP/1.1 200 "), path
        # The flooding address gets nothing more while it holds its 4.
        with from_address("127.0.0.1", port) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _recv_all(extra, 5).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in flood:
            sock.close()
    time.sleep(0.3)
    assert salara.post({"exten": "9001"}).status_code == 200  # its slots are free again once closed
    assert "more than 4 open connections from 127.0.0.1" in salara.log()


# -- start-up checks --------------------------------------------------------------


def run_salara(args: list[str], env: dict[str, str], timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salara", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def test_listening_beyond_loopback_without_a_token_needs_the_opt_in(salara_factory: SalaraFactory) -> None:
    exposed = {"SALARA_URL_REST_SERVER": f"0.0.0.0:{free_port()}"}
    salara = salara_factory(start=False, **exposed)
    refused = run_salara(["-c", str(salara.workdir / "salara.conf"), "serve"], salara.env)
    assert refused.returncode != 0
    assert "allow_remote_without_token" in refused.stderr and "rest_server" in refused.stderr
    assert "Traceback" not in refused.stderr
    # That the opt-in or a token lets it start is checked without binding beyond
    # loopback (tests listen on 127.0.0.1 only): tests/unit/test_auth.py.


def test_webhook_targets_pointing_at_the_api_are_config_errors(salara_factory: SalaraFactory) -> None:
    salara = salara_factory(start=False)
    for key in ("DEST_URL", "DEST_URL_EVENT"):
        env = {**salara.env, f"SALARA_URL_{key}": f"http://localhost:{salara.port}/post"}
        result = run_salara(["-c", str(salara.workdir / "salara.conf"), "serve"], env)
        assert result.returncode != 0
        assert f"[url] {key.lower()}: points at salara's own API" in result.stderr


# -- HTTPS ----------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "api.crt", directory / "api.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=salara-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def test_the_api_speaks_https_with_the_configured_certificate(salara_factory: SalaraFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tokens = Tokens()
    salara = salara_factory(tokens.config(), start=False, SALARA_API_TLS_CERT=str(cert), SALARA_API_TLS_KEY=str(key))
    salara.url = salara.url.replace("http://", "https://")
    salara.verify = ssl.create_default_context(cafile=str(cert))
    salara.headers = bearer(tokens.monitor)
    salara.secrets |= tokens.all()
    salara.start()
    assert salara.post({"exten": "9001"}).status_code == 200
    with pytest.raises(httpx.HTTPError):  # not trusted without the certificate
        httpx.post(salara.url, json={"exten": "9001"}, headers=salara.headers)
    try:  # no plain-text API on that port
        plain = httpx.post(salara.url.replace("https://", "http://"), json={"exten": "9001"}, headers=salara.headers)
        assert plain.status_code >= 400
    except httpx.HTTPError:
        pass
    # The CLI reaches the running service over HTTPS, with a token from the environment.
    env = {**salara.env, "SALARA_CLIENT_TOKEN": tokens.ops}
    shown = run_salara(["-c", str(salara.workdir / "salara.conf"), "show", "tracked"], env)
    assert shown.returncode == 0, shown.stderr
    refused = run_salara(["-c", str(salara.workdir / "salara.conf"), "show", "tracked"], salara.env)
    assert refused.returncode != 0 and "SALARA_CLIENT_TOKEN" in refused.stderr
    assert "API on https://" in salara.log()


# -- tokens from the command line, taken up by the running service ---------------------


def test_token_create_list_revoke_take_effect_without_a_restart(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder
) -> None:
    tokens = Tokens()
    salara = start_secured(salara_factory, ami_recorder, tokens)
    conf = str(salara.workdir / "salara.conf")
    created = run_salara(
        ["-c", conf, "token", "create", "newcrm", "--rights", "call,state", "--destinations", "^9[0-9]{3}$"],
        salara.env,
    )
    assert created.returncode == 0, created.stderr
    new = created.stdout.strip()
    salara.secrets.add(new)
    assert len(new) == 43 and new not in created.stderr
    assert auth.hash_token(new) in (salara.workdir / "salara.conf").read_text()
    assert new not in (salara.workdir / "salara.conf").read_text()
    deadline = time.monotonic() + 5
    while httpx.post(salara.url + "/", json={"exten": "9001"}, headers=bearer(new)).status_code != 200:
        assert time.monotonic() < deadline, "the new token was not taken up"
        time.sleep(0.2)
    listed = run_salara(["-c", conf, "token", "list"], salara.env)
    assert "newcrm  rights=call,state" in listed.stdout and new not in listed.stdout
    without_destinations = run_salara(["-c", conf, "token", "create", "x", "--rights", "call"], salara.env)
    assert without_destinations.returncode != 0 and "--destinations" in without_destinations.stderr
    revoked = run_salara(["-c", conf, "token", "revoke", "newcrm"], salara.env)
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 5
    while httpx.post(salara.url + "/", json={"exten": "9001"}, headers=bearer(new)).status_code != 401:
        assert time.monotonic() < deadline, "the revoked token still works"
        time.sleep(0.2)
    assert salara.post({"exten": "9001"}).status_code == 200  # the others are untouched
    assert "API tokens reloaded" in salara.log()


# -- secrets ----------------------------------------------------------------------------


def test_secrets_never_appear_in_logs_or_cli_output(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder, tmp_path: Path
) -> None:
    from tests.crm import FakeCrm

    crm = FakeCrm().start()
    webhook_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    tokens = Tokens()
    try:
        salara = start_secured(
            salara_factory,
            ami_recorder,
            tokens,
            SALARA_URL_WEBHOOK_SECRET=webhook_secret,
            SALARA_URL_DEST_URL_EVENT=f"{crm.url}/events",
        )
        wrong = auth.new_token()
        salara.secrets |= {webhook_secret, wrong}
        secrets = set(salara.secrets) | {"crmsecret"}
        httpx.post(salara.url + "/", json={"exten": "9001"}, headers=bearer(wrong))
        httpx.post(salara.url + "/", json={"operator": "8001", "phone": "0044207"}, headers=bearer(tokens.crm))
        httpx.post(salara.url + "/", json={"exten": "9001\r\n"}, headers=bearer(tokens.crm))
        conf = str(salara.workdir / "salara.conf")
        outputs = []
        for args in (
            ["show", "config"],
            ["token", "list"],
            ["show", "info"],
            ["get", "status", "extension", "9001"],
            ["send", "post"],
            ["route", "show"],
        ):
            result = run_salara(["-c", conf, *args], salara.env)
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, (args, result.stderr)
        assert "secret=***" in outputs[0] and "webhook_secret=***" in outputs[0] and "hash=***" in outputs[0]
        # A wrong AMI secret, a bad token section: the errors name keys, never values.
        bad_login = run_salara(["-c", conf, "show", "info"], {**salara.env, "SALARA_AMI_SECRET": "wrong-" + wrong})
        outputs.append(bad_login.stdout + bad_login.stderr)
        assert bad_login.returncode != 0
        bad_file = tmp_path / "bad.conf"
        bad_file.write_text(f"[ami]\nsecret=crmsecret\n[token t]\nhash = {tokens.crm}\n")
        bad_file.chmod(0o600)
        bad = run_salara(["-c", str(bad_file), "show", "config"], {})
        outputs.append(bad.stdout + bad.stderr)
        assert bad.returncode != 0 and "[token t] hash" in bad.stderr
        bad_webhook = run_salara(
            ["-c", conf, "show", "config"], {**salara.env, "SALARA_URL_WEBHOOK_SECRET": "whsec_" + wrong}
        )
        outputs.append(bad_webhook.stdout + bad_webhook.stderr)
        assert bad_webhook.returncode != 0 and "[url] webhook_secret" in bad_webhook.stderr
        crm.wait_for(lambda c: bool(c.events()))
        leaked = [secret[:4] for secret in secrets | {"wrong-" + wrong} if any(secret in out for out in outputs)]
        assert leaked == []
        log = salara.log()
        assert [secret[:4] for secret in secrets if secret in log] == []
    finally:
        crm.stop()


# -- malformed HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /?exten=%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%ff?exten=9001 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /?exten=%ZZ&exten=%0 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 9\r\n\r\nexten=%ff",
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: \xff, 127.0.0.1\r\n\r\n",
        b"BREW /?exten=9001 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /?exten=9001\r\nAction: Originate HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    ],
    ids=[
        "query-bad-utf8",
        "path-bad-utf8",
        "query-bad-escapes",
        "negative-length",
        "text-length",
        "huge-length",
        "bad-chunk",
        "json-bad-utf8",
        "form-bad-utf8",
        "token-bad-utf8",
        "forwarded-garbage",
        "unknown-method",
        "crlf-in-request-line",
        "tls-hello-to-plain-http",
    ],
)
def test_malformed_http_gets_4xx_or_a_closed_connection(
    salara_factory: SalaraFactory, ami_recorder: AMIRecorder, raw: bytes
) -> None:
    salara = salara_factory(SALARA_AMI_PORT=str(ami_recorder.port), SALARA_API_REQUEST_TIMEOUT="2")
    before = len(ami_recorder.actions())
    with socket.create_connection(("127.0.0.1", salara.port)) as sock:
        sock.sendall(raw)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        answer = _recv_all(sock, 5)
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b""
    assert not answer or status.startswith(b"4") or status == b"200", answer[:200]
    if status == b"200":  # only a request that was in fact valid
        assert raw.startswith((b"GET /?exten=%ZZ", b"GET / HTTP"))
    assert [a for a in new_actions(ami_recorder, before) if a != "ExtensionState"] == []
    assert "Traceback" not in salara.log()
    assert salara.post({"exten": "9001"}).status_code == 200
