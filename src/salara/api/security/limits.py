"""Hard limits on what one API request may hold, as pure functions.

The body size and the time a body may take are enforced while it is read
(:mod:`salara.api.security.middleware`), the size of the request headers by
the server (:mod:`salara.api.security.connections`); what is checked here
is the decoded request: JSON nesting (before parsing, so a deeply nested
body never reaches the JSON parser's recursion), the number of fields and
the length of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from salara.config import Api
from salara.errors import SalaraError


class LimitError(SalaraError):
    """A request exceeds a hard limit; ``status`` is the HTTP answer (400 or 413)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_fields: int = 32
    max_field_bytes: int = 1024
    max_json_depth: int = 8

    @classmethod
    def of(cls, api: Api) -> RequestLimits:
        return cls(api.max_fields, api.max_field_bytes, api.max_json_depth)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays/objects deeper than ``limit``.

    Brackets inside strings do not count. Cheap for the usual flat body: the
    scan only runs when the body holds more brackets than ``limit``.

    >>> json_depth_exceeds(b'{"a": [1, {"b": "[[[["}]}', 3)
    False
    >>> json_depth_exceeds(b'[[[[1]]]]', 3)
    True
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _size(value: object) -> int | None:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return len(repr(value))
    return None


def check_fields(data: Mapping[str, object], limits: RequestLimits) -> None:
    """Refuse too many fields, or a field name or scalar value longer than the limit."""
    if len(data) > limits.max_fields:
        raise LimitError(f"more than {limits.max_fields} fields")
    for key, value in data.items():
        if len(key.encode("utf-8", "surrogatepass")) > limits.max_field_bytes:
            raise LimitError(f"a field name is longer than {limits.max_field_bytes} bytes")
        size = _size(value)
        if size is not None and size > limits.max_field_bytes:
            raise LimitError(f"field {key[:40]!r} is longer than {limits.max_field_bytes} bytes")
