"""The value types of config keys, and how a key's text becomes one.

Comma lists (``IntList``, ``StrList``), yes/no flags (``Flag``), ``host:port``
addresses (:class:`HostPort`), rate limits (:class:`Rate`) and destination
allow-lists (:func:`split_destinations`), routing destinations
(:func:`destination_problem`). Pure: no file, no section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from salara import fields


class Section(BaseModel):
    """The base of every section's model: frozen, unknown keys left to the reader (it reports them)."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)


def lowered(value: object) -> object:
    """A text value stripped and in lower case (a ``BeforeValidator`` for names that ignore case)."""
    return value.strip().lower() if isinstance(value, str) else value


def host_port(default_port: int) -> BeforeValidator:
    """A ``BeforeValidator`` reading ``host[:port]`` into a :class:`HostPort` (``default_port`` when absent)."""
    return BeforeValidator(lambda v: HostPort.parse(v, default_port) if isinstance(v, str) else v)


def split_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _yes_no(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off", ""):
            return False
    return value


IntList = Annotated[tuple[int, ...], BeforeValidator(split_list)]
StrList = Annotated[tuple[str, ...], BeforeValidator(split_list)]
Flag = Annotated[bool, BeforeValidator(_yes_no)]


@dataclass(frozen=True, slots=True)
class HostPort:
    """A ``host:port`` listen or connect address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> HostPort:
        """Parse ``host:port``, ``[v6]:port``, a bare host, or a bare port (host 127.0.0.1).

        Raises ValueError, for example for an IPv6 address without brackets.
        """
        text = text.strip()
        if text.isdigit():
            host, port = "127.0.0.1", text
        elif text.startswith("["):
            host, close, rest = text[1:].partition("]")
            port = rest.removeprefix(":") if rest.startswith(":") else ""
            if not close or (rest and not rest.startswith(":")):
                raise ValueError(f"{text!r} is not [address]:port")
        elif text.count(":") > 1:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, [address]:port")
        else:
            host, _, port = text.partition(":")
        if not port and default_port is not None:
            port = str(default_port)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not host:port")
        return cls(host, int(port))


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` calls and messages per ``per_s`` seconds (``10/60``)."""

    count: int
    per_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.per_s:g}"

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``COUNT/SECONDS``; ``off`` (or ``none``, ``0``) means no limit. Raises ValueError."""
        text = text.strip().lower()
        if text in ("off", "none", "0", "no"):
            return None
        count, sep, per = text.partition("/")
        try:
            rate = cls(int(count), float(per)) if sep else None
        except ValueError:
            rate = None
        if rate is None or not 0 < rate.count <= 1_000_000 or not 0 < rate.per_s <= 86_400:
            raise ValueError(f"{text!r} is not COUNT/SECONDS (for example 10/60) or off")
        return rate


def split_destinations(value: object) -> object:
    """Split a destination allow-list: entries separated by spaces or commas.

    A comma inside ``[...]`` or ``{...}`` belongs to a regular expression
    (``^[0-9]{3,4}$`` is one entry).
    """
    if not isinstance(value, str):
        return value
    entries: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char in "[{":
            depth += 1
        elif char in "]}" and depth:
            depth -= 1
        if char.isspace() or (char == "," and not depth):
            entries.append("".join(current))
            current = []
        else:
            current.append(char)
    entries.append("".join(current))
    return tuple(entry for entry in entries if entry)


def destination_problem(value: str) -> str | None:
    """Why ``value`` cannot be a routing destination (``[general] default``, a ``[route]`` entry), or ``None``.

    The rule of the CRM's routing answer, :func:`salara.fields.extension`:
    digits, letters and ``* # + . _ -`` (no leading ``_``, a pattern), at most
    :data:`~salara.fields.MAX_EXTENSION` bytes, none of Asterisk's
    :data:`~salara.fields.SPECIAL_EXTENSIONS`. Nothing else (``9001,2``,
    ``${...}``, ``8001&PJSIP/x``) may reach a ``Goto``.
    """
    try:
        fields.extension("destination", value)
    except fields.FieldError as exc:
        return exc.reason
    return None


def check_contexts(entries: tuple[str, ...]) -> tuple[str, ...]:
    """A list of dialplan contexts (an ``AfterValidator``): each a valid context name, else ValueError."""
    for entry in entries:
        try:
            fields.context("contexts", entry)
        except fields.FieldError as exc:
            raise ValueError(exc.reason) from None
    return entries
