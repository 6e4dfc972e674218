"""``[routing] key_caller_name``: the routing answer's key naming the caller, against a real HTTP CRM on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from salara import config as config_module
from salara.config.changes import LOOKUP_KEYS, plan
from salara.errors import ConfigError
from salara.reload import crm_lookup

ANSWER = b'{"manager": "8002", "customer": "Ann Smith", "caller_name": "Front desk"}'


@pytest.fixture
async def crm_url() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_get("/lookup", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/lookup?phone="
    await runner.cleanup()


def conf(url: str, routing: str = "") -> config_module.Config:
    text = f"[url]\ndest_url={url}\n[keys]\nkey_word=manager\n[routing]\n{routing}"
    return config_module.build(config_module.parse_text(text))


async def name_of(config: config_module.Config) -> str | None:
    async with aiohttp.ClientSession() as session:
        lookup = crm_lookup(config, session)
        assert lookup is not None
        answer = await lookup.lookup("5551")
        assert answer.exten == "8002"
        return answer.caller_name


async def test_the_caller_name_key_is_caller_name_unless_configured(crm_url: str) -> None:
    assert conf(crm_url).routing.key_caller_name == "caller_name"
    assert await name_of(conf(crm_url)) == "Front desk"
    assert await name_of(conf(crm_url, "key_caller_name=customer\n")) == "Ann Smith"
    assert await name_of(conf(crm_url, "key_caller_name=nobody\n")) is None


def test_a_changed_key_rebuilds_the_lookup_on_reload() -> None:
    old, new = conf("http://crm/l?phone="), conf("http://crm/l?phone=", "key_caller_name=customer\n")
    reloaded = plan(old, new)
    assert reloaded.touches(LOOKUP_KEYS) and "[routing] key_caller_name" in reloaded.changed
    assert reloaded.config.routing.key_caller_name == "customer"


def test_an_empty_or_long_key_is_refused() -> None:
    for bad in ("key_caller_name=\n", f"key_caller_name={'k' * 65}\n"):
        with pytest.raises(ConfigError):
            conf("http://crm/l?phone=", bad)
