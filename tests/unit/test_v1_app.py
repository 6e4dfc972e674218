"""``/v1`` without Asterisk: validation, the error shape, OpenAPI, metrics, idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from salara.ami.client import AMIClient, AMISettings
from salara.ami.messages import Event, Response
from salara.ami.protocol import AMIConnection
from salara.api.app import create_app
from salara.config import Config
from salara.control import CallControl
from salara.errors import Conflict
from salara.idempotency import IdempotencyCache
from salara.pbx.records import endpoint_of
from tests.transcript import received


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(CallControl.over(AMIClient(AMISettings()), Config()))  # AMI never connects
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://salara") as http:
        yield http


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == error and isinstance(body["message"], str) and body["message"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "body",
    [
        {"from": "8001"},  # no "to"
        {"from": "8001", "to": "90\r\n01"},
        {"from": "8001", "to": "9001\nAction: Originate"},
        {"from": "_X.", "to": "9001"},  # a pattern, not an extension
        {"from": "8001", "to": "9001", "context": "a b"},
        {"from": "8001", "to": "9001", "caller_id_name": 'x" <1>'},
        {"from": "8001", "to": "9001", "variables": {"SHELL(rm -rf /)": "x"}},  # a function, not a variable
        {"from": "8001", "to": "9001", "variables": {"A": "1,SHELL(id)=x"}},  # a comma splits the value
        {"from": "8001", "to": "9001", "variables": {"A": "x\ny"}},
        {"from": "8001", "to": "9001", "timeout_s": 0},
        {"from": "8001", "to": "9001", "unknown": 1},
        {"from": 8001, "to": "9001"},
    ],
)
async def test_invalid_calls_get_422_in_the_error_shape(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    details = assert_error(await client.post("/v1/calls", json=body), 422, "validation_failed")["details"]
    assert isinstance(details, list) and details and {"loc", "msg", "type"} <= set(details[0])


async def test_malformed_json_is_a_422_too(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/calls", content=b'{"from": ', headers={"content-type": "application/json"})
    assert_error(response, 422, "validation_failed")


async def test_ami_down_answers_503_at_once(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/v1/calls", json={"from": "8001", "to": "9001"}), 503, "ami_unavailable")
    assert_error(await client.get("/v1/calls"), 503, "ami_unavailable")
    assert_error(await client.get("/v1/extensions/8001"), 503, "ami_unavailable")
    assert_error(await client.get("/v1/channels/PJSIP/8001-00000001"), 503, "ami_unavailable")
    response = await client.post("/v1/messages", json={"to": "8001", "from": "8002", "text": "hi"})
    assert_error(response, 503, "ami_unavailable")


async def test_unknown_calls_paths_and_methods(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/calls/nosuchcall"), 404, "call_not_found")
    assert_error(await client.delete("/v1/calls/nosuchcall"), 404, "call_not_found")
    assert_error(await client.get("/v1/calls/bad%20id"), 422, "validation_failed")
    assert_error(await client.get("/v1/nothing/here"), 404, "not_found")
    response = await client.put("/v1/calls")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    assert_error(await client.get("/v1/events?type=Bogus"), 422, "validation_failed")


async def test_openapi_describes_v1_with_the_error_shape(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/calls",
        "/v1/calls/{call_id}",
        "/v1/calls/{call_id}/transfer",
        "/v1/messages",
        "/v1/extensions/{exten}",
        "/v1/endpoints/{name}",
        "/v1/channels/{tech}/{resource}",
        "/v1/events",
        "/metrics",
    ):
        assert path in paths, path
    post = paths["/v1/calls"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in post["parameters"]]
    assert post["responses"]["201"]["headers"]["Location"]["required"] is True
    for operation in (post, paths["/v1/calls/{call_id}"]["get"]):
        assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    for path, operations in paths.items():
        for operation in operations.values():
            if path.startswith("/v1/") and "tracked-calls" not in path and "422" in operation["responses"]:
                assert "HTTPValidationError" not in str(operation["responses"]["422"]), path
    assert "from" in spec["components"]["schemas"]["CallCreate"]["properties"]
    assert "text/event-stream" in paths["/v1/events"]["get"]["responses"]["200"]["content"]
    assert not [p for p in paths if "{path" in p]  # the compat catch-all is not described


async def test_metrics_parse_and_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/v1/calls/one")
    await client.get("/v1/calls/two")
    await client.post("/some/compat/path", json={"exten": "9001"})
    await client.post("/another", json={"exten": "9001"})
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    requests = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in families["salara_api_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("GET", "/v1/calls/{call_id}", "404")] == 2
    assert requests[("POST", "/{path:path}", "503")] == 2
    assert families["salara_ami_up"].samples[0].value == 0
    for name in ("salara_ami_logins", "salara_ami_disconnects", "salara_calls_active", "salara_live_subscribers"):
        assert name in families, name


async def test_idempotency_runs_once_even_for_concurrent_duplicates() -> None:
    cache = IdempotencyCache(window_s=60)
    runs = 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return f"call-{runs}"

    results = await asyncio.gather(*(cache.run("k", "req", 0, work) for _ in range(5)))
    assert runs == 1
    assert [r[0] for r in results] == ["call-1"] * 5
    assert sorted(r[1] for r in results) == [False, True, True, True, True]
    assert await cache.run("k", "req", 30, work) == ("call-1", True)
    with pytest.raises(Conflict) as refused:
        await cache.run("k", "another request", 30, work)
    assert refused.value.error == "idempotency_key_reused"
    assert await cache.run("k", "req", 61, work) == ("call-2", False)  # the window has passed


async def test_a_failed_run_can_be_retried_with_its_key() -> None:
    cache = IdempotencyCache()

    async def fail() -> str:
        raise Conflict("operator busy", error="operator_unavailable")

    async def succeed() -> str:
        return "placed"

    with pytest.raises(Conflict):
        await cache.run("k", "req", 0, fail)
    assert await cache.run("k", "req", 1, succeed) == ("placed", False)


async def test_idempotency_keys_are_bounded() -> None:
    cache = IdempotencyCache(max_keys=2)

    async def work() -> int:
        return 1

    for key in "abc":
        await cache.run(key, "req", 0, work)
    assert len(cache) == 2


def list_items(name: str) -> list[Event]:
    """Every list item of a transcript's answers (the protocol folds them into their Response)."""
    conn = AMIConnection()
    for chunk in received(name):
        conn.receive_data(chunk)
    items: list[Event] = []
    for message in conn.drain():
        if isinstance(message, Response):
            items += message.events
        elif isinstance(message, Event):
            items.append(message)
    return items


