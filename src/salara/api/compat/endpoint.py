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

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from salara.api.compat.answers import StateAnswer, answer, answer_now
from salara.api.compat.decoding import decode_fields, limits_of
from salara.api.compat.module import COMPAT_ERROR_PREFIX, MODULE_ERROR_BODY
from salara.api.compat.request import CompatRequest, RequestError, parse_request
from salara.api.security.denials import denial_headers, error_body, log_denial
from salara.api.security.limits import LimitError
from salara.api.security.middleware import SecurityMiddleware, client_host, header_fields, over_cap
from salara.api.security.tokens import Denial, Principal, Security
from salara.api.security.transport import WHOLE_ANSWER_EXTENSION
from salara.config import Config
from salara.control import CallControl
from salara.errors import AMIActionError, AMIError, AMIUnavailable, LocalProtocolError
from salara.fields import FieldError
from salara.jsonbytes import dumps
from salara.metrics import Metrics

log = logging.getLogger(__name__)


def render(content: Mapping[str, object]) -> bytes:
    """A JSON body as Starlette's ``JSONResponse`` renders it (compact, UTF-8); no answer holds a float."""
    return dumps(content)


@dataclass(slots=True)
class Answer:
    """One compat answer: HTTP ``status``, the JSON ``body`` bytes and extra ``headers`` (lower-case names)."""

    status: int
    body: bytes
    headers: Mapping[str, str] | None = None

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as ``JSONResponse`` sends them: the extra ones, then content-length and content-type."""
        if not self.headers:
            plain = _PLAIN_HEADERS.get(len(self.body))
            if plain is None:
                plain = [(b"content-length", str(len(self.body)).encode()), (b"content-type", b"application/json")]
                if len(_PLAIN_HEADERS) < 256:
                    _PLAIN_HEADERS[len(self.body)] = plain
            return plain
        raw = self.extra_headers()
        raw.append((b"content-length", str(len(self.body)).encode()))
        raw.append((b"content-type", b"application/json"))
        return raw

    def extra_headers(self) -> list[tuple[bytes, bytes]]:
        """The extra headers as raw ASGI pairs (lower-case names, latin-1)."""
        if not self.headers:
            return []
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (self.headers or {}).items()]


_PLAIN_HEADERS: dict[int, list[tuple[bytes, bytes]]] = {}
"""The headers of an answer without extra ones, by body length (uvicorn only reads them)."""


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


@dataclass(slots=True)
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


_parsed_of: tuple[Config, dict[tuple[bytes, bytes, str], CompatRequest]] | None = None
"""The requests decoded under one config, by (body, query string, content type): polls repeat the same few."""
MAX_PARSED: Final = 1024
"""Most decoded requests kept (the oldest go first); their bodies are at most :data:`MAX_PARSED_BODY` bytes."""
MAX_PARSED_BODY: Final = 256


def _decoded(call: CompatCall, config: Config) -> CompatRequest:
    global _parsed_of
    if _parsed_of is None or _parsed_of[0] is not config:  # a reload: the keys, context and limits may differ
        _parsed_of = (config, {})
    known = _parsed_of[1]
    key = (call.body, call.query_string, call.content_type)
    parsed = known.get(key)
    if parsed is not None:
        return parsed
    api = config.api
    items = parse_qsl(call.query_string.decode("latin-1"), keep_blank_values=True) if call.query_string else []
    if len(items) > api.max_fields:
        raise LimitError(f"more than {api.max_fields} fields")
    query = dict(reversed(items)) if items else {}  # the first of a repeated field counts
    data = decode_fields(call.body, call.content_type, query, limits_of(api))
    parsed = parse_request(data, config.keys, config.general.default_context)
    if len(call.body) + len(call.query_string) <= MAX_PARSED_BODY:
        if len(known) >= MAX_PARSED:
            del known[next(iter(known))]
        known[key] = parsed
    return parsed


def check_request(call: CompatCall, config: Config) -> Answer | CompatRequest:
    """The request ``call`` carries, decoded and validated; or the answer refusing it (413, 4xx, 400, 401).

    Nothing here depends on who asks but the 401 (no principal), and nothing counts against a rate.
    A request decoded once is not decoded again (the parse is a pure function of the config and
    the request's bytes; only valid ones are kept, an invalid one is logged each time).
    """
    api = config.api
    if len(call.body) > api.max_body_bytes:
        return error_answer(413, f"body larger than {api.max_body_bytes} bytes")
    try:
        parsed = _decoded(call, config)
    except LimitError as exc:
        log.info("compat request refused (%d): %s", exc.status, exc)
        return error_answer(exc.status, str(exc))
    except (RequestError, FieldError) as exc:
        log.info("compat request refused (400): %s", exc)
        return error_answer(400, str(exc))
    if call.principal is None:
        return error_answer(401, "not authenticated", {"www-authenticate": 'Bearer realm="salara"'})
    return parsed


def refuse_request(
    call: CompatCall, who: Principal, parsed: CompatRequest, control: CallControl, security: Security
) -> Answer | None:
    """The answer refusing ``parsed`` to ``who`` (its rights, its rate; 503 when its PBX is away), or None.

    A call or a message counts against ``who``'s rate here (once per request).
    """
    denial = security.check_compat(who, parsed, time.monotonic())
    if denial is not None:
        log_denial(call.method, call.path, call.client, who.name, denial)
        return error_answer(denial.status, denial.reason, denial_headers(denial))
    if not control.sites.serving(getattr(parsed, "context", "")).pbx.ready:  # the PBX serving its context
        return error_answer(503, "Asterisk (AMI) is not connected")
    return None


async def serve(call: CompatCall, control: CallControl, security: Security) -> Answer:
    """Serve one compat request: decode, validate, authorize, then (only then) touch AMI.

    Errors are answers, never raised: 4xx for the request (too big,
    malformed, refused), 503 when AMI is not connected, 502 when Asterisk
    refuses the action, 504 when it does not answer in time.
    """
    parsed = check_request(call, control.config)
    if isinstance(parsed, Answer):
        return parsed
    assert call.principal is not None  # check_request answers 401 without one
    refused = refuse_request(call, call.principal, parsed, control, security)
    if refused is not None:
        return refused
    known = answer_now(control, parsed)
    if known is not None:
        return _ok(known)
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


def serve_now(call: CompatCall, control: CallControl, security: Security) -> Answer | None:
    """:func:`serve`'s answer when it is known at once (no AMI round trip, nothing awaited), else None.

    None leaves nothing done that :func:`serve` would do again: a request
    refused before its rights are checked is answered here, one whose state
    is not known is left before them (they may count a call against a rate).
    """
    parsed = check_request(call, control.config)
    if isinstance(parsed, Answer):
        return parsed
    assert call.principal is not None
    if not control.sites.serving(getattr(parsed, "context", "")).pbx.ready:
        return None  # serve answers 503 after the rights: theirs may be the answer
    known = answer_now(control, parsed)
    if known is None:
        return None
    return refuse_request(call, call.principal, parsed, control, security) or _ok(known)


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
    """The compat endpoint as one bare ASGI app: the security gate, :func:`serve`, the metrics, in one coroutine.

    What the app's middleware does to every request, done inline for the
    compat requests :class:`~salara.api.compat.dispatch.CompatFirst` sends
    here, with the same functions and the same answers: ``gate`` (the
    :class:`~salara.api.security.middleware.SecurityMiddleware` of the
    app) admits the client and reads the body, ``metrics`` counts the
    request under the catch-all route, and with ``module_errors`` every
    error answer carries the old module's body
    (:class:`~salara.api.compat.module.ModuleErrors`). Without the layers'
    wrapped ``send`` and ``receive`` a request costs about a third less
    CPU. An answer without extra headers goes out in one write by salara's
    protocol (:data:`~salara.api.security.transport.WHOLE_ANSWER_EXTENSION`), any
    other in two sends (which the protocol writes as one).
    """

    def __init__(
        self,
        control: CallControl,
        security: Security,
        gate: SecurityMiddleware,
        metrics: Metrics | None = None,
        *,
        module_errors: bool = False,
    ) -> None:
        self.control = control
        self.security = security
        self.gate = gate
        self.metrics = metrics
        self.module_errors = module_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the metrics middleware counts when no answer was sent
        started_answer = False
        try:
            result = await self._answer(scope, receive)
            if result is not None:
                result = self.finish(result)
                status = result.status
                started_answer = True
                whole = None if result.headers else (scope.get("extensions") or {}).get(WHOLE_ANSWER_EXTENSION)
                if whole is None or not whole["send"](send, status, result.body):
                    await send({"type": "http.response.start", "status": status, "headers": result.raw_headers()})
                    await send({"type": "http.response.body", "body": result.body})
        except Exception:
            # As Starlette's ServerErrorMiddleware: a plain 500 if nothing was sent, and the error raised on
            # for uvicorn to log it.
            if not started_answer:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe_request(scope["method"], COMPAT_ROUTE, status, time.perf_counter() - started)

    def finish(self, result: Answer) -> Answer:
        """``result`` as sent: with ``module_errors``, an error carries the old module's body instead."""
        if self.module_errors and result.status >= 400 and result.body.startswith(COMPAT_ERROR_PREFIX):
            return Answer(result.status, MODULE_ERROR_BODY, result.headers)
        return result

    async def _answer(self, scope: Scope, receive: Receive) -> Answer | None:
        """The answer to send, or None when the client left before its body arrived."""
        denial = over_cap(scope)
        if denial is not None:  # relayed by a proxy for a client over its cap (logged by the protocol)
            return refusal(scope, denial, close=True)
        fields = header_fields(scope)
        admitted = self.admit(scope, fields)
        if isinstance(admitted, Answer):
            return admitted
        body = await self.gate.read_body(receive, fields)
        if body is None:
            return None
        if isinstance(body, Denial):
            return self.refuse_body(scope, admitted, body)
        return await serve(self.call_of(scope, fields, body, admitted), self.control, self.security)

    def admit(self, scope: Scope, fields: dict[str, str]) -> Principal | Answer | None:
        """Who sends ``scope`` (the gate's admission), or the refusal to answer, logged."""
        admitted = self.gate.admit(scope, fields)
        if isinstance(admitted, Denial):
            log_denial(scope["method"], scope["path"], client_host(scope), "-", admitted)
            return refusal(scope, admitted)
        return admitted

    @staticmethod
    def refuse_body(scope: Scope, who: Principal | None, denial: Denial) -> Answer:
        """The refusal of a request's body (413, 408), logged; the connection closes after it."""
        log_denial(scope["method"], scope["path"], client_host(scope), who.name if who else "-", denial)
        return refusal(scope, denial, close=True)

    @staticmethod
    def call_of(scope: Scope, fields: dict[str, str], body: bytes, who: Principal | None) -> CompatCall:
        """The compat request of ``scope`` (headers ``fields``) with its whole ``body``, sent by ``who``."""
        return CompatCall(
            scope["method"],
            scope.get("root_path", "") + scope["path"],
            client_host(scope),
            scope.get("query_string", b""),
            fields.get("content-type", ""),
            body,
            who,
        )


COMPAT_ROUTE = "/{path:path}"
"""The catch-all route's template: the metrics' ``route`` label of every compat request."""


def refusal(scope: Scope, denial: Denial, *, close: bool = False) -> Answer:
    """The answer the security middleware gives ``denial`` (its body, its headers; ``close``: end the connection)."""
    headers = denial_headers(denial)
    if close:  # the rest of the body is not wanted: end the connection after the answer
        headers["connection"] = "close"
    return Answer(denial.status, render(error_body(scope.get("path", ""), denial.status, denial.reason)), headers)
