"""The compat endpoint: the old module's API on every path (SPEC §1).

A request is a JSON object in a POST body, the same fields as a GET query
string, or a form-encoded POST body. Answers are ``{"result": N, "text":
"..."}``; errors are HTTP 4xx/5xx with ``{"result": -2, "text": "Error: ..."}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse

from salara.api.compat.answers import StateAnswer, answer
from salara.api.compat.request import (
    RequestError,
    parse_request,
)
from salara.api.security.access import principal
from salara.api.security.denials import denial_headers, log_denial
from salara.api.security.limits import LimitError, RequestLimits, check_fields, json_depth_exceeds
from salara.control import CallControl
from salara.errors import AMIActionError, AMIError, AMIUnavailable, LocalProtocolError
from salara.fields import FieldError

log = logging.getLogger(__name__)


def error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The compat error answer."""
    return JSONResponse({"result": -2, "text": f"Error: {reason}"}, status_code=status, headers=headers)


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


async def handle(request: Request, control: CallControl) -> JSONResponse:
    """Serve one compat request: decode, validate, then (only then) touch AMI."""
    config = control.config
    body = await request.body()  # already read within [api] limits by the security middleware
    if len(body) > config.api.max_body_bytes:
        return error(413, f"body larger than {config.api.max_body_bytes} bytes")
    try:
        items = request.query_params.multi_items()
        if len(items) > config.api.max_fields:
            raise LimitError(f"more than {config.api.max_fields} fields")
        query = {key: value for key, value in reversed(items)}
        data = decode_fields(body, request.headers.get("content-type", ""), query, RequestLimits.of(config.api))
        parsed = parse_request(data, config.keys, config.general.default_context)
    except LimitError as exc:
        log.info("compat request refused (%d): %s", exc.status, exc)
        return error(exc.status, str(exc))
    except (RequestError, FieldError) as exc:
        log.info("compat request refused (400): %s", exc)
        return error(400, str(exc))
    who = principal(request)
    denial = request.app.state.security.check_compat(who, parsed, time.monotonic())
    if denial is not None:
        log_denial(request.method, request.url.path, request.client.host if request.client else None, who.name, denial)
        return error(denial.status, denial.reason, denial_headers(denial))
    if not control.pbx.ready:
        return error(503, "Asterisk (AMI) is not connected")
    try:
        result: StateAnswer = await answer(control, parsed)
    except AMIUnavailable as exc:
        return error(503, f"Asterisk (AMI) is not connected: {exc}")
    except LocalProtocolError as exc:
        log.info("compat request refused (400): %s", exc)
        return error(400, str(exc))
    except AMIActionError as exc:
        log.warning("compat request refused by Asterisk: %s", exc)
        return error(502, f"Asterisk refused: {exc.message}")
    except AMIError as exc:
        log.warning("compat request failed: %s", exc)
        return error(504, str(exc))
    return JSONResponse(result.as_dict())
