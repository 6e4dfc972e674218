"""The delivery worker and the test post, against a real HTTP server on 127.0.0.1 (port 0).

The server is :class:`~tests.unit.crm_server.RecordingCRM`: it records every
request as it arrives and answers what its ``policy`` says. Waits are
bounded waits on conditions, never timing thresholds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from salara.backoff import jittered_backoff_s
from salara.crm.client import USER_AGENT
from salara.crm.delivery import DeliveryWorker
from salara.crm.signing import verify
from salara.crm.testpost import send_test_post
from salara.store.records import Counts
from salara.store.sqlite import Outbox
from tests.unit.crm_server import SECRET, RecordingCRM, Request, add, calls, fast_worker, running, until


@pytest.fixture
async def crm() -> AsyncIterator[RecordingCRM]:
    server = RecordingCRM()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db", max_rows=10_000) as box:
        yield box


def test_retry_delay_grows_with_jitter_and_is_capped() -> None:
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (500, 30.0)):
        delays = [jittered_backoff_s(failures - 1, 1.0, 30.0) for _ in range(200)]
        assert all(1.0 <= delay <= ceiling for delay in delays)
    assert len({jittered_backoff_s(4, 1.0, 30.0) for _ in range(20)}) > 1


# -- delivery ------------------------------------------------------------------


async def test_events_are_posted_signed_with_their_outbox_id(crm: RecordingCRM, outbox: Outbox) -> None:
    worker = fast_worker(outbox, crm.url, secret=SECRET, concurrency=2)
    async with running(worker):
        ids = add(outbox, worker, "A1", "B1")
        await until(lambda: len(crm.answered) == 2, "two deliveries")
        await until(lambda: outbox.counts().delivered == 2, "outcomes recorded")
    assert {r.id for r in crm.received} == set(ids.values())
    for request in crm.received:
        assert request.method == "POST" and request.path == "/events"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == USER_AGENT
        assert request.body == json.dumps({"event": request.name}).encode()
        assert request.id == ids[request.name]
        assert verify(SECRET, request.headers, request.body)
        assert not verify("whsec_" + base64.b64encode(b"wrong").decode(), request.headers, request.body)
    assert worker.stats.delivered == 2 and worker.stats.retried == 0
    assert outbox.depth() == 0


async def test_unsigned_posts_still_carry_id_and_timestamp(crm: RecordingCRM, outbox: Outbox) -> None:
    worker = fast_worker(outbox, crm.url, concurrency=1)
    async with running(worker):
        ids = add(outbox, worker, "A1")
        await until(lambda: len(crm.answered) == 1, "a delivery")
    (request,) = crm.received
    assert request.id == ids["A1"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 600
    assert "webhook-signature" not in request.headers


async def test_a_500_delays_its_call_but_not_the_others(crm: RecordingCRM, outbox: Outbox) -> None:
    async def policy(request: Request) -> int:
        # A1 fails until every event of call B has been delivered.
        if request.name == "A1" and len([r for r in crm.delivered() if r.name.startswith("B")]) < 3:
            return 500
        return 200

    crm.policy = policy
    worker = fast_worker(outbox, crm.url, concurrency=4)
    async with running(worker):
        ids = add(outbox, worker, "A1", "B1", "A2", "B2", "A3", "B3")
        await until(lambda: len(crm.delivered()) == 6, "all six delivered")
    received = calls(crm.received)
    assert received["B"] == ["B1", "B2", "B3"]  # never held up by A
    assert received["A"][-3:] == ["A1", "A2", "A3"]
    assert set(received["A"][:-3]) == {"A1"}  # only A1 was retried; A2 waited for it
    assert len(received["A"]) >= 4
    attempts = outbox.attempts(ids["A1"])
    assert [a.outcome for a in attempts][-1] == "delivered"
    assert {(a.outcome, a.http_status) for a in attempts[:-1]} == {("retry", 500)}
    assert worker.stats.retried == len(received["A"]) - 3 and worker.stats.delivered == 6


async def test_410_stops_retries_of_that_event_only(crm: RecordingCRM, outbox: Outbox) -> None:
    async def policy(request: Request) -> int:
        return 410 if request.name == "A1" else 200

    crm.policy = policy
    worker = fast_worker(outbox, crm.url, concurrency=2)
    async with running(worker):
        ids = add(outbox, worker, "A1", "A2", "B1")
        await until(lambda: len(crm.delivered()) == 2, "A2 and B1 delivered")
        await until(lambda: outbox.counts() == Counts(dead=1, delivered=2), "outcomes recorded")
    assert [r.name for r in crm.received if r.name.startswith("A")] == ["A1", "A2"]
    assert worker.stats.dead == 1 and worker.stats.retried == 0
    (dead,) = outbox.list_events(["dead"])
    assert dead.id == ids["A1"] and dead.last_status == 410


async def test_crm_down_then_back_gets_every_event_once_delivered(crm: RecordingCRM, outbox: Outbox) -> None:
    await crm.stop()  # connection refused from now on
    worker = fast_worker(outbox, crm.url, concurrency=4)
    async with running(worker):
        ids = add(outbox, worker, "A1", "B1", "A2", "C1", "B2", "A3")
        await until(lambda: worker.stats.retried >= 3, "failed attempts")
        assert crm.received == []
        assert outbox.counts().retrying >= 1
        ids |= add(outbox, worker, "C2", "D1")  # added during the outage
        await crm.start()  # same port
        await until(lambda: len(crm.delivered()) == 8, "everything delivered")
        await until(lambda: outbox.depth() == 0, "outbox drained")
    assert {r.id for r in crm.received} == set(ids.values())
    assert all(r.id == ids[r.name] for r in crm.received)
    assert calls(crm.received) == {"A": ["A1", "A2", "A3"], "B": ["B1", "B2"], "C": ["C1", "C2"], "D": ["D1"]}
    assert "ConnectionRefusedError" in (worker.stats.last_error or "")


CHILD = """
import asyncio, sys
from salara.store.sqlite import Outbox
from salara.crm.delivery import DeliveryWorker

