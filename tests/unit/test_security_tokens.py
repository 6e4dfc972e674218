"""Access policy (salara.api.security.tokens), token config sections and request limits, without sockets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from salara import config
from salara.api.compat.request import ChannelStateQuery, ExtensionStateQuery, MakeCall, PeerStateQuery, SendMessage
from salara.api.security import tokens as auth
from salara.api.security.limits import LimitError, RequestLimits, check_fields, json_depth_exceeds
from salara.config import Rate
from salara.errors import ConfigError

CRM_TOKEN = "crm-token-for-tests-only-0123456789abcdefghi"
STATE_TOKEN = "state-token-for-tests-only-0123456789abcdefg"


def token_section(name: str, token: str, **values: str) -> str:
    lines = [f"[token {name}]", f"hash = {auth.hash_token(token)}"]
    lines += [f"{key} = {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def make_config(text: str) -> config.Config:
    return config.build(config.parse_text(text))


BASE = "[general]\ndefault_context=phones\n"
TOKENS = (
    BASE
    + token_section(
        "CRM.main",
        CRM_TOKEN,
        rights="call,message,state",
        contexts="phones,sim",
        destinations="^[0-9]{3,4}$, +7495",
        rate="2/60",
    )
    + token_section("monitor", STATE_TOKEN, rights="state")
)


# -- tokens ---------------------------------------------------------------


def test_new_tokens_are_long_random_base64url() -> None:
    tokens = {auth.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) for token in tokens)


def test_hash_is_sha256_hex() -> None:
    assert auth.hash_token("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("authorization", "Bearer abc", "abc"),
        ("authorization", "bearer   abc ", "abc"),
        ("authorization", "Basic abc", None),
        ("authorization", "Bearer ", None),
        ("x-api-key", "abc", "abc"),
        ("x-api-key", "  ", None),
    ],
)
def test_credential_from_headers(header: str, value: str, expected: str | None) -> None:
    assert auth.credential_from({header: value}) == expected


# -- the token sections of the config ------------------------------------------


def test_token_sections_load_with_their_name_case_kept() -> None:
    loaded = make_config(TOKENS)
    assert list(loaded.tokens) == ["CRM.main", "monitor"]
    crm = loaded.tokens["CRM.main"]
    assert crm.rights == ("call", "message", "state")
    assert crm.contexts == ("phones", "sim")
    assert crm.destinations == ("^[0-9]{3,4}$", "+7495")
    assert crm.rate == Rate(2, 60)
    assert loaded.tokens["monitor"].rate == Rate(10, 60)  # the default
    assert loaded.tokens["monitor"].destinations == ()


def test_masked_view_hides_token_hashes() -> None:
    masked = make_config(TOKENS).masked()
    assert masked["token CRM.main"]["hash"] == "***"
    assert masked["token CRM.main"]["rate"] == "2/60"
    assert auth.hash_token(CRM_TOKEN) not in str(masked)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[token bad/name]\nhash = sha256:" + "0" * 64 + "\n", "token name"),
        ("[token x]\nhash = md5:abc\n", "hash"),
        ("[token x]\nrights = call\n", "hash"),
        ("[token x]\nhash = sha256:" + "0" * 64 + "\nrights = call,fly\n", "rights"),
        ("[token x]\nhash = sha256:" + "0" * 64 + "\nrate = often\n", "rate"),
        ("[token x]\nhash = sha256:" + "0" * 64 + "\nrate = 0/60\n", "rate"),
        ("[token x]\nhash = sha256:" + "0" * 64 + "\ncontexts = a b\n", "contexts"),
        ("[token x]\nhash = sha256:" + "0" * 64 + "\ndestinations = ^[0-9\n", "destinations"),
        ("[token x]\nhash = sha256:" + "0" * 64 + "\ndestinations = 8/9\n", "destinations"),  # ";" starts a comment
        (token_section("a", "t" * 43) + token_section("b", "t" * 43), "same token"),
    ],
)
def test_bad_token_sections_are_config_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(text)
    assert needle in str(caught.value)
    assert not re.search(r"[0-9a-f]{64}", str(caught.value))  # never the hash


def test_rate_syntax() -> None:
    assert Rate.parse("10/60") == Rate(10, 60)
    assert Rate.parse(" 5/1.5 ") == Rate(5, 1.5)
    assert Rate.parse("off") is None
    for bad in ("10", "a/b", "-1/60", "10/0"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_destination_lists_split_on_spaces_and_commas_outside_brackets() -> None:
    assert config.split_destinations("^[0-9]{3,4}$, +7495 8495,^[,x]$") == ("^[0-9]{3,4}$", "+7495", "8495", "^[,x]$")


def test_old_module_file_still_loads_with_api_defaults() -> None:
    loaded = config.load(Path(__file__).parent.parent / "data" / "salara-old-module.conf", environ={})
    assert loaded.tokens == {}
    assert loaded.api.max_body_bytes == 64 * 1024
    assert not loaded.api.allow_remote_without_token


def test_api_section_and_env_overrides() -> None:
    loaded = config.load(None, environ={"SALARA_API_MAX_FIELDS": "5", "SALARA_API_ALLOW_REMOTE_WITHOUT_TOKEN": "yes"})
    assert loaded.api.max_fields == 5
    assert loaded.api.allow_remote_without_token
    with pytest.raises(ConfigError, match=r"\[api\] tls_key"):
        config.load(None, environ={"SALARA_API_TLS_CERT": "cert.pem"})


@pytest.mark.parametrize(
    ("rest_server", "url", "refused"),
    [
        ("127.0.0.1:5058", "http://127.0.0.1:5058/post", True),
        ("127.0.0.1:5058", "http://localhost:5058/", True),
        ("0.0.0.0:5058", "http://[::1]:5058/x", True),
        ("[::]:80", "http://127.0.0.1/x", True),
        ("127.0.0.1:443", "https://127.0.0.1/x", True),
        ("pbx.example:5058", "http://PBX.example:5058/x", True),
        ("127.0.0.1:5058", "http://127.0.0.1:5059/post", False),
        ("127.0.0.1:5058", "http://crm.example:5058/post", False),
        ("127.0.0.1:5058", "https://127.0.0.1/post", False),
    ],
)
def test_webhook_targets_may_not_be_salara_itself(rest_server: str, url: str, refused: bool) -> None:
    for key in ("dest_url", "dest_url_event"):
        environ = {"SALARA_URL_REST_SERVER": rest_server, f"SALARA_URL_{key.upper()}": url}
        if refused:
            with pytest.raises(ConfigError, match=rf"\[url\] {key}: points at salara's own API"):
                config.load(None, environ=environ)
        else:
            assert getattr(config.load(None, environ=environ).url, key) == url


def test_token_edits_keep_comments_and_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("; top\n[general]\ndefault=1\n[token a]\n; the CRM\nhash = old\nrights = state\n[route]\n1:2\n")
    path.chmod(0o600)
    values = {"hash": auth.hash_token("x" * 43), "rights": "call", "destinations": "any"}
    config.save_token(path, "a", values)
    text = path.read_text()
    assert text.startswith("; top\n[general]\ndefault=1\n[token a]\nhash = sha256:")
    assert "; the CRM\n[route]\n1:2\n" in text and "old" not in text
    config.save_token(path, "b", {"hash": auth.hash_token("y" * 43), "rights": "state"})
    assert list(config.load(path, environ={}).tokens) == ["a", "b"]
    config.save_token(path, "a", None)
    loaded = config.load(path, environ={})
    assert list(loaded.tokens) == ["b"] and loaded.routes == {"1": "2"}
    assert "; the CRM" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError):
        config.save_token(path, "c", {"hash": "nope"})
    assert "[token c]" not in path.read_text()  # a bad edit leaves the file alone


# -- authentication and authorization -------------------------------------------


def test_without_tokens_only_loopback_is_served() -> None:
    security = auth.Security(make_config(BASE))
    assert security.authenticate("127.0.0.1", None) is auth.LOOPBACK
    assert security.authenticate("::1", None) is auth.LOOPBACK
    assert security.authenticate("::ffff:127.0.0.5", "whatever") is auth.LOOPBACK
    for remote in ("192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1", None, "not-an-ip"):
        denial = security.authenticate(remote, None)
        assert isinstance(denial, auth.Denial) and denial.status == 403
    opted_in = auth.Security(make_config(BASE + "[api]\nallow_remote_without_token=yes\n"))
    assert opted_in.authenticate("192.0.2.7", None) is auth.REMOTE_WITHOUT_TOKEN


def test_with_tokens_everyone_needs_one() -> None:
    security = auth.Security(make_config(TOKENS))
    for host in ("127.0.0.1", "192.0.2.7"):
        missing = security.authenticate(host, None)
        assert isinstance(missing, auth.Denial) and missing.status == 401
        wrong = security.authenticate(host, CRM_TOKEN + "x")
        assert isinstance(wrong, auth.Denial) and wrong.status == 401
        found = security.authenticate(host, CRM_TOKEN)
        assert isinstance(found, auth.Principal) and found.name == "CRM.main"


def test_rights_contexts_and_destinations() -> None:
    security = auth.Security(make_config(TOKENS))
    crm = security.identify(CRM_TOKEN)
    monitor = security.identify(STATE_TOKEN)
    assert crm is not None and monitor is not None
    now = 0.0
    assert security.check_compat(crm, ExtensionStateQuery("9001", "anything"), now) is None
    assert security.check_compat(monitor, PeerStateQuery("8001"), now) is None
    assert security.check_compat(monitor, ChannelStateQuery("PJSIP/8001-1"), now) is None

    def status(who: auth.Principal, request: object) -> int | None:
        denial = security.check_compat(who, request, now)  # type: ignore[arg-type]
        return denial.status if denial else None

    assert status(monitor, MakeCall("8001", "9002", "phones")) == 403  # no call right
    assert status(monitor, SendMessage("8001", "9002", "hi", "phones")) == 403
    assert status(crm, MakeCall("8001", "0044201234567", "phones")) == 403  # international
    assert status(crm, MakeCall("8001", "810441234567", "phones")) == 403
    assert status(crm, MakeCall("8001", "9002", "from-trunk")) == 403  # context
    assert status(crm, MakeCall("8001", "+74951234567", "sim")) is None  # prefix
    assert status(crm, SendMessage("8001", "+441234", "hi", "phones")) is None  # a message checks its recipient
    assert status(crm, SendMessage("+441234", "8001", "hi", "phones")) == 403


def test_empty_destinations_allow_nothing_and_empty_contexts_mean_the_default() -> None:
    text = BASE + token_section("t", CRM_TOKEN, rights="call")
    security = auth.Security(make_config(text))
    who = security.identify(CRM_TOKEN)
    assert who is not None and who.contexts == frozenset({"phones"})
    assert security.authorize(who, "call", "phones", "9002") is not None
    anything = auth.Security(make_config(BASE + token_section("t", CRM_TOKEN, rights="call", destinations="any")))
    who = anything.identify(CRM_TOKEN)
    assert who is not None
    assert anything.authorize(who, "call", "phones", "0044201234567") is None
    assert anything.authorize(who, "call", "sim", "9002") is not None


def test_rate_limit_answers_429_with_retry_after() -> None:
    security = auth.Security(make_config(TOKENS))
    crm = security.identify(CRM_TOKEN)
    assert crm is not None
    call = MakeCall("8001", "9002", "phones")
    assert security.check_compat(crm, call, 100.0) is None
    assert security.check_compat(crm, call, 100.0) is None
    denial = security.check_compat(crm, call, 100.0)
    assert denial is not None and denial.status == 429 and denial.retry_after_s == 30
    # state queries are not counted; a refill of one comes after 30 s
    assert security.check_compat(crm, ExtensionStateQuery("9001", "phones"), 100.0) is None
    assert security.check_compat(crm, call, 130.0) is None
    assert security.check_compat(crm, call, 130.0) is not None


def test_token_bucket() -> None:
    limiter = auth.RateLimiter()
    rate = Rate(3, 3)
    assert [limiter.take("a", rate, 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]
    assert limiter.take("b", rate, 0.0) == 0.0  # per key
    assert limiter.take("a", rate, 0.5) == pytest.approx(0.5)
    assert limiter.take("a", rate, 1.0) == 0.0
    assert limiter.take("a", rate, 100.0) == 0.0  # never more than the burst
    assert [limiter.take("a", rate, 100.0) for _ in range(3)][-1] > 0


def test_reloaded_tokens_replace_the_old_ones() -> None:
    security = auth.Security(make_config(TOKENS))
    security.set_tokens(make_config(BASE + token_section("new", STATE_TOKEN, rights="state")).tokens)
    assert security.identify(CRM_TOKEN) is None
    found = security.identify(STATE_TOKEN)
    assert found is not None and found.name == "new"


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, False),
        ({"SALARA_URL_REST_SERVER": "localhost:5058"}, False),
        ({"SALARA_URL_REST_SERVER": "[::1]:5058"}, False),
        ({"SALARA_URL_REST_SERVER": "127.0.0.2:5058"}, False),
        ({"SALARA_URL_REST_SERVER": "0.0.0.0:5058"}, True),
        ({"SALARA_URL_REST_SERVER": "192.0.2.1:5058"}, True),
        ({"SALARA_URL_REST_SERVER": "pbx.example:5058"}, True),
        ({"SALARA_URL_REST_SERVER": "0.0.0.0:5058", "SALARA_API_ALLOW_REMOTE_WITHOUT_TOKEN": "yes"}, False),
    ],
)
def test_listening_beyond_loopback_needs_a_token_or_the_opt_in(environ: dict[str, str], problem: bool) -> None:
    text = auth.exposure_problem(config.load(None, environ=environ))
    assert (text is not None) == problem
    if text:
        assert "allow_remote_without_token" in text
    with_token = make_config(TOKENS)
    assert auth.exposure_problem(with_token) is None


def test_loopback_addresses() -> None:
    assert all(map(auth.is_loopback, ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "[::1]")))
    assert not any(map(auth.is_loopback, ("0.0.0.0", "192.0.2.1", "::", "::ffff:10.0.0.1", "", None, "localhost")))


# -- request limits -------------------------------------------------------------


def test_json_depth() -> None:
    assert not json_depth_exceeds(b'{"exten": "9001"}', 1)
    assert json_depth_exceeds(b'{"a": {"b": 1}}', 1)
    assert not json_depth_exceeds(b'{"a": "{{{{[[[[\\"{{{{"}', 1)
    assert json_depth_exceeds(b"[" * 100_000, 8)
    assert not json_depth_exceeds(b"[" * 8 + b"]" * 8, 8)


def test_field_limits() -> None:
    limits = RequestLimits(max_fields=3, max_field_bytes=10)
    check_fields({"a": "1", "b": 2, "c": [1] * 100}, limits)
    with pytest.raises(LimitError, match="more than 3 fields"):
        check_fields({"a": 1, "b": 2, "c": 3, "d": 4}, limits)
    with pytest.raises(LimitError, match="longer than 10 bytes"):
        check_fields({"a": "é" * 6}, limits)
    with pytest.raises(LimitError, match="field name"):
        check_fields({"k" * 11: "1"}, limits)
    with pytest.raises(LimitError):
        check_fields({"a": 10**20}, limits)
