"""The config editor writes values, never lines: no value can start a section or a setting of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from salara import config
from salara.api.security import tokens as auth
from salara.cli import main
from salara.errors import ConfigError

BACKDOOR_HASH = auth.hash_token("b" * 43)
INJECTIONS = [
    f"any\n[token backdoor]\nhash = {BACKDOOR_HASH}\nrights = admin",
    f"any\r[token backdoor]\rhash = {BACKDOOR_HASH}\rrights = admin",
    f"any\r\n[token backdoor]\r\nhash = {BACKDOOR_HASH}",
    # Line ends the reader splits on besides CR and LF (str.splitlines).
    *(f"any{sep}[token backdoor]{sep}hash = {BACKDOOR_HASH}" for sep in "\v\f\x1c\x1d\x1e\x85\u2028\u2029"),
]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "salara.conf"
    path.write_text("[general]\ndefault=710\n[route]\n100:200\n")
    path.chmod(0o600)
    return path


def token_values(**changes: str) -> dict[str, str]:
    values = {"hash": auth.hash_token("t" * 43), "rights": "call", "contexts": "", "destinations": "any"}
    return values | changes


def test_the_cli_refuses_a_destinations_value_that_writes_a_second_token(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before = path.read_text()
    result = CliRunner().invoke(
        main, ["-c", str(path), "token", "create", "crm", "--rights", "call", "--destinations", INJECTIONS[0]]
    )
    assert result.exit_code != 0
    assert "[token crm] destinations" in result.output
    assert path.read_text() == before
    assert config.load(path, environ={}).tokens == {}


@pytest.mark.parametrize("value", INJECTIONS)
def test_save_token_refuses_line_breaks_in_any_value_naming_the_key(tmp_path: Path, value: str) -> None:
    path = config_file(tmp_path)
    before = path.read_text()
    with pytest.raises(ConfigError) as caught:
        config.save_token(path, "crm", token_values(destinations=value))
    assert (caught.value.section, caught.value.key) == ("token crm", "destinations")
    assert "line break" in caught.value.reason
    assert path.read_text() == before


@pytest.mark.parametrize("key", ["rights", "contexts", "rate"])
def test_every_token_value_is_checked(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.edit_token("[general]\n", "crm", token_values(**{key: "state\n[token x]"}))
    assert caught.value.key == key


@pytest.mark.parametrize("value", ["[token backdoor]", "  [token backdoor]"])
def test_a_value_may_not_start_with_a_bracket(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.edit_token("[general]\n", "crm", token_values(contexts=value))
    assert caught.value.key == "contexts"
    assert "'['" in caught.value.reason


def test_a_bracket_inside_a_value_is_kept() -> None:
    text = config.edit_token("[general]\n", "crm", token_values(destinations="^[0-9]{3,4}$"))
    assert "destinations = ^[0-9]{3,4}$\n" in text


@pytest.mark.parametrize("key", ["rights\n[token x]", "[token x]", "", "a b"])
def test_a_key_is_a_name(key: str) -> None:
    with pytest.raises(ConfigError):
        config.edit_token("[general]\n", "crm", {key: "call"})


@pytest.mark.parametrize("name", ["crm]\n[token backdoor", "crm\n", ""])
def test_a_token_name_is_checked_by_the_editor_itself(name: str) -> None:
    with pytest.raises(ConfigError):
        config.edit_token("[general]\n", name, token_values())


@pytest.mark.parametrize(
    ("caller", "called", "key"),
    [("100", "200\n[token x]", "100"), ("100", "[token x]", "100"), ("100\n[ami]", "200", None)],
)
def test_edit_route_refuses_line_breaks_and_a_leading_bracket(caller: str, called: str, key: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        config.edit_route("[route]\n", caller, called)
    assert (caught.value.section, caught.value.key) == ("route", key)


def test_clean_edits_still_land(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    config.save_token(path, "crm", token_values(destinations="^[0-9]{3,4}$ 8495"))
    config.save_route(path, "101", "201")
    loaded = config.load(path, environ={})
    assert loaded.tokens["crm"].destinations == ("^[0-9]{3,4}$", "8495")
    assert loaded.routes == {"100": "200", "101": "201"}
