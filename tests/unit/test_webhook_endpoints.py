"""Several endpoints, the retry schedule that ends, dead letters, replay, Retry-After, 410, rotation, the log.

Real HTTP servers on 127.0.0.1 (:class:`~tests.unit.crm_server.RecordingCRM`)
receive what the workers post from a real store (a SQLite file, and a PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import standardwebhooks

from salara.crm.delivery import DeliveryWorker
from salara.crm.schedule import REFUSED_TRIES, Schedule, retry_after_s
from salara.crm.signing import new_secret
from salara.store.interface import Store
from salara.store.records import NewEvent, Result
from salara.store.sqlite import Outbox
from tests.unit.conftest import OpenStore
from tests.unit.crm_server import RecordingCRM, Request, running, until

NOW = 1_700_000_000.0


@pytest.fixture
async def crm() -> AsyncIterator[RecordingCRM]:
    server = RecordingCRM()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other() -> AsyncIterator[RecordingCRM]:
    server = RecordingCRM()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def outbox(open_store: OpenStore) -> Store:
    return open_store(max_rows=10_000)


def worker(outbox: Store, url: str, name: str, **kw: object) -> DeliveryWorker:
    options: dict[str, object] = {"retry_min_s": 0.02, "retry_max_s": 0.1, "timeout_s": 5.0, "concurrency": 4}
    options.update(kw)
    return DeliveryWorker(outbox, url, endpoint=name, disable_on_gone=name != "default", **options)  # type: ignore[arg-type]


def calls(requests: list[Request]) -> dict[str, list[str]]:
    """Event names per call (the leading letter), in arrival order."""
    out: dict[str, list[str]] = {}
    for request in requests:
        out.setdefault(request.name[0], []).append(request.name)
    return out


def add(outbox: Store, endpoints: dict[str, tuple[str, ...]], *names: str) -> dict[str, str]:
    """Events ``<call><n>``: a ``Hangup``, or with an ``E`` a ``call.ended``; each to ``endpoints[its type]``."""
    items = []
    for name in names:
        kind = "call.ended" if "E" in name else "Hangup"
        body = json.dumps({"event": name, "type": kind}).encode()
        items.append(NewEvent(name.rstrip("0123456789E"), body, kind, None, endpoints.get(kind, ())))
    return dict(zip(names, outbox.add(items), strict=True))


# -- the schedule ---------------------------------------------------------------------


def test_the_schedule_ends_refused_bodies_after_five_tries_and_everything_after_retry_for() -> None:
    schedule = Schedule(1.0, 10.0, 60.0)
    for attempts in range(REFUSED_TRIES - 1):
        assert schedule.after_failure(attempts=attempts, created_at=NOW, at=NOW, status=400)[0] == "retry"
    assert schedule.after_failure(attempts=REFUSED_TRIES - 1, created_at=NOW, at=NOW, status=400) == ("dead", 0.0)
    for status in (408, 409, 425, 429, 500, None):  # may pass by themselves: the whole schedule
        assert schedule.after_failure(attempts=20, created_at=NOW, at=NOW + 30, status=status)[0] == "retry"
    assert schedule.after_failure(attempts=20, created_at=NOW, at=NOW + 55, status=500, rng=lambda: 0.9)[0] == "dead"


def test_retry_after_sets_the_earliest_next_try_on_429_and_503_only() -> None:
    schedule = Schedule(1.0, 2.0, 3600.0)
    assert schedule.after_failure(attempts=0, created_at=NOW, at=NOW, status=503, retry_after_s=30) == (
        "retry",
        NOW + 30,
    )
    _, when = schedule.after_failure(attempts=0, created_at=NOW, at=NOW, status=500, retry_after_s=30)
    assert when <= NOW + 2
    assert retry_after_s(b"2", NOW) == 2.0
    assert retry_after_s(email.utils.formatdate(NOW + 10, usegmt=True), NOW) == pytest.approx(10.0, abs=1)


# -- several endpoints ------------------------------------------------------------------


async def test_two_endpoints_get_their_own_types_and_a_dead_one_holds_back_no_other(
    crm: RecordingCRM, other: RecordingCRM, outbox: Store
) -> None:
    routes = {"Hangup": ("default", "crm2"), "call.ended": ("crm2",)}
    await other.stop()  # crm2 is down at first
    first, second = worker(outbox, crm.url, "default"), worker(outbox, other.url, "crm2")
    async with running(first), running(second):
        add(outbox, routes, "A1", "A2E", "B1", "A3", "B2E")
        first.notify()
        await until(lambda: len(crm.delivered()) == 3, "default gets its three Hangups while crm2 is down")
        assert calls(crm.delivered()) == {"A": ["A1", "A3"], "B": ["B1"]}
        await other.start()  # same port: crm2 comes back
        await until(lambda: len(other.delivered()) == 5, "crm2 gets everything in the end")
    assert calls(other.delivered()) == {"A": ["A1", "A2E", "A3"], "B": ["B1", "B2E"]}, "per-call order kept"
    assert outbox.counts("default").delivered == 3 and outbox.counts("crm2").delivered == 5


async def test_a_refused_event_goes_dead_after_five_tries_the_call_goes_on_and_a_replay_delivers_it(
    crm: RecordingCRM, outbox: Store
) -> None:
    accept = asyncio.Event()

    async def policy(request: Request) -> int:
        return 200 if request.name != "A2" or accept.is_set() else 400

    crm.policy = policy
    delivery = worker(outbox, crm.url, "crm2")
    async with running(delivery):
        ids = add(outbox, {"Hangup": ("crm2",)}, "A1", "A2", "A3")
        delivery.notify()
        await until(lambda: [r.name for r in crm.delivered()] == ["A1", "A3"], "A3 goes on after A2 died")
        (dead,) = outbox.list_events(["dead"], endpoint="crm2")
        assert dead.id == ids["A2"] and dead.attempts == REFUSED_TRIES and dead.last_status == 400
        tried = [r for r in crm.received if r.name == "A2"]
        assert len(tried) == REFUSED_TRIES and {r.id for r in tried} == {ids["A2"]}
        log = outbox.attempts(ids["A2"], "crm2")
        assert [a.http_status for a in log] == [400] * REFUSED_TRIES and log[-1].outcome == "dead"
        assert log[0].answer == '{"result":0}' and log[0].latency_ms is not None
        accept.set()
        assert outbox.retry([ids["A2"]], endpoint="crm2") == 1
        delivery.notify()
        await until(lambda: len(crm.delivered()) == 3, "the replayed event delivered")
    replayed = crm.delivered()[-1]
    assert replayed.name == "A2" and replayed.id == ids["A2"], "a replay keeps the original webhook-id"
    assert outbox.counts("crm2").dead == 0


async def test_retry_after_on_a_503_holds_every_request_to_the_endpoint_until_then(
    crm: RecordingCRM, outbox: Store
) -> None:
    refused_at: list[float] = []

    async def policy(request: Request) -> int:
        if not refused_at:
            refused_at.append(time.monotonic())
            return 503
        return 200

    crm.policy = policy
    crm.reply_headers = b"Retry-After: 2\r\n"
    delivery = worker(outbox, crm.url, "crm2")
    async with running(delivery):
        add(outbox, {"Hangup": ("crm2",)}, "A1")
        delivery.notify()
        # Read by the worker, not only sent by the CRM: a request sent before salara read the 503 is not held.
        await until(lambda: delivery.stats.retried == 1, "the first post, refused")
        add(outbox, {"Hangup": ("crm2",)}, "B1")  # another call's event: held back too
        delivery.notify()
        await asyncio.sleep(1.0)
        assert len(crm.received) == 1, "no attempt to the endpoint before the Retry-After"
        await until(lambda: len(crm.delivered()) == 2, "both delivered after it")


async def test_410_disables_a_named_endpoint_until_it_is_enabled(crm: RecordingCRM, outbox: Store) -> None:
    gone = True

    async def policy(request: Request) -> int:
        return 410 if gone else 200

    crm.policy = policy
    delivery = worker(outbox, crm.url, "crm2")
    async with running(delivery):
        add(outbox, {"Hangup": ("crm2",)}, "A1")
        delivery.notify()
        await until(lambda: delivery.disabled, "disabled by the 410")
        add(outbox, {"Hangup": ("crm2",)}, "B1")
        delivery.notify()
        await asyncio.sleep(0.3)
        assert len(crm.received) == 1 and "crm2" in outbox.disabled()
        assert outbox.counts("crm2").dead == 0, "its events wait, none is dead"
        gone = False
        assert outbox.enable("crm2")
        delivery.enable()
        await until(lambda: len(crm.delivered()) == 2, "delivered once enabled")
    assert outbox.disabled() == {}


async def test_during_a_rotation_either_secret_verifies_with_the_standardwebhooks_library(
    crm: RecordingCRM, outbox: Store
) -> None:
    old, new = new_secret(), new_secret()
    delivery = worker(outbox, crm.url, "crm2", secret=f"{new} {old}")
    async with running(delivery):
        add(outbox, {"Hangup": ("crm2",)}, "A1")
        delivery.notify()
        await until(lambda: len(crm.delivered()) == 1, "posted")
    request = crm.delivered()[0]
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret).verify(request.body, request.headers) == {
            "event": "A1",
            "type": "Hangup",
        }
    after = worker(outbox, crm.url, "crm3", secret=new)
    async with running(after):
        add(outbox, {"Hangup": ("crm3",)}, "B1")
        after.notify()
        await until(lambda: len(crm.delivered()) == 2, "posted after the rotation")
    request = crm.delivered()[1]
    standardwebhooks.Webhook(new).verify(request.body, request.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(request.body, request.headers)


# -- the store: replay, the log, the move from schema 1 ------------------------------------


def test_replay_since_sends_delivered_events_again_in_per_call_order(outbox: Store) -> None:
    ids = add(outbox, {"Hangup": ("crm2",)}, "A1", "A2", "B1")

    def deliver_all() -> list[str]:
        order: list[str] = []
        while claimed := outbox.claim(10, endpoint="crm2"):
            order += [c.id for c in claimed]
            outbox.record([Result(c, "delivered", time.time(), 200) for c in claimed])
        return order

    assert sorted(deliver_all()) == sorted(ids.values())
    assert outbox.counts("crm2").delivered == 3
    assert outbox.retry(endpoint="crm2", since=0.0, delivered=True) == 3
    assert outbox.counts("crm2").pending == 3
    order = deliver_all()
    assert order.index(ids["A1"]) < order.index(ids["A2"]) and sorted(order) == sorted(ids.values())


def test_the_event_log_pages_every_stored_event_once_in_order_also_without_an_endpoint(outbox: Store) -> None:
    ids = add(outbox, {}, *[f"C{n}" for n in range(1, 8)])  # no endpoint gets them
    assert outbox.depth() == 0
    seen, after = [], 0
    while page := outbox.event_log(after, limit=3):
        seen += [row.id for row in page]
        after = page[-1].seq
    assert seen == list(ids.values())


def test_a_schema_1_outbox_is_moved_over_with_its_events_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, call_key TEXT NOT NULL,
            body BLOB NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, done_at REAL, last_status INTEGER, last_error TEXT);
        CREATE INDEX events_due ON events (status, next_attempt_at);
        CREATE INDEX events_call ON events (call_key, status);
        CREATE INDEX events_delivered ON events (done_at) WHERE status = 'delivered';
        CREATE TABLE attempts (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, at REAL NOT NULL,
            outcome TEXT NOT NULL, http_status INTEGER, error TEXT);
        CREATE INDEX attempts_at ON attempts (at);
        INSERT INTO events VALUES
            (1, 'a1', 'A', CAST('{"event":"Newchannel"}' AS BLOB), 'gone', 1, 1, 1, 2, 410, 'g'),
            (2, 'a2', 'A', CAST('{"event":"Hangup"}' AS BLOB), 'ready', 1, 1, 0, NULL, NULL, NULL),
            (3, 'a3', 'A', CAST('{"event":"Hangup"}' AS BLOB), 'blocked', 1, 1, 0, NULL, NULL, NULL);
        INSERT INTO attempts VALUES (1, 'a1', 2, 'gone', 410, 'g');
        PRAGMA user_version = 1;
        """
    )
    db.close()
    with Outbox(path, max_rows=100) as outbox:
        assert [(e.id, e.status, e.type) for e in outbox.list_events(limit=10)] == [
            ("a1", "dead", "Newchannel"),
            ("a2", "ready", "Hangup"),
            ("a3", "blocked", "Hangup"),
        ]
        (claimed,) = outbox.claim(10, NOW)
        assert (claimed.id, claimed.body) == ("a2", b'{"event":"Hangup"}'), "the same bytes as before"
        assert [a.outcome for a in outbox.attempts("a1")] == ["dead"]
