"""A compat request's fields: its query string and its body (a JSON object or a form), merged, within limits.

What :mod:`salara.api.compat.request` then reads as one of the old
module's requests (SPEC §1). Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl

from salara.api.compat.request import RequestError
from salara.api.security.limits import LimitError, RequestLimits, check_fields, json_depth_exceeds
from salara.config import Api

_DECODER = json.JSONDecoder()


def _json_object(text: bytes) -> object:
    """``json.loads`` of a stripped body; one that starts with ``{`` skips the encoding sniffing (it is UTF-8).

    Anything else (a UTF-8 byte order mark, UTF-16) goes through ``json.loads``.
    Raises ``UnicodeDecodeError`` or ``ValueError`` (``json.JSONDecodeError``) as ``json.loads`` does.
    """
    if text[:1] != b"{":
        return json.loads(text)
    decoded = text.decode()
    value, end = _DECODER.raw_decode(decoded)
    if end != len(decoded):
        raise json.JSONDecodeError("Extra data", decoded, end)
    return value


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
            decoded = _json_object(stripped)
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


_limits_of: tuple[object, RequestLimits] | None = None


def limits_of(api: Api) -> RequestLimits:
    """``RequestLimits.of(api)``, made again only when the ``[api]`` section changes (a reload)."""
    global _limits_of
    if _limits_of is None or _limits_of[0] is not api:
        _limits_of = (api, RequestLimits.of(api))
    return _limits_of[1]