async def main():
    outbox = Outbox(sys.argv[1], max_rows=1000)
    await DeliveryWorker(outbox, sys.argv[2], concurrency=4, retry_min_s=0.02, retry_max_s=0.1).run()

asyncio.run(main())
"""


async def test_sigkill_mid_delivery_redelivers_with_the_same_ids(crm: RecordingCRM, tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_rows=1000) as outbox:
        ids = add(outbox, None, "A1", "A2", "B1", "B2", "C1")
    hold = asyncio.Event()

    async def policy(request: Request) -> int:
        await hold.wait()  # the CRM got it but salara dies before the answer
        return 200

    crm.policy = policy
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(path), crm.url)
    try:
        await until(lambda: len(crm.received) == 3, "three events in flight")
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert sorted(r.name for r in crm.received) == ["A1", "B1", "C1"]
    await crm.drop_connections()  # the dead process's connections
    hold.set()

    with Outbox(path, max_rows=1000) as outbox:
        assert outbox.counts() == Counts(pending=5)
        worker = fast_worker(outbox, crm.url, concurrency=4)
        async with running(worker):
            await until(lambda: len(crm.delivered()) == 5, "all delivered after the restart")
            await until(lambda: outbox.depth() == 0, "outbox drained")
    assert all(r.id == ids[r.name] for r in crm.received)
    assert sorted(r.name for r in crm.received) == ["A1", "A1", "A2", "B1", "B1", "B2", "C1", "C1"]
    assert calls(crm.delivered()) == {"A": ["A1", "A2"], "B": ["B1", "B2"], "C": ["C1"]}


async def test_never_more_than_concurrency_requests_at_the_crm(crm: RecordingCRM, outbox: Outbox) -> None:
    gate = asyncio.Event()

    async def policy(request: Request) -> int:
        await gate.wait()
        return 200

    crm.policy = policy
    worker = fast_worker(outbox, crm.url, concurrency=3)
    async with running(worker):
        add(outbox, worker, *(f"{chr(ord('A') + i)}1" for i in range(12)))
        await until(lambda: crm.active == 3, "three requests in flight")
        for _ in range(20):  # give the worker every chance to send more
            worker.notify()
            await asyncio.sleep(0.01)
        assert crm.active == 3 and worker.in_flight == 3
        gate.set()
        await until(lambda: len(crm.delivered()) == 12, "all delivered")
    assert crm.max_active == 3


async def test_a_hung_crm_does_not_block_the_event_loop(crm: RecordingCRM, outbox: Outbox) -> None:
    gate = asyncio.Event()

    async def policy(request: Request) -> int:
        await gate.wait()
        return 200

    crm.policy = policy
    worker = fast_worker(outbox, crm.url, concurrency=2)
    async with running(worker):
        add(outbox, worker, "A1", "B1", "C1")
        await until(lambda: crm.active == 2, "the CRM holding two requests")
        ticks = 0
        for _ in range(10):
            add(outbox, worker, "A9", "D1")  # the producer goes on, unhindered
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 10
        assert outbox.counts().depth == 23
        gate.set()
        await until(lambda: len(crm.delivered()) == 23, "all delivered")


async def test_notify_wakes_an_idle_worker(crm: RecordingCRM, outbox: Outbox) -> None:
    # An hour between looks: only notify() can make it post within the wait.
    worker = fast_worker(outbox, crm.url, concurrency=2, idle_poll_s=3600.0)
    async with running(worker):
        for _ in range(10):
            await asyncio.sleep(0)  # let it go to sleep on an empty outbox
        assert crm.received == []
        add(outbox, worker, "A1")
        await until(lambda: len(crm.answered) == 1, "the notified delivery")


async def test_cancelling_the_worker_puts_in_flight_events_back(crm: RecordingCRM, outbox: Outbox) -> None:
    gate = asyncio.Event()

    async def policy(request: Request) -> int:
        await gate.wait()
        return 200

    crm.policy = policy
    worker = fast_worker(outbox, crm.url, concurrency=2)
    async with running(worker):
        add(outbox, worker, "A1", "B1")
        await until(lambda: crm.active == 2, "two in flight")
    assert outbox.counts() == Counts(pending=2)
    gate.set()


async def test_timeouts_are_retried(crm: RecordingCRM, outbox: Outbox) -> None:
    slow_once = asyncio.Event()

    async def policy(request: Request) -> int:
        if not slow_once.is_set():
            slow_once.set()
            await asyncio.sleep(3600)  # never answers in time
        return 200

    crm.policy = policy
    worker = DeliveryWorker(outbox, crm.url, concurrency=1, retry_min_s=0.02, retry_max_s=0.1, timeout_s=0.2)
    async with running(worker):
        ids = add(outbox, worker, "A1")
        await until(lambda: len(crm.answered) == 1, "the retry delivered")
    first = outbox.attempts(ids["A1"])[0]
    assert (first.outcome, first.http_status) == ("retry", None)
    assert first.error is not None and "no answer within" in first.error


async def test_send_test_post(crm: RecordingCRM) -> None:
    status, text = await send_test_post(crm.url, b'{"event":"Test"}', secret=SECRET)
    assert (status, text) == (200, '{"result":0}')
    (request,) = crm.received
    assert request.body == b'{"event":"Test"}' and len(request.id) == 32
    assert verify(SECRET, request.headers, request.body)
    await crm.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        await send_test_post(crm.url, b"{}")


async def test_redirects_are_not_followed(crm: RecordingCRM, outbox: Outbox) -> None:
    async def policy(request: Request) -> int:
        return 307 if request.path == "/events" else 200

    crm.policy = policy
    crm.reply_headers = b"Location: /elsewhere\r\n"
    worker = fast_worker(outbox, crm.url, concurrency=1)
    async with running(worker):
        ids = add(outbox, worker, "A1")
        await until(lambda: worker.stats.retried >= 2, "two refused attempts")
    assert {request.path for request in crm.received} == {"/events"}
    assert outbox.attempts(ids["A1"])[0].http_status == 307
    status, _ = await send_test_post(crm.url, b"{}")
    assert status == 307 and crm.received[-1].path == "/events"


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files; scripts/setup.sh installs openssl)."""
    cert, key = tmp_path / "crm.crt", tmp_path / "crm.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=crm",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_certificates_are_verified_unless_turned_off(self_signed: tuple[Path, Path], outbox: Outbox) -> None:
    cert, key = self_signed
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    crm = RecordingCRM(tls)
    await crm.start()
    try:
        worker = fast_worker(outbox, crm.url, concurrency=1)  # verifies: a self-signed certificate is refused
        async with running(worker):
            add(outbox, worker, "A1")
            await until(lambda: worker.stats.retried >= 1, "a refused attempt")
        assert crm.received == [] and "certificate" in (worker.stats.last_error or "").lower()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await send_test_post(crm.url, b"{}")
        unverified = DeliveryWorker(outbox, crm.url, tls_verify=False, retry_min_s=0.02, retry_max_s=0.1)
        async with running(unverified):
            await until(lambda: len(crm.delivered()) == 1, "delivered without verification")
        assert (await send_test_post(crm.url, b"{}", tls_verify=False))[0] == 200
    finally:
        await crm.stop()


def test_worker_refuses_bad_settings(outbox: Outbox) -> None:
    with pytest.raises(ValueError):
        DeliveryWorker(outbox, "")
    with pytest.raises(ValueError):
        DeliveryWorker(outbox, "http://127.0.0.1:1/", concurrency=0)
    with pytest.raises(ValueError):
        DeliveryWorker(outbox, "http://127.0.0.1:1/", retry_min_s=5, retry_max_s=1)
