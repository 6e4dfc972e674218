"""The asyncio AMI client against a tiny AMI peer written here (127.0.0.1, port 0).

The peer greets, takes any login (answering with ``FullyBooted`` as
Asterisk does), answers ``Ping`` and, for ``CoreShowChannels``, starts a
list (``EventList: start``) and streams its items without ever sending the
closing ``EventList: Complete``. It answers ``Command`` the pre-14 way,
``Response: Follows``, with a body that never reaches ``--END COMMAND--``,
and goes on sending events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine

import pytest

from salara.ami import client as client_module
from salara.ami.client import AMIClient, AMISettings
from salara.ami.protocol import AMIConnection
from salara.errors import AMIError, AMIListOverflow, AMITimeout, AMIUnavailable

WAIT_S = 5.0
ITEM_INTERVAL_S = 0.002


class FakeAMI:
    """Asterisk's side of the exchange, as much of it as these tests need."""

    def __init__(self) -> None:
        self.items_sent = 0
        self.actions: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                headers = dict(line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line)
                name, action_id = headers["Action"], headers["ActionID"]
                self.actions.append(name)
                head = f"ActionID: {action_id}\r\n"
                if name == "Login":
                    writer.write(
                        f"Response: Success\r\n{head}Message: Authentication accepted\r\n\r\n"
                        "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n".encode()
                    )
                elif name == "Ping":
                    writer.write(f"Response: Success\r\n{head}Ping: Pong\r\n\r\n".encode())
                elif name == "CoreShowChannels":
                    writer.write(
                        f"Response: Success\r\n{head}EventList: start\r\nMessage: Channels will follow\r\n\r\n".encode()
                    )
                    self._spawn(self._stream_items(writer, action_id))
                elif name == "Command":
                    writer.write(f"Response: Follows\r\nPrivilege: Command\r\n{head}first output line\n".encode())
                    self._spawn(self._stream_events(writer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stream_events(self, writer: asyncio.StreamWriter) -> None:
        """Events, one every ITEM_INTERVAL_S * 10, as Asterisk goes on sending them."""
        while not writer.is_closing():
            writer.write(f"Event: Newexten\r\nChannel: PJSIP/8001-{self.items_sent:08x}\r\n\r\n".encode())
            self.items_sent += 1
            await asyncio.sleep(ITEM_INTERVAL_S * 10)

    async def _stream_items(self, writer: asyncio.StreamWriter, action_id: str) -> None:
        """List items for ``action_id``, one every ITEM_INTERVAL_S, and never the Complete event."""
        while not writer.is_closing():
            number = self.items_sent
            writer.write(
                f"Event: CoreShowChannel\r\nActionID: {action_id}\r\nChannel: PJSIP/8001-{number:08x}\r\n"
                f"Uniqueid: 1700000000.{number}\r\nChannelState: 6\r\nApplication: Dial\r\n\r\n".encode()
            )
            self.items_sent += 1
            await asyncio.sleep(ITEM_INTERVAL_S)


@pytest.fixture
async def fake_ami(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FakeAMI, AMIClient]]:
    """The peer and a client logged in to it; ``indirect`` parameters are caps for the client's AMIConnection."""
    caps = getattr(request, "param", {})
    monkeypatch.setattr(client_module, "AMIConnection", functools.partial(AMIConnection, **caps))
    peer = FakeAMI()
    port = await peer.start()
    settings = AMISettings(port=port, auth="plain", ping_interval_s=60, action_timeout_s=2, reconnect_min_s=0.05)
    client = AMIClient(settings)
    runner = asyncio.create_task(client.run())
    try:
        await client.wait_ready(WAIT_S)
        yield peer, client
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await peer.close()


def connection(client: AMIClient) -> AMIConnection:
    conn = client._conn
    assert conn is not None
    return conn


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def listed_items(conn: AMIConnection) -> int:
    return sum(items for items, _ in conn.open_lists().values())


async def assert_released_while_items_keep_coming(peer: FakeAMI, conn: AMIConnection) -> None:
    assert conn.open_lists() == {}
    sent = peer.items_sent
    await until(lambda: peer.items_sent >= sent + 50)  # the late items arrive and are dropped
    assert conn.open_lists() == {}


# -- lists that end without their Complete -------------------------------------


async def test_a_list_that_times_out_is_forgotten_and_its_late_items_dropped(
    fake_ami: tuple[FakeAMI, AMIClient],
) -> None:
    peer, client = fake_ami
    conn = connection(client)
    seen: list[str] = []
    client.add_event_listener(lambda event: seen.append(event.name))
    pending = asyncio.create_task(client.action("CoreShowChannels", timeout_s=0.5))
    await until(lambda: listed_items(conn) >= 20)
    ((items, size),) = conn.open_lists().values()
    assert items >= 20 and size >= items * len("Event: CoreShowChannel\r\n")
    with pytest.raises(AMITimeout, match="CoreShowChannels"):
        await pending
    await assert_released_while_items_keep_coming(peer, conn)
    assert "CoreShowChannel" not in seen  # an abandoned answer's items are no events
    assert (await client.action("Ping"))["Ping"] == "Pong"  # the link goes on


async def test_a_cancelled_list_action_is_forgotten(fake_ami: tuple[FakeAMI, AMIClient]) -> None:
    peer, client = fake_ami
    conn = connection(client)
    pending = asyncio.create_task(client.action("CoreShowChannels", timeout_s=30))
    await until(lambda: listed_items(conn) >= 20)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await assert_released_while_items_keep_coming(peer, conn)


@pytest.mark.parametrize("fake_ami", [{"max_list_items": 20}], indirect=True)
async def test_a_list_over_its_cap_fails_its_action_at_once_and_the_link_goes_on(
    fake_ami: tuple[FakeAMI, AMIClient],
) -> None:
    peer, client = fake_ami
    conn = connection(client)
    started = time.monotonic()
    with pytest.raises(AMIListOverflow, match="over 20 items") as caught:
        await client.action("CoreShowChannels", timeout_s=30)
    assert isinstance(caught.value, AMIError)  # callers catching AMIError still do
    assert time.monotonic() - started < 10  # the cap, not the 30 s timeout
    await assert_released_while_items_keep_coming(peer, conn)
    assert (await client.action("Ping"))["Ping"] == "Pong"


async def test_a_login_without_answer_is_an_ami_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.read()  # reads the Login, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AMIClient(AMISettings(port=port, auth="plain", action_timeout_s=0.2, reconnect_min_s=0.05))
    runner = asyncio.create_task(client.run())
    try:
        await until(lambda: client.last_error is not None)
        assert client.last_error is not None and client.last_error.startswith("AMITimeout: Login: no answer")
        assert not client.ready
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        server.close()
        await server.wait_closed()


# -- an old Command answer whose body never ends ---------------------------------


async def test_a_follows_body_that_never_ends_drops_the_link_instead_of_stalling_events(
    fake_ami: tuple[FakeAMI, AMIClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "FOLLOWS_BODY_TIMEOUT_S", 0.3, raising=False)
    peer, client = fake_ami
    states: list[bool] = []
    client.add_state_listener(states.append)
    started = time.monotonic()
    with pytest.raises(AMIUnavailable):
        # The action's own timeout (30 s) is not what ends it: the events behind the body must not wait that long.
        await asyncio.wait_for(client.command("core show channels", timeout_s=30), WAIT_S)
    assert time.monotonic() - started < 3
    await until(lambda: client.last_error is not None)
    assert client.last_error is not None and "--END COMMAND--" in client.last_error
    await client.wait_ready(WAIT_S)  # reconnected: the stream flows again
    assert states[:2] == [False, True]
    assert peer.actions.count("Login") == 2
