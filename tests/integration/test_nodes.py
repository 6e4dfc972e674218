"""Two salara nodes on one PostgreSQL store and one real Asterisk: a leader killed loses nothing.

Both nodes are real ``salara serve`` processes on a throwaway PostgreSQL
cluster (:mod:`tests.pgcluster`), connected to the test Asterisk; the CRM is a
real HTTP server (:class:`~tests.crm.FakeCrm`). What the CRM should get is
derived from what Asterisk itself reported on a separate AMI session.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from testpbx import pbx
from tests.amiwatch import EventWatch
from tests.conftest import SalaraFactory, SalaraProcess
from tests.crm import FakeCrm, Received
from tests.integration.test_events import config_text, expected, wait_call_over
from tests.pgcluster import bin_dir, migrated_database

MODES = {"newchannel": 2, "hangup": 2, "newexten": 3, "agentcon": 0}
CALLS = 300
LONG_CALLS = 3
"""Calls still up when the leader is killed: their Hangups are the surviving node's to store."""
TABLES = "events, deliveries, attempts, endpoint_state, tracked_calls, live_channels, idempotency_keys"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database migrated to this salara's schema, on a cluster of its own."""
    if bin_dir() is None:
        pytest.fail("Debian's postgresql package is not installed: run ./scripts/setup.sh (as root) first")
    with migrated_database("salara_nodes") as url:
        yield url


