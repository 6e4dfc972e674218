"""A CRM's answer never puts a raw control character in salara's log or on the operator's terminal.

A CRM (or whatever answers at its URL) refusing an event with CR/LF or
escape sequences in its body: the attempt log keeps the text as received;
the delivery worker's log line, ``salara events list`` and ``salara send
post`` show it escaped. The CRM is a raw HTTP server on 127.0.0.1 written here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from salara.cli import main
from salara.store.sqlite import Outbox
from tests.unit.crm_server import fast_worker, running, until

CONTROLS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
FORGED = "2026-12-01 10:15:00,000 ERROR salara.app: forged"
EVIL = f"no\r\n{FORGED}\x1b[2J\x1b]0;owned\x07\u2028\x9b31m"
EVIL_SHOWN = f"no\\r\\n{FORGED}\\x1b[2J\\x1b]0;owned\\x07\\u2028\\x9b31m"


class EvilCRM:
    """Answers every request ``500`` with :data:`EVIL` as its body."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                body = EVIL.encode()
                writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def crm() -> AsyncIterator[EvilCRM]:
    server = EvilCRM()
    await server.start()
    yield server
    await server.stop()


def clean(text: str) -> bool:
    return not CONTROLS & set(text)


async def test_a_refusal_is_stored_as_received_and_logged_and_listed_escaped(
    crm: EvilCRM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_rows=100) as outbox:
        worker = fast_worker(outbox, crm.url, concurrency=1)
        with caplog.at_level(logging.DEBUG, logger="salara"):
            async with running(worker):
                outbox.add([("1795962339.38\x1b[1m", '{"event":"Hangup","caller":"555\u2028\x85"}'.encode())])
                worker.notify()
                await until(lambda: crm.requests >= 2, "two refused attempts")
        (event,) = outbox.list_events()
        assert event.last_error == f"HTTP 500: {EVIL}"  # stored as received
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("salara")]
    refusals = [message for message in logged if "did not take event" in message]
    assert refusals and all(clean(message) for message in refusals)
    assert EVIL_SHOWN in refusals[0]

    conf = tmp_path / "salara.conf"
    conf.write_text(f"[outbox]\npath={path}\nmax_rows=100\n")
    conf.chmod(0o600)
    listed = CliRunner().invoke(main, ["-c", str(conf), "events", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.removesuffix("\n").split("\n")
    assert len(lines) == 2 and all(clean(line) for line in lines), lines
    assert "call=1795962339.38\\x1b[1m" in lines[1]
    assert f"last=HTTP 500: {EVIL_SHOWN} " in lines[1]  # the CRM's answer, escaped
    assert '"caller":"555\\u2028\\x85"' in lines[1]


async def test_send_post_shows_the_answer_escaped(crm: EvilCRM, tmp_path: Path) -> None:
    conf = tmp_path / "salara.conf"
    conf.write_text("[general]\ncurlopt_timeout=3\n")
    conf.chmod(0o600)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["-c", str(conf), "send", "post", "--url", crm.url])
    assert result.exit_code == 0, result.output
    assert result.output == f"HTTP 500 {EVIL_SHOWN}\n"
