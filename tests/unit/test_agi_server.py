"""The asyncio FastAGI server on real sockets (127.0.0.1, port 0), with a fake Asterisk written here.

The fake Asterisk replays tests/transcripts/fastagi.txt: it writes the recorded
RECV blocks (variable block, replies, HANGUP) and reads a line wherever the
recorded AGI script sent a command.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from salara.agi.server import AGIServer, Handler
from salara.agi.session import AGISession
from salara.errors import AGICommandError, AGIHangup, LocalProtocolError
from tests.transcript import load, received

TRANSCRIPT = "fastagi.txt"
LOGGER = "salara.agi.server"
WAIT_S = 5.0

MakeServer = Callable[..., Awaitable[AGIServer]]


def variable_block(conn_id: str) -> bytes:
    stream = b"".join(received(TRANSCRIPT, conn_id))
    return stream[: stream.index(b"\n\n") + 2]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    servers: list[AGIServer] = []

    async def make(handler: Handler, **options: float) -> AGIServer:
        server = AGIServer(handler, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


async def connect(server: AGIServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """What the server still sends before it closes (b"" for a bare close)."""
    try:
        return await asyncio.wait_for(reader.read(), WAIT_S)
    except ConnectionResetError:
        return b""


async def replay(server: AGIServer, conn_id: str) -> list[bytes]:
    """Play Asterisk's side of one recorded connection; return the command lines received."""
    reader, writer = await connect(server)
    lines = []
    for block in load(TRANSCRIPT):
        if block.conn != conn_id:
            continue
        if block.sent:
            lines.append(await asyncio.wait_for(reader.readline(), WAIT_S))
        else:
            writer.write(block.data)
            await writer.drain()
    assert await read_eof(reader) == b""  # the server hung up after the handler returned
    writer.close()
    return lines


