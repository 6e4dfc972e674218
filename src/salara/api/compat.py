"""The compat endpoint: the old module's API on every path (SPEC §1).

A request is a JSON object in a POST body, the same fields as a GET query
string, or a form-encoded POST body. Answers are ``{"result": N, "text":
"..."}``; errors are HTTP 4xx/5xx with ``{"result": -2, "text": "Error: ..."}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse

from salara.compat import (
    ChannelStateQuery,
    CompatRequest,
    ExtensionStateQuery,
    MakeCall,
    PeerStateQuery,
    RequestError,
    SendMessage,
    parse_request,
)
from salara.errors import AMIActionError, AMIError, AMIUnavailable, LocalProtocolError
from salara.fields import FieldError
from salara.service import StateAnswer, Telephony

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def error(status: int, reason: str) -> JSONResponse:
    """The compat error answer."""
    return JSONResponse({"result": -2, "text": f"Error: {reason}"}, status_code=status)


def decode_fields(body: bytes, content_type: str, query: Mapping[str, str]) -> dict[str, object]:
    """Merge the query string and the body (JSON object or form) into one mapping.

    Body fields win over query fields of the same name. Raises
    :class:`RequestError` for a body that is neither a JSON object nor a form.
    """
    data: dict[str, object] = dict(query)
    stripped = body.strip()
    if not stripped:
        return data
    if "json" in content_type or stripped[:1] in (b"{", b"["):
        try:
            decoded = json.loads(stripped)
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(f"invalid JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise RequestError("the JSON body must be an object")
        data.update(decoded)
        return data
    try:
        pairs = parse_qsl(stripped.decode(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise RequestError("the body is neither a JSON object nor a form") from None
    form: dict[str, object] = {}
    for key, value in pairs:
        form.setdefault(key, value)  # a repeated field: the first one counts
    data.update(form)
    return data


async def answer(telephony: Telephony, request: CompatRequest) -> StateAnswer:
    """Carry out one compat request on Asterisk."""
    match request:
        case MakeCall(operator, phone, context):
            state, _ = await telephony.make_call(operator, phone, context)
            return state
        case SendMessage(operator, phone, text, context):
            state, _ = await telephony.send_message(operator, phone, text, context)
            return state
        case ExtensionStateQuery(exten, context):
            return await telephony.extension_state(exten, context)
        case PeerStateQuery(peer):
            return await telephony.peer_state(peer)
        case ChannelStateQuery(channel):
            return await telephony.channel_state(channel)


async def handle(request: Request, telephony: Telephony) -> JSONResponse:
    """Serve one compat request: decode, validate, then (only then) touch AMI."""
    config = telephony.config
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        query = {key: value for key, value in reversed(request.query_params.multi_items())}
        data = decode_fields(body, request.headers.get("content-type", ""), query)
        parsed = parse_request(data, config.keys, config.general.default_context)
    except (RequestError, FieldError) as exc:
        log.info("compat request refused (400): %s", exc)
        return error(400, str(exc))
    if not telephony.ami.ready:
        return error(503, "Asterisk (AMI) is not connected")
    try:
        result = await answer(telephony, parsed)
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
