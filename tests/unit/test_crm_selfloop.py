"""Event delivery never POSTs to salara's own API: the address is checked when the connection is made.

The config refuses a ``dest_url_event`` naming the API's own host literally;
a name (``localhost``, the machine's hostname) or another address of the
machine when the API listens on every address gets through to here, where
the address each connection goes to is compared with the API's listen
address and port (:class:`~salara.crm.client.SelfLoopGuard`). A real HTTP
server on the port plays salara's API; it must never be sent a request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from salara.config.values import HostPort
from salara.crm.client import SelfLoopGuard
from salara.crm.delivery import DeliveryWorker
from salara.crm.testpost import send_test_post
from salara.store.sqlite import Outbox
from tests.unit.crm_server import RecordingCRM, add, running, until


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.fixture
async def api() -> AsyncIterator[RecordingCRM]:
    """The port salara's API is on: whatever answers there must never be posted to."""
    server = RecordingCRM()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db", max_rows=1000) as box:
        yield box


def worker(outbox: Outbox, url: str, listen: HostPort) -> DeliveryWorker:
    return DeliveryWorker(
        outbox,
        url,
        api_listen=listen,
        concurrency=1,
        retry_min_s=0.02,
        retry_max_s=0.1,
        timeout_s=5.0,
    )


async def assert_refused(outbox: Outbox, url: str, listen: HostPort, api: RecordingCRM) -> None:
    delivery = worker(outbox, url, listen)
    async with running(delivery):
        (event_id,) = add(outbox, delivery, "A1").values()
        await until(lambda: len(outbox.attempts(event_id)) >= 2, "two refused attempts")
    assert api.received == []  # never POSTed to itself
    (event,) = outbox.list_events()
    assert (event.id, event.status, event.last_status) == (event_id, "ready", None)  # retried later
    assert event.last_error is not None and "salara's own API" in event.last_error


async def test_a_name_for_loopback_on_the_apis_port_is_refused(
    outbox: Outbox, api: RecordingCRM, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="salara.crm"):
        await assert_refused(outbox, f"http://localhost:{api.port}/events", HostPort("127.0.0.1", api.port), api)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # said once, not at every retry
    assert f"127.0.0.1:{api.port}" in errors[0] and "[url] rest_server=127.0.0.1:" in errors[0]


async def test_loopback_is_refused_whatever_address_the_api_listens_on(outbox: Outbox, api: RecordingCRM) -> None:
    await assert_refused(outbox, f"http://127.0.0.1:{api.port}/events", HostPort("203.0.113.7", api.port), api)


async def test_the_machines_hostname_is_refused_when_the_api_listens_on_every_address(
    outbox: Outbox, api: RecordingCRM
) -> None:
    url = f"http://{socket.gethostname()}:{api.port}/events"
    try:
        await asyncio.get_running_loop().getaddrinfo(socket.gethostname(), api.port)
    except OSError:
        pytest.skip("this machine's hostname does not resolve")
    await assert_refused(outbox, url, HostPort("0.0.0.0", api.port), api)


@pytest.mark.parametrize("listen_host", ["0.0.0.0", "::", "lan"], ids=["any-v4", "any-v6", "its-own-address"])
async def test_the_machines_lan_address_is_refused(outbox: Outbox, listen_host: str) -> None:
    address = lan_address()
    if address is None:
        pytest.skip("no LAN address on this machine")
    api = RecordingCRM()
    api_server = await asyncio.start_server(api._serve, address, 0)  # the API, on the LAN address
    port = api_server.sockets[0].getsockname()[1]
    try:
        listen = HostPort(address if listen_host == "lan" else listen_host, port)
        await assert_refused(outbox, f"http://{address}:{port}/events", listen, api)
    finally:
        api_server.close()
        await api_server.wait_closed()


async def test_a_crm_on_loopback_with_another_port_gets_its_events(outbox: Outbox, api: RecordingCRM) -> None:
    crm = RecordingCRM()
    await crm.start()
    try:
        delivery = worker(outbox, crm.url, HostPort("127.0.0.1", api.port))
        async with running(delivery):
            add(outbox, delivery, "A1")
            await until(lambda: len(crm.delivered()) == 1, "the delivery")
    finally:
        await crm.stop()
    assert api.received == []


@pytest.mark.parametrize(
    ("listen", "address", "refused"),
    [
        (HostPort("127.0.0.1", 5058), "127.0.0.1", True),
        (HostPort("127.0.0.1", 5058), "127.9.9.9", True),
        (HostPort("127.0.0.1", 5058), "::1", True),
        (HostPort("127.0.0.1", 5058), "::ffff:127.0.0.1", True),
        (HostPort("127.0.0.1", 5058), "0.0.0.0", True),
        (HostPort("0.0.0.0", 5058), "::", True),
        (HostPort("203.0.113.7", 5058), "203.0.113.7", True),
        (HostPort("203.0.113.7", 5058), "203.0.113.8", False),
        (HostPort("0.0.0.0", 5058), "203.0.113.8", False),  # not an address of this machine
        (HostPort("127.0.0.1", 5058), "198.51.100.1", False),
    ],
)
def test_which_addresses_are_salaras_own_api(listen: HostPort, address: str, refused: bool) -> None:
    guard = SelfLoopGuard(listen)
    assert guard.refuses(address, 5058) is refused
    assert guard.refuses(address, 5059) is False  # another port: another service


async def test_the_test_post_is_refused_too(api: RecordingCRM) -> None:
    with pytest.raises(aiohttp.ClientConnectorError, match="salara's own API"):
        await send_test_post(f"http://localhost:{api.port}/events", b"{}", api_listen=HostPort("127.0.0.1", api.port))
    assert api.received == []


async def test_send_post_refuses_salaras_own_api(api: RecordingCRM, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from salara.cli import main

    conf = tmp_path / "salara.conf"
    conf.write_text(f"[url]\nrest_server=0.0.0.0:{api.port}\n[api]\nallow_remote_without_token=yes\n")
    conf.chmod(0o600)
    args = ["-c", str(conf), "send", "post", "--url", f"http://localhost:{api.port}/events"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 1 and "salara's own API" in result.output, result.output
    assert api.received == []
