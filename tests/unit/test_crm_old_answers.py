"""CRMs written for the old C module: answers without a status line, and connections reset unanswered.

The old module never read the CRM's answer; its sample CRM prints a bare
``{"result":0}`` and closes. Real raw TCP servers on 127.0.0.1, the real
outbox and delivery worker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from salara.store.sqlite import Outbox
from tests.unit.crm_server import add, fast_worker, running, until


class RawCRM:
    """Reads one request per connection, notes the event's name, then answers ``reply`` (or resets)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        """Bytes to write before closing; None: reset the connection without a byte."""
        self.names: list[str] = []
        self.server: asyncio.Server | None = None
        self.reset_first = 0
        """How many requests to reset before answering ``reply``."""

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/events"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:"))
            name = json.loads(await reader.readexactly(length))["event"]
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if self.reset_first > 0 or self.reply is None:
            self.reset_first -= 1
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, no FIN
            writer.transport.abort()
            self.names.append(f"reset:{name}")
            return
        self.names.append(name)
        writer.write(self.reply)
        await writer.drain()
        writer.close()


@pytest.fixture
async def bare_crm() -> AsyncIterator[RawCRM]:
    crm = RawCRM(b'{"result":0}')
    crm.server = await asyncio.start_server(crm.handle, "127.0.0.1", 0)
    yield crm
    crm.server.close()
    await crm.server.wait_closed()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db", max_rows=1000) as box:
        yield box


async def test_a_bare_json_answer_without_a_status_line_delivers_each_event_once(
    bare_crm: RawCRM, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    worker = fast_worker(outbox, bare_crm.url, concurrency=4)
    names = [f"A{n}" for n in range(1, 6)] + [f"B{n}" for n in range(1, 6)]
    with caplog.at_level("WARNING", logger="salara.crm.delivery"):
        async with running(worker):
            add(outbox, worker, *names)
            await until(lambda: worker.stats.delivered == len(names), "every event delivered")
            await asyncio.sleep(0.2)  # nothing more comes
    assert sorted(bare_crm.names) == sorted(names)  # each exactly once
    assert [n for n in bare_crm.names if n.startswith("A")] == names[:5]  # in call order
    assert worker.stats.retried == 0
    assert caplog.text.count("without an HTTP status line") == 1  # once per endpoint
    assert outbox.counts().delivered == len(names)


async def test_an_answer_without_a_status_line_that_is_no_json_object_is_retried(outbox: Outbox) -> None:
    crm = RawCRM(b"OK\n")
    crm.server = await asyncio.start_server(crm.handle, "127.0.0.1", 0)
    try:
        worker = fast_worker(outbox, crm.url, concurrency=1)
        async with running(worker):
            (event_id,) = add(outbox, worker, "A1").values()
            await until(lambda: len(outbox.attempts(event_id)) >= 2, "two attempts")
        assert worker.stats.delivered == 0
        assert "without an HTTP status line: OK" in (worker.stats.last_error or "")
    finally:
        crm.server.close()


async def test_a_reset_without_an_answer_gets_the_event_again_later(outbox: Outbox) -> None:
    crm = RawCRM(b'{"result":0}')
    crm.reset_first = 2
    crm.server = await asyncio.start_server(crm.handle, "127.0.0.1", 0)
    try:
        worker = fast_worker(outbox, crm.url, concurrency=1)
        async with running(worker):
            add(outbox, worker, "A1", "A2")
            await until(lambda: worker.stats.delivered == 2, "both delivered")
        assert crm.names == ["reset:A1", "reset:A1", "A1", "A2"]
        assert worker.stats.retried == 2 and "ConnectionResetError" in (worker.stats.last_error or "")
    finally:
        crm.server.close()
