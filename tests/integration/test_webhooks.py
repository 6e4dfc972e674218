"""Several webhook endpoints, dead letters, replay and the event log on the real test Asterisk.

Calls go from the real SIP phone 8001 (baresip, auto-answer) to 9001, which
answers, waits 5 s and hangs up. The CRMs are real HTTP servers
(:class:`tests.crm.FakeCrm`) that record what they get.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLE_CONFIG, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm, Received
from tests.integration.test_v1_api import phone_idle, wait_for


@pytest.fixture(autouse=True)
def phone_is_free(asterisk: None) -> None:
    wait_for("phone 8001 idle", phone_idle, 20)


@pytest.fixture
def crms() -> Iterator[tuple[FakeCrm, FakeCrm]]:
    first, second = FakeCrm().start(), FakeCrm().start()
    yield first, second
    first.stop()
    second.stop()


def config(**webhooks: dict[str, str]) -> str:
    """The example config without dest_url_event, with these ``[webhook NAME]`` sections."""
    text = EXAMPLE_CONFIG.read_text().replace("dest_url_event=http://127.0.0.1:3000/post", "dest_url_event=")
    for name, keys in webhooks.items():
        text += f"\n[webhook {name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
    return text


def start(factory: SalaraFactory, text: str) -> SalaraProcess:
    return factory(text, SALARA_URL_DEST_URL="", SALARA_EVENT_HANGUP="2", SALARA_EVENT_NEWCHANNEL="2")


def place_call(salara: SalaraProcess) -> str:
    """8001 -> 9001: answered, over after about 5 s. The call id."""
    body = {"from": "8001", "to": "9001", "context": "phones"}
    response = httpx.post(f"{salara.url}/v1/calls", json=body, timeout=15)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def of_call(received: list[Received], call_id: str) -> list[dict[str, Any]]:
    """The bodies of one call, each id once (delivery is at least once), in arrival order."""
    seen: set[str] = set()
    out = []
    for request in received:
        body = request.json()
        key = request.headers.get("webhook-id", "")
        if (body.get("call_id") == call_id or body.get("linkedid") == call_id or call_id in request.body.decode()) and (
            key not in seen
        ):
            seen.add(key)
            out.append(body)
    return out


def kind(body: dict[str, Any]) -> str:
    return str(body.get("type") or body.get("event"))


def test_two_endpoints_get_their_own_types_and_one_down_holds_back_no_other(
    salara_factory: SalaraFactory, crms: tuple[FakeCrm, FakeCrm]
) -> None:
    hangups, lifecycle = crms
    lifecycle.status = 503  # down at first
    salara = start(
        salara_factory,
        config(
            hangups={"url": f"{hangups.url}/events", "events": "Hangup, Newchannel"},
            calls={"url": f"{lifecycle.url}/events", "events": "call.started, call.ended"},
        ),
    )
    call_id = place_call(salara)
    hangups.wait_for(lambda crm: any(kind(b) == "Hangup" for b in of_call(crm.events(), call_id)), 30)
    got = of_call(hangups.events(), call_id)
    assert {kind(b) for b in got} == {"Newchannel", "Hangup"}, "its two SPEC types only"
    assert all(b["linkedid"] == call_id for b in got)
    lifecycle.status = None  # back
    lifecycle.wait_for(lambda crm: any(kind(b) == "call.ended" for b in of_call(crm.events(), call_id)), 60)
    delivered = [kind(b) for b in of_call([r for r in lifecycle.events() if r.answered_at], call_id)]
    assert delivered == ["call.started", "call.ended"], "its two types only, in the call's order"
    listing = httpx.get(f"{salara.url}/v1/webhooks", timeout=5).json()["webhooks"]
    assert [(w["name"], w["events"]) for w in listing] == [
        ("hangups", ["Hangup", "Newchannel"]),
        ("calls", ["call.started", "call.ended"]),
    ]


def test_a_refused_event_goes_dead_the_call_goes_on_and_a_replay_delivers_it_with_its_id(
    salara_factory: SalaraFactory, crms: tuple[FakeCrm, FakeCrm]
) -> None:
    crm, _ = crms
    refuse = {"on": True}
    crm.status_for = lambda body: 400 if refuse["on"] and b'"call.started"' in body else None
    salara = start(salara_factory, config(crm={"url": f"{crm.url}/events", "events": "call.started, call.ended"}))
    call_id = place_call(salara)
    crm.wait_for(lambda c: any(kind(b) == "call.ended" for b in of_call(c.events(), call_id)), 90)
    tried = [r for r in crm.events() if b'"call.started"' in r.body and call_id.encode() in r.body]
    assert len(tried) == 5 and len({r.headers["webhook-id"] for r in tried}) == 1, "5 tries of one event"
    dead = httpx.get(f"{salara.url}/v1/webhooks/crm/deliveries", params={"status": "dead"}, timeout=5).json()
    (entry,) = [d for d in dead["deliveries"] if d["call_id"] == call_id]
    assert entry["type"] == "call.started" and entry["tries"] == 5
    assert [a["http_status"] for a in entry["attempts"]] == [400] * 5 and entry["attempts"][0]["answer"]
    refuse["on"] = False
    retried = httpx.post(f"{salara.url}/v1/webhooks/crm/deliveries/{entry['id']}/retry", timeout=5)
    assert retried.status_code == 200 and retried.json() == {"queued": 1}
    crm.wait_for(
        lambda c: any(r.headers["webhook-id"] == entry["id"] and r.answered_at for r in c.events() if r not in tried),
        15,
    )
    replayed = [r for r in crm.events() if r.headers["webhook-id"] == entry["id"]][-1]
    assert json.loads(replayed.body)["id"] == entry["id"], "the original webhook-id and body"


def test_the_event_log_pages_every_stored_event_once_without_any_endpoint(salara_factory: SalaraFactory) -> None:
    salara = start(salara_factory, config())
    call_id = place_call(salara)

    def page_all() -> list[dict[str, Any]]:
        events, after = [], 0
        for _ in range(200):  # bounded
            page = httpx.get(f"{salara.url}/v1/event-log", params={"after": after, "limit": 3}, timeout=5).json()
            events += page["events"]
            if not page["events"]:
                return events
            after = page["next"]
        raise AssertionError("the log never ended")

    def ended() -> list[dict[str, Any]]:
        events = page_all()
        return events if any(e["type"] == "call.ended" and e["call_id"] == call_id for e in events) else []

    logged = wait_for("call.ended in the log", ended, 30)
    seqs = [e["seq"] for e in logged]
    assert seqs == sorted(set(seqs)), "each once, in order"
    mine = [e["type"] for e in logged if e["call_id"] == call_id]
    assert {"Newchannel", "call.started", "Hangup", "call.ended"} <= set(mine) and mine[-1] == "call.ended"
    assert mine.count("call.ended") == 1
    assert all(e["event"]["id"] == e["id"] for e in logged)


def test_an_endpoint_added_and_removed_through_the_api_is_written_to_the_config(
    salara_factory: SalaraFactory, crms: tuple[FakeCrm, FakeCrm]
) -> None:
    crm, _ = crms
    salara = start(salara_factory, config())
    put = httpx.put(
        f"{salara.url}/v1/webhooks/late", json={"url": f"{crm.url}/events", "events": ["call.ended"]}, timeout=10
    )
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "late" and put.json()["enabled"] is True
    text = (salara.workdir / "salara.conf").read_text()
    assert re.search(r"^\[webhook late\]\nurl = .*\npayload = extended\nevents = call.ended\n", text, re.M), text
    since = time.time()
    call_id = place_call(salara)
    crm.wait_for(lambda c: any(kind(b) == "call.ended" for b in of_call(c.events(), call_id)), 30)
    first = [r.headers["webhook-id"] for r in crm.events()]
    replay = httpx.post(
        f"{salara.url}/v1/webhooks/late/replay",
        json={"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - 1))},
        timeout=5,
    )
    assert replay.status_code == 200 and replay.json()["queued"] >= 1
    crm.wait_for(lambda c: len(c.events()) >= 2 * len(first), 15)
    assert [r.headers["webhook-id"] for r in crm.events()][len(first) :] == first, "the same ids again"
    bad = httpx.put(f"{salara.url}/v1/webhooks/default", json={"url": f"{crm.url}/x"}, timeout=5)
    assert bad.status_code == 422 and "dest_url_event" in bad.json()["message"]
    assert httpx.delete(f"{salara.url}/v1/webhooks/late", timeout=10).status_code == 204
    assert "[webhook late]" not in (salara.workdir / "salara.conf").read_text()
    assert httpx.get(f"{salara.url}/v1/webhooks/late", timeout=5).status_code == 404
