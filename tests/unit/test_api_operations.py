"""The operations routes and who sees what of them: /health, /ready, the API description.

In process: the real app over ASGI, AMI faked (see test_api_security.py for
how a client's address and token are shown).
"""

from __future__ import annotations

import httpx
import pytest

from salara import config
from salara.api.app import create_app
from salara.control import CallControl
from salara.metrics import Metrics, Sources
from tests.unit.test_api_security import ADMIN, LOCAL, STATE_ONLY, TOKEN, WITH_TOKENS, FakeAMI, bearer

DESCRIPTION = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


class FakeOutbox:
    """A store that moved a damaged file aside when it opened."""

    def __init__(self, recovered_from: str | None) -> None:
        self.recovered_from = recovered_from


class OldOutbox:
    """A store without ``recovered_from`` (before the store reports it)."""


def client(text: str, ami: FakeAMI, **app_options: object) -> httpx.AsyncClient:
    control = CallControl.over(ami, config.build(config.parse_text(text)))  # type: ignore[arg-type]
    app = create_app(control, **app_options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=LOCAL), base_url="http://salara")


async def test_the_api_description_needs_the_state_right() -> None:
    async with client(WITH_TOKENS, FakeAMI()) as local:
        for path in DESCRIPTION:
            assert (await local.get(path)).status_code == 401, path
            refused = await local.get(path, headers=bearer(ADMIN))
            assert refused.status_code == 403, path
            assert refused.json() == {"error": "forbidden", "message": "token 'ops' lacks the 'state' right"}
            assert (await local.get(path, headers=bearer(STATE_ONLY))).status_code == 200, path
        spec = (await local.get("/openapi.json", headers=bearer(TOKEN))).json()
        assert "/v1/calls" in spec["paths"] and "/openapi.json" not in spec["paths"]
        page = await local.get("/docs", headers=bearer(STATE_ONLY))
        assert "swagger" in page.text.lower() and "/openapi.json" in page.text


async def test_ready_tells_every_client_its_status_and_only_state_its_details() -> None:
    ami = FakeAMI()
    outbox = FakeOutbox("/var/lib/salara/outbox.db.damaged-20250101T000000Z")
    async with client(WITH_TOKENS, ami, outbox=outbox) as local:
        assert (await local.get("/ready", headers=bearer(ADMIN))).json() == {"status": "ready"}
        detailed = await local.get("/ready", headers=bearer(STATE_ONLY))
        assert detailed.status_code == 200
        assert detailed.json() == {
            "status": "ready",
            "role": "leader",
            "ami": {"host": "127.0.0.1", "port": 5038, "last_error": None},
            "pbxs": {"default": {"up": True, "host": "127.0.0.1", "port": 5038, "last_error": None}},
            "outbox": {"recovered_from": "/var/lib/salara/outbox.db.damaged-20250101T000000Z"},
        }
        ami.ready = False
        ami.last_error = "connection to 127.0.0.1:5038 refused"
        plain = await local.get("/ready", headers=bearer(ADMIN))
        assert plain.status_code == 503 and plain.json() == {"status": "unready"}
        unready = await local.get("/ready", headers=bearer(TOKEN))
        assert unready.status_code == 503
        assert unready.json() == {
            "status": "unready",
            "reason": "connection to 127.0.0.1:5038 refused",
            "role": "leader",
            "ami": {"host": "127.0.0.1", "port": 5038, "last_error": "connection to 127.0.0.1:5038 refused"},
            "pbxs": {
                "default": {
                    "up": False,
                    "host": "127.0.0.1",
                    "port": 5038,
                    "last_error": "connection to 127.0.0.1:5038 refused",
                }
            },
            "outbox": {"recovered_from": "/var/lib/salara/outbox.db.damaged-20250101T000000Z"},
        }
        assert (await local.get("/ready")).status_code == 401  # a token is still needed to ask at all


@pytest.mark.parametrize(
    ("outbox", "shown"),
    [(FakeOutbox(None), {"recovered_from": None}), (OldOutbox(), {"recovered_from": None}), (None, None)],
    ids=["intact", "store-without-the-attribute", "no-store"],
)
async def test_ready_reads_the_outbox_of_the_metrics_sources(outbox: object, shown: object) -> None:
    ami = FakeAMI()
    text = "[ami]\nhost=192.0.2.10\nport=5039\n"
    async with client(text, ami, metrics=Metrics(Sources(outbox=outbox))) as local:  # type: ignore[arg-type]
        body = (await local.get("/ready")).json()  # loopback without tokens: every right
    assert body["ami"] == {"host": "192.0.2.10", "port": 5039, "last_error": None}
    assert body.get("outbox") == shown


async def test_health_stays_open_and_tells_only_that_salara_is_alive() -> None:
    ami = FakeAMI()
    ami.ready = False
    ami.last_error = "login failed"
    async with client(WITH_TOKENS, ami) as local:
        for headers in ({}, bearer(ADMIN), bearer(STATE_ONLY), {"x-api-key": "wrong"}):
            answer = await local.get("/health", headers=headers)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
