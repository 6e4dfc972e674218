"""The console's sign-in and what its cookie may and may not reach, in process (the real app over ASGI).

The cookie authenticates ``/ui``, the documentation and ``/v1``, never the
compat endpoint; a signed-in browser's state-changing request needs the
session's CSRF token and its own Origin; without tokens, pages and browser
requests naming a non-loopback Host are refused (DNS rebinding).
"""

from __future__ import annotations

import fnmatch
import re
import tomllib

import httpx

from salara import config
from salara.api.app import create_app
from salara.api.security.browser import COOKIE, SESSION_TTL_S, Sessions
from salara.api.ui.routes import static_files
from salara.control import CallControl
from tests.conftest import REPO
from tests.unit.test_api_security import LOCAL, REMOTE, STATE_ONLY, TOKEN, WITH_TOKENS, FakeAMI

NO_TOKENS = "[general]\ndefault_context=phones\n"


def console(
    text: str, address: tuple[str, int] = LOCAL, host: str = "127.0.0.1:5058"
) -> tuple[httpx.AsyncClient, FakeAMI]:
    ami = FakeAMI()
    app = create_app(CallControl.over(ami, config.build(config.parse_text(text))))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app, client=address)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}"), ami


async def sign_in(client: httpx.AsyncClient, token: str) -> dict[str, object]:
    answer = await client.post("/ui/api/session", json={"token": token})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_without_a_session_the_page_and_its_files_load_and_nothing_else() -> None:
    client, _ = console(WITH_TOKENS)
    async with client:
        page = await client.get("/ui")
        assert page.status_code == 200 and "sign-in-form" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        # No inline script: every script element loads a file of this server.
        assert re.findall(r"<script[^>]*>", page.text) == ['<script type="module" src="/ui/static/js/main.js">']
        script = await client.get("/ui/static/js/main.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        for name in ("routes.py", "..%2Froutes.py", "vendor/redoc/LICENSE"):  # only the listed files
            assert (await client.get(f"/ui/static/{name}")).status_code == 404, name
        for path in ("/ui/api/session", "/ui/api/calls/recent", "/ui/api/health", "/v1/calls", "/docs"):
            assert (await client.get(path)).status_code == 401, path


async def test_sign_in_sets_a_strict_http_only_expiring_cookie_and_a_wrong_token_gets_none() -> None:
    client, _ = console(WITH_TOKENS)
    async with client:
        wrong = await client.post("/ui/api/session", json={"token": "not-a-configured-token"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        answer = await client.post("/ui/api/session", json={"token": STATE_ONLY})
        assert answer.status_code == 200
        body = answer.json()
        assert (body["name"], body["rights"], body["tokens"]) == ("monitor", ["state"], True)
        assert isinstance(body["csrf"], str) and len(body["csrf"]) >= 40
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/", f"max-age={int(SESSION_TTL_S)}"} <= attributes
        assert "secure" not in attributes  # plain HTTP here; set when [api] tls_cert is
        assert STATE_ONLY not in cookie  # the session id, never the token
        who = await client.get("/ui/api/session")
        assert who.json() == body
        assert (await client.get("/v1/calls")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_the_cookie_never_reaches_the_compat_endpoint() -> None:
    client, ami = console(WITH_TOKENS)
    async with client:
        await sign_in(client, TOKEN)  # call, message, state
        for path in ("/", "/ui/x", "/anything"):
            answer = await client.get(path, params={"operator": "8001", "phone": "9001"})
            assert answer.status_code in (401, 404), (path, answer.text)
        answer = await client.post("/", json={"operator": "8001", "phone": "9001"})
        assert answer.status_code == 401
        assert "Originate" not in ami.actions


async def test_state_changes_need_the_csrf_token_and_the_same_origin() -> None:
    client, _ = console(WITH_TOKENS)
    async with client:
        csrf = str((await sign_in(client, TOKEN))["csrf"])
        no_token = await client.delete("/v1/calls/salara-0000")
        assert no_token.status_code == 403 and "x-csrf-token" in no_token.json()["message"]
        wrong = await client.delete("/v1/calls/salara-0000", headers={"x-csrf-token": "x" * 43})
        assert wrong.status_code == 403
        passed = await client.delete("/v1/calls/salara-0000", headers={"x-csrf-token": csrf})
        assert passed.status_code == 404 and passed.json()["error"] == "call_not_found"
        cross = await client.delete(
            "/v1/calls/salara-0000", headers={"x-csrf-token": csrf, "origin": "http://evil.example"}
        )
        assert cross.status_code == 403 and "Origin" in cross.json()["message"]
        same = await client.delete(
            "/v1/calls/salara-0000", headers={"x-csrf-token": csrf, "origin": "http://127.0.0.1:5058"}
        )
        assert same.status_code == 404


async def test_a_signed_in_token_keeps_its_rights() -> None:
    client, ami = console(WITH_TOKENS)
    async with client:
        csrf = str((await sign_in(client, STATE_ONLY))["csrf"])
        refused = await client.post(
            "/v1/calls/salara-0000/transfer", json={"to": "9001"}, headers={"x-csrf-token": csrf}
        )
        assert refused.status_code == 403 and "lacks the 'call' right" in refused.json()["message"]
        placed = await client.post("/v1/calls", json={"from": "8001", "to": "9001"}, headers={"x-csrf-token": csrf})
        assert placed.status_code == 403 and "Originate" not in ami.actions


async def test_sign_out_and_a_revoked_token_end_the_session() -> None:
    client, _ = console(WITH_TOKENS)
    async with client:
        csrf = str((await sign_in(client, STATE_ONLY))["csrf"])
        out = await client.delete("/ui/api/session", headers={"x-csrf-token": csrf})
        assert out.status_code == 200 and 'salara_session=""' in out.headers["set-cookie"]
        assert (await client.get("/ui/api/session")).status_code == 401
        await sign_in(client, STATE_ONLY)
        assert (await client.get("/ui/api/session")).status_code == 200
        security = client._transport.app.state.security  # type: ignore[attr-defined]
        security.set_tokens({name: t for name, t in security.config.tokens.items() if name != "monitor"})
        gone = await client.get("/ui/api/session")
        assert gone.status_code == 401 and "no longer configured" in gone.json()["message"]


async def test_without_tokens_a_non_loopback_host_is_refused_to_pages_and_browsers() -> None:
    client, _ = console(NO_TOKENS)
    async with client:
        assert (await client.get("/ui")).status_code == 200
        who = await client.get("/ui/api/session")
        assert who.json()["name"] == "loopback" and who.json()["tokens"] is False
        for host in ("localhost:5058", "[::1]:5058", "127.0.0.2"):
            assert (await client.get("/ui", headers={"host": host})).status_code == 200, host
        for path in ("/ui", "/ui/api/calls/recent", "/docs", "/redoc"):
            refused = await client.get(path, headers={"host": "rebound.example:5058"})
            assert refused.status_code == 403 and "DNS rebinding" in refused.json()["message"], path
        browser = {"host": "rebound.example:5058", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)"}
        assert (await client.get("/v1/calls", headers=browser)).status_code == 403
        # API clients name the host they were given; they show no browser's marks.
        assert (await client.get("/v1/calls", headers={"host": "salara"})).status_code == 200
    remote, _ = console(NO_TOKENS, address=REMOTE)
    async with remote:
        assert (await remote.get("/ui")).status_code == 403  # loopback only, as the API


def test_sessions_expire_and_are_bounded() -> None:
    sessions = Sessions(ttl_s=10.0, max_sessions=2)
    first = sessions.create("sha256:a", 0.0)
    second = sessions.create("sha256:b", 1.0)
    assert sessions.get(first.id, 9.9) == first and first.id != second.id and first.csrf != first.id
    assert sessions.get(first.id, 10.0) is None  # expired, and forgotten
    assert len(sessions) == 1
    third = sessions.create("sha256:c", 2.0)
    fourth = sessions.create("sha256:d", 3.0)  # beyond the bound: the oldest goes
    assert sessions.get(second.id, 3.0) is None
    assert [sessions.get(s.id, 3.0) for s in (third, fourth)] == [third, fourth]
    sessions.drop(third.id)
    assert sessions.get(third.id, 3.0) is None and sessions.get(None, 3.0) is None


async def test_the_cookie_is_secure_when_salara_serves_tls() -> None:
    text = WITH_TOKENS.replace("[api]\n", "[api]\ntls_cert=/etc/salara/cert.pem\ntls_key=/etc/salara/key.pem\n")
    client, _ = console(text)
    async with client:
        answer = await client.post("/ui/api/session", json={"token": STATE_ONLY})
        attributes = {part.strip().lower() for part in answer.headers["set-cookie"].split(";")[1:]}
        assert {"secure", "httponly", "samesite=strict"} <= attributes


def test_every_console_file_is_package_data() -> None:
    """The wheel (and so the Debian package) carries every file the console serves."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["salara"]
    served = [f"api/ui/static/{name}" for name in static_files()]
    assert "api/ui/static/js/main.js" in served and "api/ui/static/vendor/redoc/redoc.standalone.js" in served
    missing = [
        name
        for name in served
        if not any(fnmatch.fnmatch(name, p) and name.count("/") == p.count("/") for p in patterns)
    ]
    assert missing == []


async def test_a_token_in_the_header_needs_no_csrf_token_even_beside_a_session() -> None:
    client, _ = console(WITH_TOKENS)
    async with client:
        await sign_in(client, STATE_ONLY)
        # Swagger UI's Authorize: the page's request carries the cookie and the token; the token decides.
        answer = await client.delete("/v1/calls/salara-0000", headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 404 and answer.json()["error"] == "call_not_found"
        wrong = await client.delete("/v1/calls/salara-0000", headers={"authorization": "Bearer not-a-token"})
        assert wrong.status_code == 401
