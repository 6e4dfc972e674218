"""The compat endpoint: the old module's API on every path (SPEC §1).

A request is a JSON object in a POST body, the same fields as a GET query
string, or a form-encoded POST body. Answers are ``{"result": N, "text":
"..."}``; errors are HTTP 4xx/5xx with ``{"result": -2, "text": "Error: ..."}``.

:func:`serve` is the endpoint on plain values (the body already read, the
client already authenticated); :class:`CompatEndpoint` runs it as a bare
ASGI app (what :class:`~salara.api.compat.dispatch.CompatFirst` serves old
CRMs with, ahead of FastAPI), :func:`handle` as a FastAPI route (the
catch-all behind FastAPI's routing). Both send the same bytes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from salara.api.compat.answers import StateAnswer, answer
from salara.api.compat.request import (
    RequestError,
    parse_request,
)
from salara.api.security.denials import denial_headers, log_denial
from salara.api.security.limits import LimitError, RequestLimits, check_fields, json_depth_exceeds
from salara.api.security.tokens import Principal, Security
from salara.control import CallControl
from salara.errors import AMIActionError, AMIError, AMIUnavailable, LocalProtocolError
from salara.fields import FieldError

log = logging.getLogger(__name__)


def render(content: Mapping[str, object]) -> bytes:
    """A JSON body as Starlette's ``JSONResponse`` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Answer:
    """One compat answer: HTTP ``status``, the JSON ``body`` bytes and extra ``headers`` (lower-case names)."""

    status: int
    body: bytes
    headers: Mapping[str, str] | None = None

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as ``JSONResponse`` sends them: the extra ones, then content-length and content-type."""
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (self.headers or {}).items()]
        raw.append((b"content-length", str(len(self.body)).encode()))
        raw.append((b"content-type", b"application/json"))
        return raw


_RENDERED: dict[StateAnswer, bytes] = {}
"""Rendered state answers: there are few (a state code and its name), and polls repeat them."""


def _ok(result: StateAnswer) -> Answer:
    body = _RENDERED.get(result)
    if body is None:
        body = render(result.as_dict())
        if len(_RENDERED) < 1024:  # channel names make new texts; the usual answers fit many times over
            _RENDERED[result] = body
    return Answer(200, body)


def error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The compat error answer."""
    return JSONResponse({"result": -2, "text": f"Error: {reason}"}, status_code=status, headers=headers)


