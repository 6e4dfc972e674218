"""``[general] answers``: the compat bodies as the README documents them, or as the old module's code sent them.

In process: the real app over ASGI, AMI faked. The channel-state answers,
which cross AMI, are checked on the real Asterisk in
tests/integration/test_api_hardening.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from salara import config
from salara.api.app import create_app
from salara.api.security.serving import uvicorn_options
from salara.control import CallControl
from salara.errors import ConfigError
from tests.unit.test_api_security import (
    ADMIN,
    LOCAL,
    STATE_ONLY,
    TOKEN,
    WITH_TOKENS,
    FakeAMI,
    FakeTransport,
    bearer,
)

MODULE_ERROR = b'{"result":-2,"text":"Error"}'
MODULE = "[general]\nanswers = module\n"


def test_answers_is_readme_by_default_and_module_on_request() -> None:
    assert config.Config().general.answers == "readme"
    assert config.build(config.parse_text(MODULE)).general.answers == "module"
    assert config.load(None, environ={"SALARA_GENERAL_ANSWERS": "Module"}).general.answers == "module"
    with pytest.raises(ConfigError) as caught:
        config.build(config.parse_text("[general]\nanswers = code\n"))
    assert "[general] answers" in str(caught.value)


def client(text: str, ami: FakeAMI | None = None) -> httpx.AsyncClient:
    control = CallControl.over(ami or FakeAMI(), config.build(config.parse_text(text)))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(create_app(control), client=LOCAL), base_url="http://salara")


# WITH_TOKENS starts with its own [general]; a second one adds to it.
MODULE_WITH_TOKENS = WITH_TOKENS.replace("[general]\n", MODULE, 1)


async def test_every_compat_error_is_the_module_s_body_and_keeps_salara_s_status() -> None:
    call = {"operator": "8001", "phone": "9002"}
    async with client(MODULE_WITH_TOKENS) as local:
        answers: list[tuple[int, httpx.Response]] = [
            (400, await local.post("/", json={"foo": "bar"}, headers=bearer(TOKEN))),
            (400, await local.post("/", json={"exten": "90\r\n01"}, headers=bearer(TOKEN))),
            (400, await local.post("/any/path", content=b"[" * 50, headers=bearer(TOKEN))),
            (401, await local.post("/", json={"exten": "9001"})),
            (403, await local.post("/", json=call, headers=bearer(STATE_ONLY))),
            (403, await local.post("/", json={"exten": "9001"}, headers=bearer(ADMIN))),
            (405, await local.put("/", json={"exten": "9001"}, headers=bearer(TOKEN))),
            (413, await local.post("/", content=b"9" * 3000, headers=bearer(TOKEN))),
        ]
        for _ in range(3):
            assert (await local.post("/", json=call, headers=bearer(TOKEN))).status_code == 200
        answers.append((429, await local.post("/", json=call, headers=bearer(TOKEN))))
        for status, answer in answers:
            assert (answer.status_code, answer.content) == (status, MODULE_ERROR), answer.request
            assert answer.headers["content-length"] == str(len(MODULE_ERROR))
            assert answer.headers["content-type"] == "application/json"
        assert answers[3][1].headers["www-authenticate"].startswith("Bearer")
        assert answers[7][1].headers["connection"] == "close"
        assert int(answers[8][1].headers["retry-after"]) > 0
        # Answers and the other paths' errors are unchanged.
        assert (await local.post("/", json={"exten": "9001"}, headers=bearer(TOKEN))).json() == {
            "result": 0,
            "text": "Idle",
        }
        assert (await local.get("/v1/tracked-calls", headers=bearer(TOKEN))).json()["error"] == "forbidden"
        assert (await local.get("/ready")).json()["error"] == "unauthorized"


async def test_ami_down_is_the_module_s_error_too() -> None:
    ami = FakeAMI()
    ami.ready = False
    async with client(MODULE, ami) as local:
        answer = await local.post("/", json={"exten": "9001"})
        assert (answer.status_code, answer.content) == (503, MODULE_ERROR)
        assert (await local.get("/?peer=8001")).content == MODULE_ERROR


async def test_readme_errors_say_why() -> None:
    async with client("") as local:
        answer = await local.post("/", json={"foo": "bar"})
        assert answer.status_code == 400 and answer.json()["text"].startswith("Error: unknown request")
        assert (await local.put("/")).json() == {"result": -2, "text": "Error: Method Not Allowed"}


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"", 503), (b"GET / HTTP/1.1\r\nX-Long: " + b"x" * 2000, 431)],
    ids=["over-the-per-client-cap", "headers-too-large"],
)
async def test_the_server_s_own_refusals_follow_answers(data: bytes, status: int) -> None:
    import uvicorn
    from uvicorn.server import ServerState

    environ = {"SALARA_API_MAX_CONNECTIONS_PER_CLIENT": "1", "SALARA_API_MAX_HEADER_BYTES": "1024"}
    for answers, expected in (("module", MODULE_ERROR), ("readme", b'"text": "Error: ')):
        loaded = config.load(None, environ={**environ, "SALARA_GENERAL_ANSWERS": answers})
        options = uvicorn_options(loaded)
        protocol_class = options.pop("http")
        app = create_app(CallControl.over(FakeAMI(), loaded))  # type: ignore[arg-type]
        server = uvicorn.Config(app, http=protocol_class, **options)
        state = ServerState()
        opened: list[Any] = []
        for port in (40000, 40001):
            protocol = protocol_class(config=server, server_state=state, app_state={})
            transport = FakeTransport(("127.0.0.1", port))
            protocol.connection_made(transport)
            opened.append(protocol)
        if data:  # the second connection was refused (503); the first one sends its headers
            transport = FakeTransport(("127.0.0.2", 40000))
            protocol = protocol_class(config=server, server_state=state, app_state={})
            protocol.connection_made(transport)
            protocol.data_received(data)
            opened.append(protocol)
        assert transport.written.startswith(b"HTTP/1.1 %d " % status), transport.written
        body = transport.written.split(b"\r\n\r\n", 1)[1]
        assert body == expected if answers == "module" else expected in body, transport.written
        for protocol in opened:
            protocol.connection_lost(None)