def test_endpoint_view_of_a_registered_phone() -> None:
    items = list_items("pjsip_show_endpoint.txt")
    response = next(e for e in items if e.name == "ContactStatusDetail")
    detail = next(e for e in items if e.name == "EndpointDetail")
    info = endpoint_of("8001", (detail, response))
    assert info.registered and info.reachability == "reachable"
    assert info.rtt_ms == 0.947
    assert info.device_state == "Not in use" and info.active_channels == 0
    [contact] = info.contacts
    assert contact.uri == "sip:8001-0x55bb426798c0@127.0.0.1:5070"
    assert contact.user_agent == "baresip v1.1.0 (x86_64/linux)"
    assert contact.expires_at is not None and contact.expires_at.year >= 2026
    assert endpoint_of("8002", (detail,)).reachability == "unknown"


# -- with tokens, AMI faked: what reaches Asterisk is recorded ------------------------------

from tests.unit.test_api_security import FakeAMI, bearer, section  # noqa: E402

CRM = "v1-unit-crm-token-0123456789abcdefghijklmnop"
OTHER = "v1-unit-other-token-0123456789abcdefghijklm"
WATCHER = "v1-unit-watch-token-0123456789abcdefghijklm"
SECURED = (
    "[general]\ndefault_context=phones\n"
    + section("crm", CRM, rights="call,state", contexts="phones", destinations="^[0-9]{3,4}$", rate="5/60")
    + section("other", OTHER, rights="call,state", contexts="phones", destinations="^[0-9]{3,4}$", rate="5/60")
    + section("watcher", WATCHER, rights="state")
)


def secured(text: str = SECURED) -> tuple[httpx.AsyncClient, FakeAMI]:
    from salara import config

    ami = FakeAMI()
    app = create_app(CallControl.over(ami, config.build(config.parse_text(text))))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://salara"), ami


@pytest.mark.parametrize(
    "variables",
    [
        {"BRIDGE_FEATURES": "t", "__TRANSFER_CONTEXT": "sim"},  # the toll-fraud pair of the review
        {"BRIDGE_FEATURES": "t"},
        {"__TRANSFER_CONTEXT": "sim"},
        {"_CRM_ID": "1"},  # inherited by every channel the call creates
        {"crm_ID": "1"},  # the prefix is case-sensitive
        {"CRM_ID": "1", "DYNAMIC_FEATURES": "blindxfer"},
    ],
)
async def test_call_variables_must_carry_the_configured_prefix(variables: dict[str, str]) -> None:
    client, ami = secured()
    async with client:
        body = {"from": "8001", "to": "9001", "context": "phones", "variables": variables}
        response = await client.post("/v1/calls", json=body, headers=bearer(CRM))
    details = assert_error(response, 422, "validation_failed")["details"]
    assert isinstance(details, list) and all(d["loc"][:2] == ["body", "variables"] for d in details)
    assert ami.actions == []  # refused before Asterisk heard of it


async def test_call_variables_with_the_prefix_are_set() -> None:
    client, ami = secured(SECURED + "[api]\nvariable_prefix=ACME_\n")
    async with client:
        body = {"from": "8001", "to": "9001", "variables": {"ACME_ID": "4711", "ACME_NOTE": "hello world"}}
        assert (await client.post("/v1/calls", json=body, headers=bearer(CRM))).status_code == 201
        refused = await client.post("/v1/calls", json={**body, "variables": {"CRM_ID": "1"}}, headers=bearer(CRM))
        assert_error(refused, 422, "validation_failed")
    assert ami.actions == ["ExtensionState", "Originate"]
    assert ("Variable", "ACME_ID=4711") in ami.originated[0]


