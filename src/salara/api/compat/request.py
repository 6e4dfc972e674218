"""The old module's request format (SPEC §1), as pure functions.

A compat request is a flat object; which keys are present decides what it is,
in this order: operator+phone+msg (send a message), operator+phone (make a
call), exten (extension state), peer (peer state), chan (channel state).
Key names come from ``[keys]``; the SPEC's default name is accepted too
unless it is configured for another field. Values may be strings or integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from salara import fields
from salara.config import Keys
from salara.errors import SalaraError


class RequestError(SalaraError):
    """The request is not a valid compat request; the text says why."""


@dataclass(frozen=True, slots=True)
class MakeCall:
    operator: str
    phone: str
    context: str


@dataclass(frozen=True, slots=True)
class SendMessage:
    operator: str
    phone: str
    text: str
    context: str


@dataclass(frozen=True, slots=True)
class ExtensionStateQuery:
    exten: str
    context: str


@dataclass(frozen=True, slots=True)
class PeerStateQuery:
    peer: str


@dataclass(frozen=True, slots=True)
class ChannelStateQuery:
    channel: str


CompatRequest = MakeCall | SendMessage | ExtensionStateQuery | PeerStateQuery | ChannelStateQuery

_DEFAULT_KEYS = Keys()
_FIELDS = ("operator", "phone", "msg", "extension", "peer", "channel", "context")


_names_of: tuple[Keys, dict[str, tuple[str, ...]], dict[str, tuple[str, int]]] | None = None
"""The last ``[keys]`` seen, its names per field and the field and rank of each name: the section changes only
on reload."""


def _names(keys: Keys) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, int]]]:
    """Accepted request key names per field (the configured one, then the default), and each name's field and rank."""
    global _names_of
    if _names_of is not None and _names_of[0] is keys:
        return _names_of[1], _names_of[2]
    configured = {name: getattr(keys, f"key_{name}") for name in _FIELDS}
    taken = set(configured.values())
    names: dict[str, tuple[str, ...]] = {}
    for name, key in configured.items():
        default = getattr(_DEFAULT_KEYS, f"key_{name}")
        names[name] = (key,) if default == key or default in taken else (key, default)
    fields_of = {key: (name, rank) for name, keys_of in names.items() for rank, key in enumerate(keys_of)}
    _names_of = (keys, names, fields_of)
    return names, fields_of


def _values(data: Mapping[str, object], fields_of: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The request's value of each field it has: under the configured name if both names are given."""
    found: dict[str, tuple[int, str, object]] = {}
    for key, value in data.items():  # a request has a few keys; the fields are seven
        hit = fields_of.get(key)
        if hit is not None:
            field, rank = hit
            if field not in found or rank < found[field][0]:
                found[field] = (rank, key, value)
    got: dict[str, str] = {}
    for field, (_, key, value) in found.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RequestError(f"'{key}' must be a string or an integer")
        got[field] = str(value)
    return got


def parse_request(data: Mapping[str, object], keys: Keys, default_context: str) -> CompatRequest:
    """Turn a decoded request object into a typed request.

    Raises :class:`RequestError` when no request kind matches or a value has
    the wrong type, and :class:`~salara.fields.FieldError` when a value is not
    what Asterisk accepts (CR/LF included). Nothing is sent to AMI before this
    has succeeded.
    """
    names, fields_of = _names(keys)
    got = _values(data, fields_of)
    given_context = got.get("context")
    context = fields.context("context", given_context) if given_context else default_context
    operator, phone, msg = got.get("operator"), got.get("phone"), got.get("msg")
    if operator is not None and phone is not None:
        operator = fields.extension(names["operator"][0], operator)
        phone = fields.extension(names["phone"][0], phone)
        if msg is not None:
            return SendMessage(operator, phone, fields.message_text(names["msg"][0], msg), context)
        return MakeCall(operator, phone, context)
    if (exten := got.get("extension")) is not None:
        return ExtensionStateQuery(fields.extension(names["extension"][0], exten), context)
    if (peer := got.get("peer")) is not None:
        return PeerStateQuery(fields.endpoint(names["peer"][0], peer))
    if (channel := got.get("channel")) is not None:
        return ChannelStateQuery(fields.channel(names["channel"][0], channel))
    expected = ", ".join(
        f"'{names[a][0]}'" if not b else f"'{names[a][0]}'+'{names[b][0]}'"
        for a, b in (("operator", "phone"), ("extension", None), ("peer", None), ("channel", None))
    )
    raise RequestError(f"unknown request: expected {expected}")