def error_answer(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Answer:
    """The compat error answer as an :class:`Answer` (the same bytes as :func:`error`)."""
    return Answer(status, render({"result": -2, "text": f"Error: {reason}"}), headers)


def decode_fields(
    body: bytes, content_type: str, query: Mapping[str, str], limits: RequestLimits | None = None
) -> dict[str, object]:
    """Merge the query string and the body (JSON object or form) into one mapping.

    Body fields win over query fields of the same name. Raises
    :class:`RequestError` for a body that is neither a JSON object nor a form,
    :class:`~salara.guards.LimitError` for one beyond ``limits``.
    """
    limits = limits or RequestLimits()
    data: dict[str, object] = dict(query)
    check_fields(data, limits)
    stripped = body.strip()
    if not stripped:
        return data
    if "json" in content_type or stripped[:1] in (b"{", b"["):
        if json_depth_exceeds(stripped, limits.max_json_depth):
            raise LimitError(f"JSON nested deeper than {limits.max_json_depth} levels")
        try:
            decoded = json.loads(stripped)
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(f"invalid JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise RequestError("the JSON body must be an object")
        data.update(decoded)
        check_fields(data, limits)
        return data
    try:
        if b"=" not in stripped:
            raise ValueError("no field")
        # As lenient as a query string: "exten=9001&" and "a=1&&b=2" are forms too.
        pairs = parse_qsl(stripped.decode(), keep_blank_values=True, max_num_fields=limits.max_fields)
    except (UnicodeDecodeError, ValueError):
        raise RequestError("the body is neither a JSON object nor a form (or has too many fields)") from None
    form: dict[str, object] = {}
    for key, value in pairs:
        form.setdefault(key, value)  # a repeated field: the first one counts
    data.update(form)
    check_fields(data, limits)
    return data


@dataclass(frozen=True, slots=True)
class CompatCall:
    """One compat request as the endpoint needs it (what Starlette's ``Request`` would give)."""

    method: str
    path: str
    client: str | None
    query_string: bytes
    """Raw, as in the ASGI scope (latin-1, as Starlette decodes it)."""
    content_type: str
    body: bytes
    principal: Principal | None
    """Set by the security middleware; None: not authenticated (answered 401)."""


async def serve(call: CompatCall, control: CallControl, security: Security) -> Answer:
    """Serve one compat request: decode, validate, authorize, then (only then) touch AMI.

    Errors are answers, never raised: 4xx for the request (too big,
    malformed, refused), 503 when AMI is not connected, 502 when Asterisk
    refuses the action, 504 when it does not answer in time.
    """
    config = control.config
    api = config.api
    if len(call.body) > api.max_body_bytes:
        return error_answer(413, f"body larger than {api.max_body_bytes} bytes")
    try:
        items = parse_qsl(call.query_string.decode("latin-1"), keep_blank_values=True) if call.query_string else []
        if len(items) > api.max_fields:
            raise LimitError(f"more than {api.max_fields} fields")
        query = {key: value for key, value in reversed(items)}
        data = decode_fields(call.body, call.content_type, query, RequestLimits.of(api))
        parsed = parse_request(data, config.keys, config.general.default_context)
    except LimitError as exc:
        log.info("compat request refused (%d): %s", exc.status, exc)
        return error_answer(exc.status, str(exc))
    except (RequestError, FieldError) as exc:
        log.info("compat request refused (400): %s", exc)
        return error_answer(400, str(exc))
    who = call.principal
    if who is None:
        return error_answer(401, "not authenticated", {"www-authenticate": 'Bearer realm="salara"'})
    denial = security.check_compat(who, parsed, time.monotonic())
    if denial is not None:
        log_denial(call.method, call.path, call.client, who.name, denial)
        return error_answer(denial.status, denial.reason, denial_headers(denial))
    if not control.pbx.ready:
        return error_answer(503, "Asterisk (AMI) is not connected")
    try:
        result: StateAnswer = await answer(control, parsed)
    except AMIUnavailable as exc:
        return error_answer(503, f"Asterisk (AMI) is not connected: {exc}")
    except LocalProtocolError as exc:
        log.info("compat request refused (400): %s", exc)
        return error_answer(400, str(exc))
    except AMIActionError as exc:
        log.warning("compat request refused by Asterisk: %s", exc)
        return error_answer(502, f"Asterisk refused: {exc.message}")
    except AMIError as exc:
        log.warning("compat request failed: %s", exc)
        return error_answer(504, str(exc))
    return _ok(result)


def _principal(scope: Scope) -> Principal | None:
    found: Principal | None = scope.get("state", {}).get("principal")
    return found


async def handle(request: Request, control: CallControl) -> Response:
    """Serve one compat request as a FastAPI route (:func:`serve` on the ``Request``)."""
    scope = request.scope
    call = CompatCall(
        request.method,
        request.url.path,
        request.client.host if request.client else None,
        scope.get("query_string", b""),
        request.headers.get("content-type", ""),
        await request.body(),  # already read within [api] limits by the security middleware
        _principal(scope),
    )
    result = await serve(call, control, request.app.state.security)
    return Response(result.body, result.status, result.headers, media_type="application/json")


class CompatEndpoint:
    """The compat endpoint as a bare ASGI app: :func:`serve`, and the answer in two sends.

    Needs the security middleware in front (the body read, the principal
    in ``scope["state"]``), as every route has.
    """

    def __init__(self, control: CallControl, security: Security) -> None:
        self.control = control
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        content_type = ""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break
        client = scope.get("client")
        call = CompatCall(
            scope["method"],
            scope.get("root_path", "") + scope["path"],
            client[0] if client else None,
            scope.get("query_string", b""),
            content_type,
            chunks[0] if len(chunks) == 1 else b"".join(chunks),
            _principal(scope),
        )
        result = await serve(call, self.control, self.security)
        await send({"type": "http.response.start", "status": result.status, "headers": result.raw_headers()})
        await send({"type": "http.response.body", "body": result.body})
