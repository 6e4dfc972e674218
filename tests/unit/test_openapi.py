"""The OpenAPI document: ``docs/openapi.json`` is the app's, valid 3.1, with ids, security, errors and examples.

Regenerate the committed document after changing the API::

    .venv/bin/python -m tests.unit.test_openapi > docs/openapi.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from salara.ami.client import AMIClient, AMISettings
from salara.api.app import create_app
from salara.api.openapi import render
from salara.api.security.tokens import credential_from
from salara.config import Config
from salara.control import CallControl
from salara.events.hub import EVENT_TYPES

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "openapi.json"
REGENERATE = ".venv/bin/python -m tests.unit.test_openapi > docs/openapi.json"
SRC = "\n".join(path.read_text() for path in sorted((REPO / "src" / "salara").rglob("*.py")))

V1_OPERATIONS = {
    ("post", "/v1/calls"): "placeCall",
    ("get", "/v1/calls"): "listCalls",
    ("get", "/v1/calls/{call_id}"): "getCall",
    ("delete", "/v1/calls/{call_id}"): "hangUpCall",
    ("post", "/v1/calls/{call_id}/transfer"): "transferCall",
    ("post", "/v1/messages"): "sendMessage",
    ("get", "/v1/extensions/{exten}"): "getExtensionState",
    ("get", "/v1/endpoints/{name}"): "getEndpoint",
    ("get", "/v1/channels/{tech}/{resource}"): "getChannel",
    ("get", "/v1/events"): "streamEvents",
}


def current_document() -> dict[str, Any]:
    """The document of an app built as ``salara serve`` builds it (AMI never connects here)."""
    app = create_app(CallControl.over(AMIClient(AMISettings()), Config()))
    return app.openapi()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return current_document()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def example_values(doc: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """The example values of a media type, ``$ref``s to ``#/components/examples`` resolved."""
    found = []
    for example in media.get("examples", {}).values():
        if "$ref" in example:
            example = doc["components"]["examples"][example["$ref"].rpartition("/")[2]]
        found.append(example["value"])
    return found + ([media["example"]] if "example" in media else [])


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_the_committed_document_is_the_apps(doc: dict[str, Any]) -> None:
    assert COMMITTED.read_text() == render(doc), f"docs/openapi.json is out of date: {REGENERATE}"


async def test_the_app_serves_the_committed_document() -> None:
    app = create_app(CallControl.over(AMIClient(AMISettings()), Config()))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://salara") as http:
        served = (await http.get("/openapi.json")).json()
    assert served == json.loads(COMMITTED.read_text())


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    validate(doc)


def test_every_operation_has_a_readable_unique_id(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(doc)]
    ids += [hook["post"]["operationId"] for hook in doc["webhooks"].values()]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if not re.fullmatch(r"[a-z]+(?:[A-Z][a-z]*)*", i)] == []
    assert {(m, p): op["operationId"] for m, p, op in operations(doc) if (m, p) in V1_OPERATIONS} == V1_OPERATIONS


def test_the_security_schemes_are_the_headers_salara_reads(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert credential_from({"authorization": "Bearer t0ken"}) == "t0ken"
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"]) == ("apiKey", "header")
    assert credential_from({schemes["apiKey"]["name"].lower(): "t0ken"}) == "t0ken"
    assert doc["security"] == [{"bearer": []}, {"apiKey": []}]
    for _, path, op in operations(doc):
        assert (op.get("security") == []) == (path == "/health"), path


def test_errors_are_documented_where_they_apply(doc: dict[str, Any]) -> None:
    for _, path, op in operations(doc):
        codes = set(op["responses"])
        if path != "/health":
            assert {"401", "403"} <= codes, path
        if "requestBody" in op:
            assert {"408", "413"} <= codes, path
        if path.startswith("/v1/") and "tracked-calls" not in path:
            assert {"422"} <= codes, path
    for op_id in ("placeCall", "hangUpCall", "transferCall", "sendMessage"):
        (op,) = [op for _, _, op in operations(doc) if op["operationId"] == op_id]
        assert "429" in op["responses"] and "Retry-After" in op["responses"]["429"]["headers"]
    assert "WWW-Authenticate" in doc["paths"]["/v1/calls"]["post"]["responses"]["401"]["headers"]


def test_every_error_response_has_the_error_body_and_examples_of_real_error_ids(doc: dict[str, Any]) -> None:
    plain = {("forgetTrackedCall", "422"), ("getReadiness", "503")}  # FastAPI's own 422; readiness' body
    for _, path, op in operations(doc):
        for code, response in op["responses"].items():
            if int(code) < 400 or (op["operationId"], code) in plain:
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
            assert media["examples"], (path, code)
            assert example_values(doc, media), (path, code)
            for value in example_values(doc, media):
                error = value["error"]
                assert f'"{error}"' in SRC, f"{path} {code}: no error {error!r} in salara"


def test_every_example_matches_its_schema(doc: dict[str, Any]) -> None:
    checked = 0
    for _, path, op in operations(doc):
        for code, response in op["responses"].items():
            for media_type, media in response.get("content", {}).items():
                for value in example_values(doc, media):
                    schema = media.get("schema") or {}
                    if media_type.startswith("text/"):
                        assert isinstance(value, str), (path, code)
                        continue
                    errors = list(schema_validator(doc, schema).iter_errors(value))
                    assert not errors, (path, code, errors[0].message)
                    checked += 1
    for name, hook in doc["webhooks"].items():
        media = hook["post"]["requestBody"]["content"]["application/json"]
        for value in example_values(doc, media):
            errors = list(schema_validator(doc, media["schema"]).iter_errors(value))
            assert not errors, (name, errors[0].message)
            checked += 1
    assert checked > 40


def test_success_answers_have_examples(doc: dict[str, Any]) -> None:
    for _, path, op in operations(doc):
        for code, response in op["responses"].items():
            if code.startswith("2") and code != "204":
                media = next(iter(response["content"].values()))
                assert "example" in media, (path, code)


def test_the_webhooks_describe_every_event_type_compat_and_extended(doc: dict[str, Any]) -> None:
    hooks = doc["webhooks"]
    assert list(hooks) == list(EVENT_TYPES)
    schemas = doc["components"]["schemas"]
    for name, hook in hooks.items():
        post = hook["post"]
        assert {p["name"] for p in post["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert {"2XX", "410", "default"} == set(post["responses"])
        media = post["requestBody"]["content"]["application/json"]
        refs = [s["$ref"] for s in media["schema"].get("anyOf", [media["schema"]])]
        bodies = [schemas[ref.rpartition("/")[2]] for ref in refs]
        assert all(body["additionalProperties"] is False for body in bodies), name
        if name.startswith("call."):
            assert set(media["examples"]) == {"lifecycle"}
            assert bodies[0]["properties"]["type"]["const"] == name
        else:
            assert set(media["examples"]) == {"compat", "extended"}
            assert [ref.rpartition("/")[2] for ref in refs] == [f"{name}Compat", f"{name}Extended"]
            assert all(body["properties"]["event"]["const"] == name for body in bodies)
            compat, extended = (set(body["properties"]) for body in bodies)
            assert {"uniqueid", "linkedid", "tracked", "timestamp", "id"} <= extended - compat


if __name__ == "__main__":
    sys.stdout.write(render(current_document()))
