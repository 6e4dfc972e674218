"""salara's OpenAPI document as code generators read it: security, readable ids, errors, examples, webhooks.

:func:`install_openapi` makes ``app.openapi()`` (served at ``/openapi.json``)
return :func:`document`: FastAPI's description of the routes, completed with

- the security schemes ``bearer`` (``Authorization: Bearer <token>``) and
  ``apiKey`` (``X-API-Key: <token>``), the headers
  :func:`~salara.api.security.tokens.credential_from` reads, required
  everywhere but ``GET /health``;
- an ``operationId`` for every operation (``placeCall``, ``getHealth``...):
  ``/v1``'s own, else :data:`OPERATION_IDS`, else the camelCase of the
  route's function;
- every error status an operation answers (401 and 403 on every operation
  behind authentication, 408 and 413 on those with a body, 429 on those
  that count against a token's rate), each with the error body
  (``ErrorBody``) and examples (:mod:`salara.api.v1.examples`);
- examples of the success answers;
- ``webhooks``: every event body salara POSTs to the CRM, compat and
  extended (:mod:`salara.api.v1.webhooks`), with the Standard Webhooks
  headers, each with an example built by :mod:`salara.events.payload`.

``docs/openapi.json`` is :func:`render` of the document; a test keeps the
two equal.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from salara.api.security.middleware import OPEN_PATHS
from salara.api.v1 import examples, webhooks
from salara.calls.events import CrmEvent
from salara.calls.lifecycle import LifecycleEvent
from salara.events.payload import compat_body, extended_body, lifecycle_body

OPERATION_IDS: Final[dict[tuple[str, str], str]] = {
    ("GET", "/health"): "getHealth",
    ("GET", "/ready"): "getReadiness",
    ("GET", "/metrics"): "getMetrics",
    ("GET", "/v1/tracked-calls"): "listTrackedCalls",
    ("DELETE", "/v1/tracked-calls/{linkedid}"): "forgetTrackedCall",
}
"""Operation ids of the routes outside ``/v1``'s router (``/v1`` names its own)."""

RATED: Final = frozenset({"placeCall", "hangUpCall", "transferCall", "sendMessage"})
"""Operations that count against a token's rate (``[token NAME] rate``): they may answer 429."""

SECURITY_SCHEMES: Final[dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>`: a token made by `salara token create`.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key: <token>`: the same token, for clients that cannot send Authorization.",
    },
}

ERROR_DESCRIPTIONS: Final[dict[int, str]] = {
    401: "No token, or an unknown one (while tokens are configured).",
    403: "The token lacks the right, context or destination; or, with no token configured, "
    "the client is not on this machine.",
    404: "No such resource.",
    408: "The request body did not arrive within [api] request_timeout.",
    409: "The request clashes with the state of things.",
    413: "The body is larger than [api] max_body_bytes.",
    422: "The request does not validate (details: one entry per problem).",
    429: "The token's rate is used up; retry after Retry-After seconds.",
    502: "Asterisk refused the action.",
    503: "Asterisk (AMI) is not connected; nothing was sent.",
    504: "Asterisk did not answer in time.",
}

TAGS: Final[list[dict[str, str]]] = [
    {"name": "calls", "description": "Calls as resources: place, list, read, hang up, transfer."},
    {"name": "messages", "description": "SIP MESSAGE to an operator."},
    {"name": "states", "description": "Extension (hint) states, PJSIP endpoints, live channels."},
    {"name": "events", "description": "The live event stream (Server-Sent Events)."},
    {"name": "operations", "description": "Health, readiness, metrics, tracked calls."},
    {"name": "webhooks", "description": "What salara POSTs to [url] dest_url_event."},
]

