"""Routing destinations from the config are held to the rule of the CRM's answer (salara.fields.extension)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from salara import config, fields
from salara.cli import main
from salara.crm.lookup import CrmLookup, LookupFailed
from salara.errors import ConfigError
from salara.routing.table import RouteTable

SPECIAL = ["h", "i", "t", "s", "o", "a", "T", "e"]
"""Asterisk's special extensions: a call sent to one runs the context's handler of that event."""
BAD = ["9001,2", "${SHELL(id)}", "8001&PJSIP/evil", "_9XX", "9" * 80, "80 01", *SPECIAL]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("value", SPECIAL)
def test_the_shared_rule_refuses_asterisks_special_extensions(value: str) -> None:
    with pytest.raises(fields.FieldError, match="special extension"):
        fields.extension("exten", value)


@pytest.mark.parametrize("value", ["8001", "S", "hh", "ext", "+4930123", "*97", "9" * 79])
def test_the_shared_rule_still_takes_numbers_and_names(value: str) -> None:
    assert fields.extension("exten", value) == value


@pytest.fixture
async def crm_answering() -> AsyncIterator[list[str]]:
    """A CRM on 127.0.0.1 whose routing answer names ``answers[0]``; yields the list and its URL last."""
    answers: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"manager": answers[0]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    answers.append("")
    answers.append(f"http://127.0.0.1:{runner.addresses[0][1]}/lookup?phone=")
    yield answers
    await runner.cleanup()


@pytest.mark.parametrize("value", ["s", "h", "T"])
async def test_the_crms_answer_may_not_name_a_special_extension(crm_answering: list[str], value: str) -> None:
    crm_answering[0] = value
    async with aiohttp.ClientSession() as session:
        with pytest.raises(LookupFailed, match="special extension") as caught:
            await CrmLookup(session, crm_answering[-1], "manager").lookup("5551")
    assert caught.value.definitive


@pytest.mark.parametrize("value", BAD)
def test_route_set_refuses_what_the_crms_answer_may_not_name(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "salara.conf", "[general]\ndefault=710\n[route]\n100:200\n")
    before = path.read_text()
    result = CliRunner().invoke(main, ["-c", str(path), "route", "set", "5551", value])
    assert result.exit_code != 0
    assert "[route] 5551" in result.output
    assert path.read_text() == before
    with pytest.raises(ConfigError):
        config.save_route(path, "5551", value)


def test_route_set_still_takes_a_destination(tmp_path: Path) -> None:
    path = write(tmp_path / "salara.conf", "[general]\ndefault=710\n")
    config.save_route(path, "5551", "8001")
    assert config.load(path, environ={}).routes == {"5551": "8001"}


@pytest.mark.parametrize("value", BAD)
def test_serve_warns_naming_the_line_and_ignores_a_bad_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    path = write(tmp_path / "salara.conf", f"[general]\ndefault_context=phones\ndefault = {value}\n")
    with caplog.at_level(logging.WARNING, "salara.config"):
        loaded = config.load(path, environ={})
    assert loaded.general.default == ""
    assert loaded.general.default_context == "phones"
    assert f"{path}:3: [general] default" in caplog.text


@pytest.mark.parametrize("value", BAD)
def test_serve_warns_naming_the_line_and_ignores_a_bad_route(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    path = write(tmp_path / "salara.conf", f"[general]\ndefault=710\n[route]\n5550001:8001\n5550002:{value}\n")
    with caplog.at_level(logging.WARNING, "salara.config"):
        loaded = config.load(path, environ={})
    assert loaded.routes == {"5550001": "8001"}
    assert loaded.general.default == "710"
    assert f"{path}:5: [route] 5550002" in caplog.text


def test_a_bad_default_from_the_environment_is_ignored_naming_the_variable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "salara.config"):
        loaded = config.load(None, environ={"SALARA_GENERAL_DEFAULT": "710&Local/x"})
    assert loaded.general.default == ""
    assert "SALARA_GENERAL_DEFAULT" in caplog.text


def test_check_reports_each_bad_destination_as_an_error_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "salara.conf", "[general]\ndefault=9001,2\n[route]\n5550001:8001\n5550002:s\n")
    result = CliRunner().invoke(main, ["-c", str(path), "check"], env={"SALARA_GENERAL_DEFAULT": None})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:2: [general] default: ")
    assert lines[1].startswith(f"{path}:5: [route] 5550002: ") and "special extension" in lines[1]


def test_the_route_table_re_read_on_change_drops_bad_entries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "salara.conf", "[route]\n5550001:8001\n")
    table = RouteTable(path, dict(config.load(path, environ={}).routes))
    path.write_text("[route]\n5550001:8001\n5550002:8001&PJSIP/evil\n5550003:h\n")
    os.utime(path, ns=(1, 1))
    with caplog.at_level(logging.WARNING, "salara.config"):
        assert table.current() == {"5550001": "8001"}
    assert f"{path}:3: [route] 5550002" in caplog.text and f"{path}:4: [route] 5550003" in caplog.text