def recorded_commands(conn_id: str) -> list[list[str]]:
    return [shlex.split(b.data.decode()) for b in load(TRANSCRIPT) if b.sent and b.conn == conn_id]


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll server state (session count, log text) that offers nothing to await."""
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# -- the recorded sessions ---------------------------------------------------------


async def test_replays_the_recorded_sessions(make_server: MakeServer) -> None:
    seen: dict[str, list[object]] = {}
    after_hangup: list[tuple[str | None, bool]] = []

    async def handler(session: AGISession) -> None:
        mode = session.request.args[1]
        got = seen.setdefault(mode, [session.request.channel, session.request.network_script])
        if mode == "basic":
            got.append(await session.get_variable("CRMID"))
            got.append(await session.get_variable("NOSUCHVAR"))
            await session.set_variable("FROM_AGI", "routed by agi")
            got.append(await session.get_variable("FROM_AGI"))
            got.append(await session.get_full_variable("${CALLERID(num)}/${EXTEN}/${CHANNEL}"))
            got.append((await session.command("CHANNEL STATUS")).result_int)
            await session.verbose("hello from fastagi", 1)
            got.append((await session.exec("NoOp", "exec from agi")).result)
            for name in ("NO SUCH COMMAND", "GET VARIABLE", "SET VARIABLE"):
                try:
                    await session.command(name)
                except AGICommandError as exc:
                    got.append((exc.code, exc.command, len(exc.usage)))
        elif mode == "goto":
            await session.set_variable("WAITSECS", 1)
            got.append((await session.exec("Goto", "sim", "9001", "1")).result)
        else:
            for _ in range(3):
                after_hangup.append((await session.get_variable("CRMID"), session.hungup))

    server = await make_server(handler)
    sent = await asyncio.gather(*(replay(server, conn_id) for conn_id in ("1", "2", "3")))

    for conn_id, lines in zip(("1", "2", "3"), sent, strict=True):
        assert [shlex.split(line.decode()) for line in lines] == recorded_commands(conn_id)
    assert sent[1] == [b"SET VARIABLE WAITSECS 1\n", b"EXEC Goto sim,9001,1\n"]
    assert seen["basic"] == [
        "Local/5000@phones-0000000e;2",
        "route",
        "agi-basic",
        None,
        "routed by agi",
        "5555000/5000/Local/5000@phones-0000000e;2",
        6,
        "0",
        (510, "NO SUCH COMMAND", 0),
        (520, "GET VARIABLE", 2),
        (520, "SET VARIABLE", 1),
    ]
    assert seen["goto"] == ["Local/5000@phones-0000000f;2", "route", "0"]
    # HANGUP came between replies (when it is read depends on timing); the replies stayed paired.
    assert seen["hangup"] == ["Local/5000@phones-00000010;2", "route"]
    assert [value for value, _ in after_hangup] == ["agi-hangup"] * 3
    assert after_hangup[-1] == ("agi-hangup", True)
    assert server.active_sessions == 0


# -- broken and silent peers -------------------------------------------------------


async def test_half_block_then_close_does_not_disturb_a_concurrent_session(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    release = asyncio.Event()
    results: list[str | None] = []

    async def handler(session: AGISession) -> None:
        await release.wait()
        results.append(await session.get_variable("CRMID"))

    server = await make_server(handler)
    good_reader, good_writer = await connect(server)
    good_writer.write(variable_block("1"))
    await wait_until(lambda: server.active_sessions == 1)

    _, bad_writer = await connect(server)
    bad_writer.write(variable_block("2")[:200])
    await bad_writer.drain()
    bad_writer.close()
    await wait_until(lambda: "disconnected before the end of its variable block" in caplog.text)
    await wait_until(lambda: server.active_sessions == 1)

    cpu_before = time.process_time()
    await asyncio.sleep(0.5)
    assert time.process_time() - cpu_before < 0.2  # nothing spins on the closed socket

    release.set()
    assert await asyncio.wait_for(good_reader.readline(), WAIT_S) == b"GET VARIABLE CRMID\n"
    good_writer.write(b"200 result=1 (agi-basic)\n")
    assert await read_eof(good_reader) == b""
    assert results == ["agi-basic"]
    await wait_until(lambda: server.active_sessions == 0)
    good_writer.close()


@pytest.mark.parametrize("first_bytes", [b"", b"agi_network: yes\n"])
async def test_peer_without_a_variable_block_is_dropped(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture, first_bytes: bytes
) -> None:
    calls: list[AGISession] = []

    async def handler(session: AGISession) -> None:
        calls.append(session)

    server = await make_server(handler, header_timeout_s=0.2)
    reader, writer = await connect(server)
    writer.write(first_bytes)
    started = time.monotonic()
    assert await read_eof(reader) == b""
    assert 0.15 < time.monotonic() - started < 2.0
    assert calls == []
    assert "no variable block within 0.2 s" in caplog.text
    writer.close()


async def test_endless_line_is_dropped(make_server: MakeServer, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(session: AGISession) -> None:
        raise AssertionError("not reached")

    server = await make_server(handler, max_line_bytes=1024)
    reader, writer = await connect(server)
    writer.write(b"agi_network: " + b"y" * 4096)
    assert await read_eof(reader) == b""
    assert "exceeds 1024 bytes" in caplog.text
    writer.close()


async def test_too_many_sessions_are_refused(make_server: MakeServer, caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def handler(session: AGISession) -> None:
        await release.wait()

    server = await make_server(handler, max_sessions=1)
    first_reader, first_writer = await connect(server)
    first_writer.write(variable_block("1"))
    await wait_until(lambda: server.active_sessions == 1)

    second_reader, second_writer = await connect(server)
    assert await read_eof(second_reader) == b""
    assert "refused: 1 sessions already running" in caplog.text

    release.set()
    assert await read_eof(first_reader) == b""
    await wait_until(lambda: server.active_sessions == 0)
    first_writer.close()
    second_writer.close()


async def test_idle_connections_give_way_to_a_call(make_server: MakeServer, caplog: pytest.LogCaptureFixture) -> None:
    served: list[str] = []

    async def handler(session: AGISession) -> None:
        served.append(session.request.uniqueid)

    server = await make_server(handler, max_sessions=3, header_timeout_s=30)
    idle = [await connect(server) for _ in range(3)]
    await wait_until(lambda: server.active_sessions == 3)
    reader, writer = await connect(server)
    writer.write(variable_block("1"))
    assert await read_eof(reader) == b""
    assert served == ["1795962339.39"]
    assert await read_eof(idle[0][0]) == b""  # the oldest idle connection made room
    assert server.displaced == 1 and server.refused == 0
    assert "still without its variable block, dropped for 127.0.0.1:" in caplog.text
    for _, idle_writer in idle:
        idle_writer.close()
    writer.close()


async def test_silent_connections_are_dropped_within_a_second_by_default(make_server: MakeServer) -> None:
    async def handler(session: AGISession) -> None:
        raise AssertionError("not reached")

    server = await make_server(handler)
    reader, writer = await connect(server)
    started = time.monotonic()
    assert await read_eof(reader) == b""
    assert time.monotonic() - started < 4  # header_timeout 1 s by default (it was 5 s)
    writer.close()


async def test_overload_is_logged_once_per_interval(make_server: MakeServer, caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def handler(session: AGISession) -> None:
        await release.wait()

    server = await make_server(handler, max_sessions=1)
    first_reader, first_writer = await connect(server)
    first_writer.write(variable_block("1"))
    await wait_until(lambda: server.active_sessions == 1)
    for _ in range(20):
        reader, writer = await connect(server)
        assert await read_eof(reader) == b""
        writer.close()
    assert server.refused == 20
    overload = [r for r in caplog.records if r.name == LOGGER and "sessions already running" in r.getMessage()]
    assert len(overload) == 1 and overload[0].levelno == logging.WARNING
    release.set()
    assert await read_eof(first_reader) == b""
    first_writer.close()


async def test_a_flood_of_silent_connections_logs_one_warning(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(session: AGISession) -> None:
        raise AssertionError("not reached")

    server = await make_server(handler, header_timeout_s=0.1)
    clients = [await connect(server) for _ in range(20)]
    for reader, _ in clients:
        assert await read_eof(reader) == b""
    dropped = [r for r in caplog.records if r.name == LOGGER and "no variable block" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    for _, writer in clients:
        writer.close()


# -- command outcomes ----------------------------------------------------------------


async def test_command_timeout_closes_the_session(make_server: MakeServer) -> None:
    outcome: list[BaseException] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.get_variable("CRMID")
        except AGIHangup as exc:
            outcome.append(exc)
        try:
            await session.get_variable("CRMID")
        except AGIHangup as exc:
            outcome.append(exc)

    server = await make_server(handler, command_timeout_s=0.2)
    reader, writer = await connect(server)
    writer.write(variable_block("1"))
    assert await asyncio.wait_for(reader.readline(), WAIT_S) == b"GET VARIABLE CRMID\n"
    assert await read_eof(reader) == b""  # never answered: the server gave up and closed
    assert [str(exc) for exc in outcome] == [
        "GET VARIABLE: no reply within 0.2 s; session closed",
        "GET VARIABLE: FastAGI session is closed",
    ]
    writer.close()


async def test_dead_channel_then_asterisk_closes(make_server: MakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    outcome: list[object] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.exec("Goto", "sim", "9001", "1")
        except AGICommandError as exc:
            outcome.append((exc.code, exc.dead_channel, session.hungup))
        await session.get_variable("CRMID")  # Asterisk has closed: AGIHangup, logged by the server

    server = await make_server(handler)
    reader, writer = await connect(server)
    writer.write(variable_block("3"))
    assert await asyncio.wait_for(reader.readline(), WAIT_S) == b"EXEC Goto sim,9001,1\n"
    writer.write(b"HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n")
    assert await asyncio.wait_for(reader.readline(), WAIT_S) == b"GET VARIABLE CRMID\n"
    writer.close()
    await wait_until(lambda: server.active_sessions == 0)
    assert outcome == [(511, True, True)]
    assert "session ended: GET VARIABLE: Asterisk closed the connection" in caplog.text


async def test_refused_argument_sends_nothing_and_session_goes_on(make_server: MakeServer) -> None:
    outcome: list[object] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.set_variable("CRMID", "1\nEXEC Hangup")
        except LocalProtocolError as exc:
            outcome.append(type(exc))
        outcome.append(await session.get_variable("CRMID"))

    server = await make_server(handler)
    reader, writer = await connect(server)
    writer.write(variable_block("1"))
    assert await asyncio.wait_for(reader.readline(), WAIT_S) == b"GET VARIABLE CRMID\n"
    writer.write(b"200 result=0\n")
    assert await read_eof(reader) == b""
    assert outcome == [LocalProtocolError, None]
    writer.close()


async def test_handler_exception_is_logged_and_server_goes_on(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def handler(session: AGISession) -> None:
        calls.append(session.request.uniqueid)
        if len(calls) == 1:
            raise RuntimeError("boom")

    server = await make_server(handler)
    for conn_id in ("1", "2"):
        reader, writer = await connect(server)
        writer.write(variable_block(conn_id))
        assert await read_eof(reader) == b""
        writer.close()
    assert calls == ["1795962339.39", "1795962343.41"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == LOGGER
    assert "handler failed" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


async def test_close_ends_running_sessions() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def handler(session: AGISession) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async with AGIServer(handler, "127.0.0.1", 0) as server:
        reader, writer = await connect(server)
        writer.write(variable_block("1"))
        await asyncio.wait_for(started.wait(), WAIT_S)
    assert cancelled == [True]
    assert server.active_sessions == 0
    assert await read_eof(reader) == b""
    writer.close()
