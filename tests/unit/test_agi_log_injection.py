"""FastAGI requests and the routing script never put a raw control character in a log line.

A percent-encoded ``%0a`` in the script path, a CR in ``agi_callerid``, an
escape sequence in ``agi_channel``, an AMI or CRM error with CR/LF: each log
message shows them escaped (:func:`salara.logsafe.escape`). Real sockets, the
router of ``test_router_agi``'s setup.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from salara.agi.server import AGIServer, AGISession
from salara.crm.lookup import LookupFailed
from salara.errors import AMIError
from salara.pbx import ExtensionInfo
from tests.unit.test_router_agi import CHANNEL, Setup, fastagi_call, variable_block
from tests.unit.test_router_agi import setup as setup  # the fixture

CONTROLS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
FORGED = "2026-12-01 10:15:00,000 ERROR salara.app: forged"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith("salara")]


def assert_clean(caplog: pytest.LogCaptureFixture) -> str:
    """Every salara log message is one line without control characters; returns them joined."""
    found = messages(caplog)
    assert found, "something was logged"
    dirty = [message for message in found if CONTROLS & set(message)]
    assert dirty == []
    return "\n".join(found)


def block(**values: str) -> bytes:
    lines = {
        "network": "yes",
        "network_script": "route",
        "request": "agi://127.0.0.1/route",
        "channel": CHANNEL,
        "uniqueid": "1795962339.39",
        "callerid": "5552001",
        "context": "phones",
        "extension": "5100",
        "priority": "1",
        **values,
    }
    return "".join(f"agi_{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"


async def test_the_servers_request_line_shows_a_decoded_newline_and_a_cr_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(session: AGISession) -> None:
        return None

    async with AGIServer(handler, "127.0.0.1", 0) as server:
        with caplog.at_level(logging.INFO, logger="salara"):
            data = block(
                network_script=f"route%0a{FORGED}%0d%1b[2J%e2%80%a8",
                callerid=f"5552001\r{FORGED}\x85",
                channel="PJSIP/8001\x1b]0;owned\x07-00000001",
                uniqueid="1.1\x0b",
            )
            await fastagi_call(server, data)
            await asyncio.sleep(0.05)
    text = assert_clean(caplog)
    assert f"route\\n{FORGED}\\r\\x1b[2J\\u2028" in text
    assert f"callerid=5552001\\r{FORGED}\\x85" in text
    assert "channel=PJSIP/8001\\x1b]0;owned\\x07-00000001" in text


async def test_the_servers_warnings_about_a_broken_session_are_escaped(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(session: AGISession) -> None:
        await session.command("NOOP")  # the peer answers with a line no AGI reply looks like

    async with AGIServer(handler, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        with caplog.at_level(logging.INFO, logger="salara"):
            writer.write(block(channel="Local/x\r;2"))
            await reader.readline()
            writer.write(f"oops\u2028{FORGED}\r\x1b[31m\n".encode())
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
    text = assert_clean(caplog)
    assert "Local/x\\r;2" in text


async def test_an_unknown_script_is_logged_and_told_to_asterisk_escaped(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="salara"):
        commands = await fastagi_call(setup.server, block(network_script=f"rout%0a{FORGED}%1b"))
    assert commands == [f'VERBOSE "salara: unknown script rout\\\\n{FORGED}\\\\x1b" 1']
    text = assert_clean(caplog)
    assert f"rout\\n{FORGED}\\x1b" in text


async def test_a_refused_request_is_logged_escaped(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    setup.synced()
    setup.newchannel()
    with caplog.at_level(logging.INFO, logger="salara"):
        commands = await fastagi_call(setup.server, variable_block(caller=f"5552001\r{FORGED}"))
    assert commands == []
    text = assert_clean(caplog)
    assert f"5552001\\r{FORGED}" in text


async def test_the_route_line_shows_the_caller_and_the_crms_error_escaped(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(caller: str) -> str:
        raise LookupFailed(f"HTTP 500: oops\r\n{FORGED}\x1b[0m")

    setup.crm.lookup = failing  # type: ignore[method-assign]
    caller = f"555\r{FORGED}"
    # AMI cannot vouch: routed untracked, so the forged caller reaches the route line.
    with caplog.at_level(logging.INFO, logger="salara"):
        commands = await fastagi_call(setup.server, variable_block(caller=caller, channel=f"Local/x\x1b]2;{FORGED}"))
    assert commands[0] == "SET VARIABLE SALARA_ROUTE 710"
    text = assert_clean(caplog)
    assert f"route 555\\r{FORGED} -> 710 via default" in text
    assert f"CRM: HTTP 500: oops\\r\\n{FORGED}\\x1b[0m" in text
    assert f"Local/x\\x1b]2;{FORGED}" in text


async def test_an_ami_error_on_an_extension_state_is_logged_escaped(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    async def refusing(exten: str, context: str) -> ExtensionInfo:
        raise AMIError(f"Asterisk said\r\n{FORGED}")

    setup.pbx.extension_state = refusing  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="salara"):
        await fastagi_call(setup.server, variable_block())
    text = assert_clean(caplog)
    assert f"Asterisk said\\r\\n{FORGED}" in text
