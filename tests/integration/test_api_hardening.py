"""The API's edges on a real salara and the real test Asterisk: what each right opens, big bodies, proxies."""

from __future__ import annotations

import httpx

from salara.api.security import tokens as auth
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess


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
