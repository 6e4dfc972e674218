"""The CRM routing lookup against a real HTTP server on 127.0.0.1: answers, failures, bounds."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from salara import config as config_module
from salara.crm.lookup import CrmLookup, LookupAnswer, LookupFailed
from salara.routing.decision import Source
from salara.routing.script import Router
from salara.routing.table import RouteTable

Handler = Callable[[web.Request], web.StreamResponse]


@pytest.fixture
async def crm() -> AsyncIterator[Callable[[Handler], str]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/lookup?phone="

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


async def lookup(url: str, caller: str = "5551") -> str:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        return (await CrmLookup(session, url, "manager").lookup(caller)).exten


def answering(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, headers=headers or {"content-type": "application/json"})

    return handler  # type: ignore[return-value]


async def test_an_answer_names_the_extension(crm: Callable[[Handler], str]) -> None:
    url = await crm(answering(body=b'{"manager": 8002}'))  # type: ignore[misc]
    assert await lookup(url) == "8002"


@pytest.mark.parametrize(
    ("status", "body", "definitive"),
    [
        (404, b"", True),
        (200, b"{}", True),
        (200, b'{"manager": null}', True),
        (200, b'{"manager": "80\\r\\n02"}', True),
        (500, b"", False),
        (200, b"not json", False),
        (200, b"[" * 100_000, False),  # nested too deep for the JSON parser
        (200, b'{"manager": "' + b"1" * 100_000 + b'"}', False),  # larger than any routing answer
    ],
)
async def test_failures_say_whether_the_crm_answered_definitively(
    crm: Callable[[Handler], str], status: int, body: bytes, definitive: bool
) -> None:
    url = await crm(answering(status, body))  # type: ignore[misc]
    with pytest.raises(LookupFailed) as caught:
        await lookup(url)
    assert caught.value.definitive is definitive


async def test_a_compressed_answer_is_not_inflated(crm: Callable[[Handler], str]) -> None:
    bomb = gzip.compress(b"{" + b" " * 10_000_000 + b"}")
    url = await crm(answering(body=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"}))  # type: ignore[misc]
    with pytest.raises(LookupFailed):
        await lookup(url)


async def test_unknown_callers_do_not_open_the_circuit_nor_revive_old_answers(crm: Callable[[Handler], str]) -> None:
    answers = {"5551": b'{"manager": "8002"}'}

    async def handler(request: web.Request) -> web.Response:
        body = answers.get(request.query.get("phone", ""))
        return web.Response(status=200 if body else 404, body=body or b"")

    url = await crm(handler)  # type: ignore[misc, arg-type]
    config = config_module.load(None, environ={"SALARA_ROUTING_BREAKER_FAILURES": "2"})
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        router = Router(config, None, CrmLookup(session, url, "manager"), None, RouteTable(None, {}))  # type: ignore[arg-type]
        assert (await router._ask_crm("5551", 1.0))[:2] == (LookupAnswer("8002"), Source.CRM)
        for unknown in ("1", "2", "3", "4"):
            assert (await router._ask_crm(unknown, 1.0))[0] is None
        assert not router.breaker.open, "404s are answers, not failures"
        del answers["5551"]  # the CRM now names no one for 5551
        assert (await router._ask_crm("5551", 1.0))[:2] == (None, Source.CRM), "no stale answer over a fresh 404"