DESCRIPTION: Final = """

**Authentication.** Every operation but `GET /health` needs a token, as
`Authorization: Bearer <token>` or `X-API-Key: <token>` (401 without it,
403 without the right: `call`, `message`, `state`, `admin`). While no token
is configured, clients on the machine's loopback need none.

**Errors** of `/v1` answer one JSON shape, `ErrorBody`:
`{"error": "<stable id>", "message": "...", "details": ...}`; those of the
authentication and body checks carry `error` and `message` only.

**Webhooks** describe the events salara POSTs to `[url] dest_url_event`:
the compat body (`[event] payload = compat`) or the extended one (`extended`,
also the `data` of `GET /v1/events`), and the lifecycle events
(`[event] lifecycle = yes`, extended payload only). A 2xx answer means
delivered, `410 Gone` never again; anything else is retried.
"""

ERROR_REF: Final = {"$ref": "#/components/schemas/ErrorBody"}
READINESS: Final = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ready", "unready"]}},
    "required": ["status"],
}


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`document` as ``app``'s OpenAPI document (built once, at its first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(doc: dict[str, Any]) -> str:
    """The text of ``docs/openapi.json``: the document, indented, one final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def camel(name: str) -> str:
    """``place_call`` -> ``placeCall``.

    >>> camel("tracked_calls"), camel("health")
    ('trackedCalls', 'health')
    """
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def operation_id(path: str, method: str, given: str) -> str:
    """An operation's id: :data:`OPERATION_IDS`, else its own, camelCase (FastAPI's default id made readable).

    >>> operation_id("/v1/calls", "post", "placeCall")
    'placeCall'
    >>> operation_id("/v1/tracked-calls", "get", "tracked_calls_v1_tracked_calls_get")
    'listTrackedCalls'
    >>> operation_id("/v1/widgets/{id}", "get", "read_widget_v1_widgets__id__get")
    'readWidget'
    """
    known = OPERATION_IDS.get((method.upper(), path))
    if known is not None:
        return known
    generated = re.sub(r"\W", "_", path) + "_" + method.lower()  # FastAPI's default: name + path + method
    return camel(given.removesuffix(generated)) if given.endswith(generated) else given


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of ``app``'s routes, completed (see the module's docstring)."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=(app.description or "") + DESCRIPTION,
        routes=app.routes,
        tags=TAGS,
    )
    components = doc.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    doc["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            operation["operationId"] = operation_id(path, method, operation["operationId"])
            _complete(operation, open_=path in OPEN_PATHS)
    used = {
        ref.rpartition("/")[2]
        for operations in doc["paths"].values()
        for operation in operations.values()
        for response in operation["responses"].values()
        for media in response.get("content", {}).values()
        for example in media.get("examples", {}).values()
        if (ref := example.get("$ref"))
    }
    components["examples"] = {
        name: {"summary": summary, "value": value} for name, (summary, value) in examples.ERRORS.items() if name in used
    }
    _add_webhooks(doc)
    components["schemas"] = dict(sorted(components["schemas"].items()))
    return doc


def _complete(operation: dict[str, Any], *, open_: bool) -> None:
    """Security, the error statuses with their examples, and the success examples of one operation."""
    op_id = operation["operationId"]
    responses: dict[str, Any] = operation["responses"]
    statuses = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    if open_:
        operation["security"] = []
    else:
        statuses |= {401, 403}
    if "requestBody" in operation:
        statuses |= {408, 413}
    if op_id in RATED:
        statuses |= {429}
    for status in statuses:
        response = responses.setdefault(str(status), {"description": ERROR_DESCRIPTIONS[status]})
        names = examples.OPERATION_ERRORS.get(op_id, {}).get(status) or examples.STATUS_ERRORS.get(status)
        if "content" not in response:
            response["content"] = {"application/json": {"schema": ERROR_REF}}
        media = response["content"].get("application/json")
        if names is None or media is None or media.get("schema") != ERROR_REF:
            continue  # not salara's error shape (FastAPI's own 422 outside /v1, readiness' 503)
        media["examples"] = {name: {"$ref": f"#/components/examples/{name}"} for name in names}
    if 401 in statuses:
        responses["401"]["headers"] = {
            "WWW-Authenticate": {"description": 'Bearer realm="salara"', "schema": {"type": "string"}}
        }
    for status in (429, 503):
        if str(status) in responses and (status == 429 or op_id == "streamEvents"):
            responses[str(status)]["headers"] = {
                "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
            }
    if op_id == "getReadiness":
        for code in ("200", "503"):
            responses[code]["content"] = {"application/json": {"schema": READINESS}}
    for code, example in examples.RESPONSES.get(op_id, {}).items():
        content = responses[code].setdefault("content", {"application/json": {"schema": {}}})
        next(iter(content.values()))["example"] = example
    operation["responses"] = dict(sorted(responses.items()))


WEBHOOK_HEADERS: Final[list[dict[str, Any]]] = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The event's id, the same on every attempt: drop duplicates by it (delivery is at least once).",
        "schema": {"type": "string"},
        "example": "5ada9f2bae854926a4675f0a95327914",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "The attempt's Unix time, seconds.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "example": "1795962109",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": False,
        "description": 'With [url] webhook_secret: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` '
        "(Standard Webhooks).",
        "schema": {"type": "string", "pattern": "^v1,"},
        "example": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    },
]
WEBHOOK_RESPONSES: Final[dict[str, Any]] = {
    "2XX": {"description": "Delivered."},
    "410": {"description": "Gone: salara never sends this event again."},
    "default": {"description": "Not delivered: retried with backoff and jitter, up to [outbox] retry_max seconds."},
}


def webhook_examples(name: str) -> dict[str, dict[str, Any]]:
    """The example bodies of the event ``name``, built by :mod:`salara.events.payload` (compat, extended)."""
    event_id = "5ada9f2bae854926a4675f0a95327914"
    if name in webhooks.LIFECYCLE_EXAMPLES:
        fields = {**webhooks.LIFECYCLE_EXAMPLES[name], "client_state": "lead-4711"}
        body = lifecycle_body(LifecycleEvent(name, webhooks.EXAMPLE_CALL_ID, fields), event_id)
        return {"lifecycle": {"summary": "The lifecycle event", "value": json.loads(body)}}
    crm_event = CrmEvent(
        name, webhooks.WEBHOOK_EXAMPLES[name], webhooks.EXAMPLE_CALL_ID, webhooks.EXAMPLE_CALL_ID, True
    )
    extended = extended_body(crm_event, event_id, "2026-11-29T16:41:49.494Z")
    return {
        "compat": {"summary": "[event] payload = compat", "value": json.loads(compat_body(crm_event))},
        "extended": {"summary": "[event] payload = extended", "value": json.loads(extended)},
    }


def _add_webhooks(doc: dict[str, Any]) -> None:
    models = [model for webhook in webhooks.WEBHOOKS for model in webhook.bodies]
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    schemas = doc["components"]["schemas"]
    for name, schema in top.get("$defs", {}).items():
        if schemas.get(name, schema) != schema:
            raise ValueError(f"two schemas named {name} in the OpenAPI document")
        schemas[name] = schema
    hooks: dict[str, Any] = {}
    for webhook in webhooks.WEBHOOKS:
        refs = [{"$ref": f"#/components/schemas/{model.__name__}"} for model in webhook.bodies]
        lifecycle = len(webhook.bodies) == 1
        forms = (
            "Sent with [event] payload = extended and [event] lifecycle = yes; also on GET /v1/events."
            if lifecycle
            else "The body is the compat form with [event] payload = compat, the extended one with "
            "payload = extended (also the `data` of GET /v1/events)."
        )
        hooks[webhook.name] = {
            "post": {
                "tags": ["webhooks"],
                "summary": webhook.summary,
                "description": f"{webhook.bodies[-1].__doc__} {forms}",
                "operationId": camel(webhook.name[:1].lower() + webhook.name[1:].replace(".", "_")) + "Webhook",
                "parameters": WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": refs[0] if lifecycle else {"anyOf": refs},
                            "examples": webhook_examples(webhook.name),
                        }
                    },
                },
                "responses": WEBHOOK_RESPONSES,
            }
        }
    doc["webhooks"] = hooks
