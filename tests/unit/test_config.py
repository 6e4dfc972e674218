"""salara.conf: the old module's file loads unchanged; new keys; env overrides; route edits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from salara import config
from salara.errors import ConfigError

DATA = Path(__file__).parent.parent / "data"
REPO = Path(__file__).parent.parent.parent


def test_old_module_file_loads_unchanged() -> None:
    loaded = config.load(DATA / "salara-old-module.conf", environ={})
    assert loaded.general.default == "1234"
    assert loaded.general.curlopt_timeout == 3
    assert loaded.general.default_context == "alnik"
    assert loaded.routes == {"8003": "0000", "8002": "000", "8001": "00", "8000": "0"}
    assert list(loaded.routes) == ["8003", "8002", "8001", "8000"]
    assert (loaded.event.verbose, loaded.event.watch_makecall) == (1, True)
    assert (loaded.event.hangup, loaded.event.newchannel, loaded.event.newexten) == (1, 1, 1)
    assert loaded.url.good_status == (0, 4)
    assert str(loaded.url.rest_server) == "127.0.0.1:5058"
    assert loaded.url.dest_url.endswith("check_is_org_only?phone=")
    assert loaded.keys.key_extension == "extension"
    assert loaded.keys.key_channel == "channel"


def test_repository_example_loads() -> None:
    loaded = config.load(REPO / "salara.conf.example", environ={})
    assert loaded.ami.username == "crm"
    assert str(loaded.agi.listen) == "127.0.0.1:4573"
    assert loaded.keys.key_extension == "exten"


def test_defaults_without_a_file() -> None:
    loaded = config.load(None, environ={})
    assert str(loaded.url.rest_server) == "127.0.0.1:5058"
    assert loaded.url.good_status == (0,)
    assert loaded.url.tls_verify is True
    assert loaded.general.operator_technology == "PJSIP"
    assert loaded.keys.key_word == "personal_manager_internal_phone"


def test_environment_overrides_the_file() -> None:
    loaded = config.load(
        DATA / "salara-old-module.conf",
        environ={"SALARA_AMI_SECRET": "s3", "SALARA_URL_GOOD_STATUS": "0,1", "OTHER": "x"},
    )
    assert loaded.ami.secret == "s3"
    assert loaded.url.good_status == (0, 1)


@pytest.mark.parametrize(
    ("text", "section", "key"),
    [
        ("[general]\ncurlopt_timeout=soon\n", "general", "curlopt_timeout"),
        ("[event]\nnewexten=7\n", "event", "newexten"),
        ("[url]\ngood_status=0,x\n", "url", "good_status"),
        ("[url]\nrest_server=localhost:99999\n", "url", "rest_server"),
        ("[ami]\nport=0\n", "ami", "port"),
        ("[route]\n8001\n", "route", None),
        ("[general]\njust a line\n", "general", None),
    ],
)
def test_errors_name_the_section_and_key(tmp_path: Path, text: str, section: str, key: str) -> None:
    path = tmp_path / "salara.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert caught.value.section == section
    assert caught.value.key == key
    assert (f"[{section}] {key}" if key else f"[{section}]: line 2") in str(caught.value)


def test_asterisk_syntax_bom_comments_and_arrows(tmp_path: Path) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("\ufeff[general] ; main\ndefault => 710 ; the queue\n[ami]\nsecret = a\\;b;c\n[route]\n1:2 ; vip\n")
    loaded = config.load(path, environ={})
    assert loaded.general.default == "710"
    assert loaded.ami.secret == "a;b"
    assert loaded.routes == {"1": "2"}


def test_a_malformed_line_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("[ami]\nsecret topsecret\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert "topsecret" not in str(caught.value) and "line 2" in str(caught.value)


def test_secret_never_appears_in_errors_or_masked_view(tmp_path: Path) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("[ami]\nsecret=topsecret\n[url]\nwebhook_secret=hooksecret\n")
    masked = config.load(path, environ={}).masked()
    assert masked["ami"]["secret"] == "***"
    assert masked["url"]["webhook_secret"] == "***"
    assert "topsecret" not in repr(masked) and "hooksecret" not in repr(masked)


def test_unknown_keys_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("[general]\nconsole=1\n[whatever]\na=b\n")
    config.load(path, environ={})
    assert "[general] console" in caplog.text
    assert "[whatever]" in caplog.text


def test_world_readable_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("[general]\n")
    path.chmod(0o644)
    config.load(path, environ={})
    assert "readable by every user" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    config.load(path, environ={})
    assert "readable" not in caplog.text


def test_route_edit_keeps_comments_and_order(tmp_path: Path) -> None:
    original = (DATA / "salara-old-module.conf").read_text()
    path = tmp_path / "salara.conf"
    path.write_text(original)
    path.chmod(0o640)
    config.save_route(path, "8002", "9002")
    config.save_route(path, "5550001", "8003")
    config.save_route(path, "8000", None)
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    comments = [line for line in original.splitlines() if line.startswith(";")]
    assert [line for line in text.splitlines() if line.startswith(";")] == comments
    loaded = config.load(path, environ={})
    assert loaded.routes == {"8003": "0000", "8002": "9002", "8001": "00", "5550001": "8003"}
    # Only the route lines changed.
    changed = set(original.splitlines()) ^ set(text.splitlines())
    assert changed == {"8002:000", "8002:9002", "8000:0", "5550001:8003"}


def test_route_edit_adds_a_missing_section_and_refuses_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "salara.conf"
    path.write_text("[general]\ndefault=710")
    config.save_route(path, "100", "200")
    assert config.load(path, environ={}).routes == {"100": "200"}
    with pytest.raises(ConfigError):
        config.save_route(path, "100\n[ami]", "200")
    assert config.load(path, environ={}).routes == {"100": "200"}


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("5058", "127.0.0.1", 5058), ("0.0.0.0:80", "0.0.0.0", 80), ("[::1]:5058", "::1", 5058), ("pbx", "pbx", 4573)],
)
def test_host_port_forms(text: str, host: str, port: int) -> None:
    parsed = config.HostPort.parse(text, 4573)
    assert (parsed.host, parsed.port) == (host, port)
    assert config.HostPort.parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["::1", "[::1", "host:0", "host:99999", ":80", "[::1]x"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError):
        config.HostPort.parse(text, 4573)


@pytest.mark.parametrize(
    ("environ", "section"),
    [
        ({"SALARA_KEYS_KEY_PEER": "exten"}, "keys"),
        ({"SALARA_KEYS_KEY_MSG": " "}, "keys"),
        ({"SALARA_GENERAL_DEFAULT_CONTEXT": "a b"}, "general"),
        ({"SALARA_GENERAL_DEFAULT_CONTEXT": ""}, "general"),
    ],
)
def test_keys_and_default_context_are_validated(environ: dict[str, str], section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(None, environ=environ)
    assert caught.value.section == section


def test_auth_is_case_insensitive() -> None:
    assert config.load(None, environ={"SALARA_AMI_AUTH": "PLAIN"}).ami.auth == "plain"


# -- concurrent edits ------------------------------------------------------------


def _set_route(args: tuple[str, int, object]) -> None:
    path, index, barrier = args
    barrier.wait()  # type: ignore[attr-defined]
    config.save_route(Path(path), f"55500{index:02d}", "8002")


def _token_edit(args: tuple[str, str, object]) -> None:
    path, what, barrier = args
    barrier.wait()  # type: ignore[attr-defined]
    if what == "revoke":
        config.save_token(Path(path), "old", None)
    else:
        config.save_route(Path(path), "5551234", "8003")


def test_concurrent_route_edits_all_land(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "salara.conf"
    path.write_text("[general]\ndefault=710\n[route]\n")
    path.chmod(0o600)
    runs = 20
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(runs)
    with context.Pool(runs) as pool:
        pool.map(_set_route, [(str(path), index, barrier) for index in range(runs)])
    routes = config.load(path, environ={}).routes
    assert len(routes) == runs, sorted(routes)
    assert (tmp_path / ".salara.conf.lock").exists()  # the lock lives beside the file


def test_a_concurrent_route_edit_never_resurrects_a_revoked_token(tmp_path: Path) -> None:
    import multiprocessing

    from salara.api.security import tokens as auth

    context = multiprocessing.get_context("fork")
    for _ in range(10):
        path = tmp_path / "salara.conf"
        path.write_text(f"[general]\ndefault=710\n[token old]\nhash = {auth.hash_token('o' * 43)}\nrights = state\n")
        path.chmod(0o600)
        barrier = context.Manager().Barrier(2)
        with context.Pool(2) as pool:
            pool.map(_token_edit, [(str(path), "revoke", barrier), (str(path), "route", barrier)])
        loaded = config.load(path, environ={})
        assert loaded.tokens == {} and loaded.routes == {"5551234": "8003"}


# -- CRM URLs: secrets masked, self-loops however the host is spelled -------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://crm:hunter2@crm.example/post", "https://***@crm.example/post"),
        ("https://apikey-only@crm.example/post", "https://***@crm.example/post"),
        ("http://crm.example/in?api_key=abc123&phone=", "http://crm.example/in?api_key=***&phone="),
        ("http://crm.example/in?token=t0k&x=1&Secret=s&key=k&password=p", "http://crm.example/in?token=***&x=1&Secret=***&key=***&password=***"),
        ("http://crm.example/in?access_token=t;sig=s", "http://crm.example/in?access_token=***;sig=***"),
        ("http://u:p@crm.example/?phone=", "http://***@crm.example/?phone="),
        ("http://crm.example/call_center/incoming_call/check_is_org_only?phone=", None),
        ("http://crm.example/a@b", None),  # an @ in the path is not userinfo
    ],
)  # fmt: skip
def test_mask_url(url: str, shown: str | None) -> None:
    assert config.mask_url(url) == (shown if shown is not None else url)


def test_crm_url_secrets_never_show_in_show_config_or_errors() -> None:
    url = "https://crm:hunter2@crm.example/hook?api_key=abc123secret&phone="
    loaded = config.load(None, environ={"SALARA_URL_DEST_URL": url, "SALARA_URL_DEST_URL_EVENT": url})
    masked = str(loaded.masked())
    assert "hunter2" not in masked and "abc123secret" not in masked and "crm.example/hook" in masked
    with pytest.raises(ConfigError) as bad:
        config.load(None, environ={"SALARA_URL_DEST_URL_EVENT": "ftp://crm:hunter2@crm.example/?token=abc123secret"})
    assert "hunter2" not in str(bad.value) and "abc123secret" not in str(bad.value)


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("localhost.", "localhost"),
        ("LocalHost", "localhost"),
        ("[::FFFF:127.0.0.1]", "127.0.0.1"),
        ("[0:0::1]", "::1"),
        ("crm.example.", "crm.example"),
        ("deadbeef", "deadbeef"),  # a name, not a number
    ],
)
def test_hosts_are_normalised_as_the_resolver_reads_them(host: str, normal: str) -> None:
    assert config.normalise_host(host) == normal


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0", "0x7f.1", "localhost.", "127.0.0.1.", "[::ffff:7f00:1]"])
def test_the_self_loop_check_sees_through_other_spellings_of_loopback(host: str) -> None:
    environ = {"SALARA_URL_REST_SERVER": "127.0.0.1:5058", "SALARA_URL_DEST_URL_EVENT": f"http://{host}:5058/post"}
    with pytest.raises(ConfigError, match=r"\[url\] dest_url_event: points at salara's own API"):
        config.load(None, environ=environ)
    environ["SALARA_URL_DEST_URL_EVENT"] = f"http://{host}:5059/post"
    assert config.load(None, environ=environ).url.dest_url_event.endswith(":5059/post")


# -- [api] variable_prefix -------------------------------------------------------------


def test_variable_prefix_defaults_to_crm_and_refuses_asterisks_own_names() -> None:
    assert config.load(None, environ={}).api.variable_prefix == "CRM_"
    assert config.load(None, environ={"SALARA_API_VARIABLE_PREFIX": "ACME_"}).api.variable_prefix == "ACME_"
    for bad in ("", "_X", "__", "BRIDGE", "TRANSFER_", "A-B", "X" * 40):
        with pytest.raises(ConfigError, match=r"\[api\] variable_prefix"):
            config.load(None, environ={"SALARA_API_VARIABLE_PREFIX": bad})


def test_the_delivery_warning_masks_the_crm_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from salara.crm.answers import Verdict
    from salara.crm.delivery import DeliveryWorker
    from salara.store.records import Claimed
    from salara.store.sqlite import Outbox

    outbox = Outbox(tmp_path / "outbox.db", max_rows=10)
    try:
        worker = DeliveryWorker(outbox, "https://crm:hunter2@crm.example/hook?token=abc123secret")
        with caplog.at_level("DEBUG", logger="salara.crm.delivery"):
            for status in (500, 500, 410, 200):
                verdict = Verdict(status, status == 200, "" if status == 200 else f"HTTP {status}")
                worker.outcomes.result(Claimed(1, "e1", "c1", b"{}", 0), 0.0, verdict, "")
        assert "did not take event" in caplog.text and "crm.example/hook" in caplog.text
        assert "hunter2" not in caplog.text and "abc123secret" not in caplog.text
    finally:
        outbox.close()


def test_send_post_errors_mask_the_crm_url(tmp_path: Path) -> None:
    import socket

    from click.testing import CliRunner

    from salara.cli import main

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "salara.conf"
    path.write_text("[general]\ncurlopt_timeout=2\n")
    path.chmod(0o600)
    url = f"http://crm:hunter2@127.0.0.1:{port}/post?api_key=abc123secret"
    result = CliRunner().invoke(main, ["-c", str(path), "send", "post", "--url", url])
    assert result.exit_code != 0 and "127.0.0.1" in result.output
    assert "hunter2" not in result.output and "abc123secret" not in result.output