@pytest.fixture
def db_url(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return pg_url


@pytest.fixture(autouse=True)
def clean_channels(asterisk: None) -> Iterator[None]:
    pbx.hangup_all()
    yield
    pbx.hangup_all()


def start_node(salara_factory: SalaraFactory, crm: FakeCrm, url: str, name: str) -> SalaraProcess:
    return salara_factory(
        config_text(crm, **MODES),
        SALARA_OUTBOX_URL=url,
        SALARA_OUTBOX_NODE=name,
        SALARA_OUTBOX_LEASE="5",
        SALARA_OUTBOX_RETRY_MAX="2",
    )


def leads(node: SalaraProcess) -> bool | None:
    """``salara_node_leader`` on the node's /metrics (None: no answer)."""
    try:
        text = httpx.get(node.url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^salara_node_leader (\S+)$", text, re.M)
    assert found is not None, "salara_node_leader is on /metrics"
    return float(found.group(1)) == 1.0


def until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def two_nodes(salara_factory: SalaraFactory, crm: FakeCrm, url: str) -> tuple[SalaraProcess, SalaraProcess]:
    a = start_node(salara_factory, crm, url, "a")
    until(lambda: leads(a), 10, "node a to lead")
    b = start_node(salara_factory, crm, url, "b")
    time.sleep(1.5)  # b tries the lock meanwhile
    assert (leads(a), leads(b)) == (True, False)
    roles = [httpx.get(node.url + "/ready", timeout=5).json().get("role") for node in (a, b)]
    assert roles == ["leader", "follower"], "/ready tells each node's role"
    return a, b


def originate(calls: dict[str, int]) -> None:
    """Originate every call (ChannelId: wait seconds) at once, on one AMI session, and wait for the answers.

    No ChannelId may start with another (``run-2`` and ``run-24``): Asterisk
    names the Local channel's other half after it, and refuses a duplicate.
    """
    with socket.create_connection((pbx.AMI_HOST, pbx.AMI_PORT), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        actions = [f"Action: Login\r\nUsername: {pbx.AMI_USER}\r\nSecret: {pbx.AMI_SECRET}\r\nEvents: off\r\n\r\n"]
        for channel_id, wait_s in calls.items():
            actions.append(
                "Action: Originate\r\nChannel: Local/9001@sim\r\nApplication: Wait\r\n"
                f"Data: {wait_s}\r\nVariable: WAITSECS={wait_s}\r\nChannelId: {channel_id}\r\n"
                f"Async: true\r\nActionID: {channel_id}\r\n\r\n"
            )
        sock.sendall("".join(actions).encode())
        answers: list[bytes] = []
        while len(answers) < len(calls) + 1:  # the login's, then one per Originate
            block = b""
            while (line := reader.readline()) not in (b"\r\n", b""):
                block += line
            assert line, "AMI closed the connection"
            if block.startswith(b"Response:"):
                answers.append(block)
    assert all(b"Response: Success" in answer for answer in answers), [a for a in answers if b"Success" not in a]


def stored(url: str, keys: set[str]) -> dict[str, list[str]]:
    """The ids of each call key's stored events for the CRM, in the store's order (lifecycle ones are the log's)."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT e.call_key, e.id FROM events e JOIN deliveries d ON d.seq = e.seq AND d.endpoint = 'default'"
            " ORDER BY e.seq"
        ).fetchall()
    found: dict[str, list[str]] = {}
    for key, event_id in rows:
        if key in keys:
            found.setdefault(key, []).append(event_id)
    return found


def test_a_killed_leader_loses_nothing_and_the_other_node_delivers_everything(
    salara_factory: SalaraFactory, db_url: str, ami_events: EventWatch
) -> None:
    crm = FakeCrm().start()
    crm.stop()  # refusing connections from now on; the same port again later
    a, b = two_nodes(salara_factory, crm, db_url)
    run = f"nodes-{time.time_ns()}"
    calls = {f"{run}-{i:04d}x": 1 for i in range(CALLS)} | {f"{run}-long{i}x": 6 for i in range(LONG_CALLS)}
    originate(calls)
    short = [call for call, wait_s in calls.items() if wait_s == 1]
    want = {call: expected(wait_call_over(ami_events, call, timeout_s=60), MODES, None) for call in short}
    until(lambda: sum(map(len, stored(db_url, set(short)).values())) >= sum(map(len, want.values())), 30, "storing")
    assert {call: len(ids) for call, ids in stored(db_url, set(short)).items()} == {
        call: len(events) for call, events in want.items()
    }, "the leader stored each event of each call once, and the follower nothing"

    a.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    until(lambda: leads(b), 15, "node b to take the lead")
    crm.start()
    for call in calls.keys() - short:
        want[call] = expected(wait_call_over(ami_events, call, timeout_s=30), MODES, None)
    keys = set(calls)
    total = sum(map(len, want.values()))
    until(lambda: sum(map(len, stored(db_url, keys).values())) >= total, 30, "the long calls' events")
    ids = {event_id for call_ids in stored(db_url, keys).values() for event_id in call_ids}
    assert len(ids) == total, "one stored event per CRM event: no double from the takeover"

    def arrived() -> set[str]:
        return {r.headers["webhook-id"] for r in crm.events()}

    until(lambda: ids <= arrived(), max(1.0, killed_at + 30 - time.monotonic()), "every event at the CRM")
    delivered_s = time.monotonic() - killed_at
    time.sleep(0.5)
    copies: dict[str, list[Received]] = {}
    for record in crm.events():
        copies.setdefault(record.headers["webhook-id"], []).append(record)
    assert all(len({copy.body for copy in same}) == 1 for same in copies.values()), "duplicates: same id, same body"
    channel_call = {
        e["Channel"]: e["Linkedid"] for e in ami_events.snapshot() if e.get("Linkedid") in keys and "Channel" in e
    }
    firsts = sorted((same[0] for same in copies.values()), key=lambda record: record.at)
    by_call: dict[str, list[dict[str, str]]] = {}
    for record in firsts:
        payload = record.json()
        if payload["chan"] in channel_call:
            by_call.setdefault(channel_call[payload["chan"]], []).append(payload)
    got_short = {call: by_call.get(call) for call in short}
    assert got_short == {call: want[call] for call in short}, "every event arrived, once per id, in per-call order"
    for call in calls.keys() - short:  # Hangups seen by b (or synthesized, had they ended in the gap)
        assert [(p["event"], p["chan"]) for p in by_call[call]] == [(p["event"], p["chan"]) for p in want[call]]
    assert delivered_s < 30
    log = b.log()
    assert "node b took the lead" in log
    assert "node b leads" in log
    assert leads(b) is True


def test_an_idempotency_key_holds_across_nodes_and_a_call_is_seen_through_both(
    salara_factory: SalaraFactory, db_url: str, ami_events: EventWatch
) -> None:
    crm = FakeCrm().start()
    try:
        a, b = two_nodes(salara_factory, crm, db_url)
        body = {"from": "8001", "to": "9001", "context": "phones"}
        key = {"Idempotency-Key": f"crm-click-{time.time_ns()}"}
        first = httpx.post(f"{a.url}/v1/calls", json=body, headers=key, timeout=15)
        assert first.status_code == 201, first.text
        call_id = first.json()["id"]
        again = httpx.post(f"{b.url}/v1/calls", json=body, headers=key, timeout=15)
        assert again.status_code == 201, again.text
        assert again.json()["id"] == call_id
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.headers["location"] == f"/v1/calls/{call_id}"
        reused = httpx.post(f"{b.url}/v1/calls", json={**body, "to": "9002"}, headers=key, timeout=15)
        assert reused.status_code == 409
        assert reused.json()["error"] == "idempotency_key_reused"
        ami_events.wait_for(lambda e: e.get("Event") == "Newchannel" and e.get("Linkedid") == call_id)
        time.sleep(0.5)
        operators = [
            e
            for e in ami_events.snapshot()
            if e.get("Event") == "Newchannel" and e.get("Channel", "").startswith("PJSIP/8001-")
        ]
        assert [e["Linkedid"] for e in operators] == [call_id], "one call placed, by node a"
        seen = httpx.get(f"{b.url}/v1/calls/{call_id}", timeout=5)
        assert seen.status_code == 200, seen.text
        assert (seen.json()["id"], seen.json()["from"], seen.json()["to"]) == (call_id, "8001", "9001")
        listed = httpx.get(f"{b.url}/v1/calls", timeout=5).json()["calls"]
        assert call_id in {call["id"] for call in listed}, "the live call is in node b's list too"
        with psycopg.connect(db_url) as db:
            kept = db.execute("SELECT count(*) FROM idempotency_keys").fetchone()
        assert kept is not None and kept[0] == 1
    finally:
        crm.stop()
