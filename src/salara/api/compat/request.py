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


_names_of: tuple[Keys, dict[str, tuple[str, ...]]] | None = None
"""The last ``[keys]`` seen and its names: the section changes only on reload."""


def _names(keys: Keys) -> dict[str, tuple[str, ...]]:
    """Accepted request key names per field: the configured one, then the default."""
    global _names_of
    if _names_of is not None and _names_of[0] is keys:
        return _names_of[1]
    configured = {name: getattr(keys, f"key_{name}") for name in _FIELDS}
    taken = set(configured.values())
    names: dict[str, tuple[str, ...]] = {}
    for name, key in configured.items():
        default = getattr(_DEFAULT_KEYS, f"key_{name}")
        names[name] = (key,) if default == key or default in taken else (key, default)
    _names_of = (keys, names)
    return names


def _value(data: Mapping[str, object], names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise RequestError(f"'{name}' must be a string or an integer")
            return str(value)
    return None


def parse_request(data: Mapping[str, object], keys: Keys, default_context: str) -> CompatRequest:
    """Turn a decoded request object into a typed request.

    Raises :class:`RequestError` when no request kind matches or a value has
    the wrong type, and :class:`~salara.fields.FieldError` when a value is not
    what Asterisk accepts (CR/LF included). Nothing is sent to AMI before this
    has succeeded.
    """
    names = _names(keys)
    got = {name: _value(data, names[name]) for name in _FIELDS}
    given_context = got["context"]
    context = fields.context("context", given_context) if given_context else default_context
    operator, phone, msg = got["operator"], got["phone"], got["msg"]
    if operator is not None and phone is not None:
        operator = fields.extension(names["operator"][0], operator)
        phone = fields.extension(names["phone"][0], phone)
        if msg is not None:
            return SendMessage(operator, phone, fields.message_text(names["msg"][0], msg), context)
        return MakeCall(operator, phone, context)
    if got["extension"] is not None:
        return ExtensionStateQuery(fields.extension(names["extension"][0], got["extension"]), context)
    if got["peer"] is not None:
        return PeerStateQuery(fields.endpoint(names["peer"][0], got["peer"]))
    if got["channel"] is not None:
        return ChannelStateQuery(fields.channel(names["channel"][0], got["channel"]))
    expected = ", ".join(
        f"'{names[a][0]}'" if not b else f"'{names[a][0]}'+'{names[b][0]}'"
        for a, b in (("operator", "phone"), ("extension", None), ("peer", None), ("channel", None))
    )
    raise RequestError(f"unknown request: expected {expected}")
