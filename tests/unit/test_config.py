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