async def test_idempotent_replays_do_not_spend_the_rate() -> None:
    client, ami = secured()
    body = {"from": "8001", "to": "9001"}
    async with client:
        key = {"Idempotency-Key": "crm-click-1", **bearer(CRM)}
        answers = [await client.post("/v1/calls", json=body, headers=key) for _ in range(7)]
        assert [a.status_code for a in answers] == [201] * 7, answers[-1].text
        assert len({a.json()["id"] for a in answers}) == 1
        assert [a.headers.get("idempotent-replayed") for a in answers[1:]] == ["true"] * 6
        # The rate (5/60) is spent by new calls only: four more fit, the fifth does not.
        fresh = [
            await client.post("/v1/calls", json=body, headers={"Idempotency-Key": f"k{n}", **bearer(CRM)})
            for n in range(5)
        ]
        assert [a.status_code for a in fresh] == [201, 201, 201, 201, 429]
        # A refused new call left no key behind: once there is rate again it may be placed with it.
        assert ami.actions.count("Originate") == 5


async def test_idempotency_keys_are_scoped_per_token() -> None:
    client, ami = secured()
    body = {"from": "8001", "to": "9001"}
    async with client:
        first = await client.post("/v1/calls", json=body, headers={"Idempotency-Key": "k", **bearer(CRM)})
        theirs = await client.post("/v1/calls", json=body, headers={"Idempotency-Key": "k", **bearer(OTHER)})
        assert first.status_code == theirs.status_code == 201
        assert first.json()["id"] != theirs.json()["id"] and "idempotent-replayed" not in theirs.headers
        # Nor can another token learn of a key through a 409.
        other_body = {**body, "to": "9002"}
        assert (
            await client.post("/v1/calls", json=other_body, headers={"Idempotency-Key": "k2", **bearer(OTHER)})
        ).status_code == 201
        mine = await client.post("/v1/calls", json=body, headers={"Idempotency-Key": "k2", **bearer(CRM)})
        assert mine.status_code == 201 and "idempotent-replayed" not in mine.headers
    assert ami.actions.count("Originate") == 4


async def test_a_replay_is_still_authorized() -> None:
    client, ami = secured()
    async with client:
        key = {"Idempotency-Key": "k"}
        body = {"from": "8001", "to": "9001"}
        assert (await client.post("/v1/calls", json=body, headers={**key, **bearer(CRM)})).status_code == 201
        refused = await client.post("/v1/calls", json=body, headers={**key, **bearer(WATCHER)})
        assert refused.status_code == 403
    assert ami.actions.count("Originate") == 1


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_v1_itself_is_not_the_compat_endpoint(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/v1", json={"exten": "9001"} if method != "GET" else None)
    assert_error(response, 404, "not_found")
    response = await client.request(method, "/v1?exten=9001")
    assert_error(response, 404, "not_found")


# -- live streams: a client that stops reading -------------------------------------------


async def stalled_stream(scope_extensions: dict[str, object]) -> tuple[list[str], list[bytes], bool]:
    """Run an EventStreamResponse whose client takes the first two writes, then reads nothing."""
    from salara.api.v1.stream import EventStreamResponse, StreamStalled

    events: list[str] = []
    written: list[bytes] = []
    gone = asyncio.Event()

    async def content() -> AsyncIterator[bytes]:
        try:
            for n in range(100):
                yield f"data: {n}\n\n".encode()
        finally:
            events.append("iterator closed")

    async def send(message: dict[str, object]) -> None:
        if len(written) >= 2 and not gone.is_set():
            await gone.wait()  # the socket is full: a write waits until the connection is lost
        body = message.get("body", b"")
        written.append(body if isinstance(body, bytes) else b"")

    async def receive() -> dict[str, object]:
        await gone.wait()
        return {"type": "http.disconnect"}

    def abort() -> None:
        events.append("aborted")
        gone.set()

    extensions = {key: {"abort": abort} for key in scope_extensions}
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "extensions": extensions}
    response = EventStreamResponse(content(), send_timeout_s=0.05, on_stall=lambda: events.append("stalled"))
    raised = False
    try:
        await asyncio.wait_for(response(scope, receive, send), 2)  # type: ignore[arg-type]
    except StreamStalled:
        raised = True
    return events, written, raised


async def test_a_stalled_stream_is_aborted_after_the_send_timeout() -> None:
    from salara.api.security.connections import ABORT_EXTENSION

    events, written, raised = await stalled_stream({ABORT_EXTENSION: None})
    assert events == ["stalled", "aborted", "iterator closed"] and not raised
    assert len(written) == 3 and written[-1] == b""  # start, one event, then the final (no-op) write


async def test_without_the_abort_hook_a_stalled_stream_ends_with_an_error() -> None:
    events, _, raised = await stalled_stream({})
    assert raised and events == ["stalled", "iterator closed"]
