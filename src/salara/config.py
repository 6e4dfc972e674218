"""salara's configuration: the old module's ``salara.conf``, read as it is.

Format (the old module's, SPEC §4): ``[section]`` headers, ``key=value``
lines, whole-line ``;`` or ``#`` comments, and a ``[route]`` section of
``CALLER:CALLED`` lines. New keys salara needs live in the same file; every
key can be overridden by an environment variable ``SALARA_<SECTION>_<KEY>``
(for example ``SALARA_AMI_SECRET``). Unknown keys are logged and ignored, so
an old file with keys salara does not use still loads.

Values are validated into frozen pydantic models; a bad value raises
:class:`~salara.errors.ConfigError` naming its section and key. Durations in
code carry their unit (``_s``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import ipaddress
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from salara import fields
from salara.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "SALARA_"


def _split_list(value: object) -> object:
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


IntList = Annotated[tuple[int, ...], BeforeValidator(_split_list)]
StrList = Annotated[tuple[str, ...], BeforeValidator(_split_list)]
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


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _context(value: str) -> str:
    try:
        return fields.context("default_context", value)
    except fields.FieldError as exc:
        raise ValueError(exc.reason) from None


def _host_port(default_port: int) -> BeforeValidator:
    return BeforeValidator(lambda v: HostPort.parse(v, default_port) if isinstance(v, str) else v)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)


class General(_Section):
    """``[general]``: routing fallback, CRM timeout, default context, operator device."""

    default: str = ""
    """Fallback routing destination (for example a queue, ``710``)."""
    curlopt_timeout: float = Field(3.0, gt=0, le=300)
    """Seconds the CRM has to answer (routing lookup and each webhook POST)."""
    default_context: Annotated[str, AfterValidator(_context)] = "default"
    """Dialplan context when a request names none."""
    operator_technology: str = Field("PJSIP", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    """Channel technology of the operator's device for make call (``PJSIP/8001``)."""


class Event(_Section):
    """``[event]``: log level, originate options and per-event modes (SPEC §2)."""

    verbose: int = Field(1, ge=0, le=3)
    timeout_makecall: float = Field(30.0, gt=0, le=600)
    """Seconds the operator's device rings before make call gives up."""
    watch_makecall: Flag = False
    newchannel: int = Field(0, ge=0, le=2)
    hangup: int = Field(0, ge=0, le=2)
    newexten: int = Field(0, ge=0, le=3)
    agentcon: int = Field(0, ge=0, le=3)
    payload: Literal["compat", "extended"] = "compat"
    sweep_interval: float = Field(60.0, gt=0)
    """Seconds between checks of tracked calls against Asterisk's live channels."""


def _webhook_secret(value: str) -> str:
    if value.startswith("whsec_"):
        try:
            base64.b64decode(value[len("whsec_") :], validate=True)
        except binascii.Error:
            raise ValueError("a secret starting with whsec_ must go on in base64") from None
    return value


class Url(_Section):
    """``[url]``: API listen address, CRM URLs, good states, webhook options."""

    rest_server: Annotated[HostPort, _host_port(5058)] = HostPort("127.0.0.1", 5058)
    dest_url: str = ""
    dest_url_event: str = ""
    good_status: IntList = (0,)
    tls_verify: Flag = True
    """Verify the CRM's TLS certificate (the old module never did)."""
    webhook_secret: Annotated[str, AfterValidator(_webhook_secret)] = ""
    """When set, webhooks are signed the Standard Webhooks way."""


class Keys(_Section):
    """``[keys]``: JSON key names of the compat API (SPEC §1). Non-empty and distinct."""

    key_word: str = "personal_manager_internal_phone"
    key_operator: str = "operator"
    key_phone: str = "phone"
    key_msg: str = "msg"
    key_extension: str = "exten"
    key_peer: str = "peer"
    key_channel: str = "chan"
    key_context: str = "context"

    @model_validator(mode="after")
    def _distinct(self) -> Keys:
        names = self.model_dump()
        for key, value in names.items():
            if not value.strip():
                raise PydanticCustomError("empty_key", f"{key} may not be empty")
        request_keys = [value for key, value in names.items() if key != "key_word"]
        if len(set(request_keys)) != len(request_keys):
            raise PydanticCustomError("duplicate_key", "two request fields share one JSON key name")
        return self


class Ami(_Section):
    """``[ami]``: how salara reaches the Asterisk Manager Interface."""

    host: str = "127.0.0.1"
    port: int = Field(5038, gt=0, lt=65536)
    username: str = "salara"
    secret: str = ""
    auth: Annotated[Literal["md5", "plain"], BeforeValidator(_lower)] = "md5"
    ping_interval: float = Field(20.0, gt=0)
    reconnect_max: float = Field(5.0, gt=0)


class Agi(_Section):
    """``[agi]``: the FastAGI server that routes incoming calls."""

    listen: Annotated[HostPort, _host_port(4573)] = HostPort("127.0.0.1", 4573)
    max_sessions: int = Field(200, ge=1, le=100_000)
    """FastAGI connections served at once (a routed call holds one up to curlopt_timeout seconds)."""
    header_timeout: float = Field(1.0, gt=0, le=60)
    """Seconds a new connection has to send its whole variable block (Asterisk sends it at once)."""


class Routing(_Section):
    """``[routing]``: how routing copes with a failing CRM."""

    breaker_failures: int = Field(5, ge=1)
    """Consecutive CRM failures that open the circuit (lookups skipped)."""
    breaker_cooldown: float = Field(30.0, gt=0)
    """Seconds the circuit stays open before one lookup is tried again."""
    cache_max_age: float = Field(3600.0, ge=0)
    """Oldest CRM answer (seconds) reused for the same caller when the CRM fails; 0 disables."""
    cache_size: int = Field(10_000, ge=0)


class Outbox(_Section):
    """``[outbox]``: the durable store of events waiting for the CRM."""

    path: str = "/var/lib/salara/outbox.db"
    max_rows: int = Field(100_000, gt=0)
    retry_max: float = Field(300.0, gt=0)
    """Longest wait between two delivery attempts of one event, seconds."""
    concurrency: int = Field(8, gt=0, le=256)


ASTERISK_CONTROL_VARIABLES = (
    "BRIDGE_FEATURES",
    "TRANSFER_CONTEXT",
    "FORWARD_CONTEXT",
    "DYNAMIC_FEATURES",
    "ATTENDED_TRANSFER_COMPLETE_SOUND",
    "GOSUB_RESULT",
    "OUTBOUND_GROUP",
    "PICKUPMARK",
    "LIMIT_PLAYAUDIO_CALLER",
    "TOUCH_MONITOR",
    "TOUCH_MIXMONITOR",
    "MASTER_CHANNEL",
    "CHANNEL",
    "CALLERID",
    "DIALSTATUS",
    "SIPADDHEADER",
    "PJSIP_HEADER",
)
"""A few of Asterisk's own channel variables: a ``variable_prefix`` they start with is refused.

Not the defence (that is the prefix itself, an allow-list), only a guard
against a prefix that would let some of them through."""


def _variable_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", value):
        raise ValueError("a letter, then up to 31 letters, digits or '_' (never a leading '_': inheritance)")
    shadowed = [name for name in ASTERISK_CONTROL_VARIABLES if name.upper().startswith(value.upper())]
    if shadowed:
        raise ValueError(f"Asterisk's own {shadowed[0]} starts with it: choose a prefix of your own, e.g. CRM_")
    return value


class Api(_Section):
    """``[api]``: HTTPS, who may use the API without a token, and what a client may send."""

    tls_cert: str = ""
    """PEM certificate (chain) file: with ``tls_key``, the API speaks HTTPS only."""
    tls_key: str = ""
    allow_remote_without_token: Flag = False
    """Serve clients beyond loopback while no ``[token NAME]`` is configured (not advised)."""
    max_body_bytes: int = Field(64 * 1024, ge=256, le=16 * 1024 * 1024)
    max_fields: int = Field(32, ge=1, le=10_000)
    """Fields of one request (query string and body together)."""
    max_field_bytes: int = Field(1024, ge=64, le=1024 * 1024)
    """Longest field name or value, in UTF-8 bytes."""
    max_json_depth: int = Field(8, ge=1, le=1000)
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    """Request line and headers of one request."""
    request_timeout: float = Field(10.0, gt=0, le=600)
    """Seconds a client has to send a request's headers, and again its body."""
    max_connections: int = Field(256, ge=1, le=100_000)
    """Open connections (and requests in progress) before new requests get 503."""
    max_connections_per_client: int = Field(64, ge=0, le=100_000)
    """Open connections of one client address (an IPv6 client: its /64); more are closed at once. 0: no cap."""
    variable_prefix: Annotated[str, AfterValidator(_variable_prefix)] = "CRM_"
    """``/v1`` call ``variables`` must start with it: Asterisk's own variables stay out of reach."""


TOKEN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""What a ``[token NAME]`` may be called."""
TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")
RIGHTS = ("call", "message", "state", "admin")
Right = Literal["call", "message", "state", "admin"]
_PREFIX = re.compile(r"[0-9A-Za-z*#+]+")


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


def _check_destinations(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        if entry == "any":
            continue
        if entry.startswith("^"):
            try:
                re.compile(entry)
            except re.error as exc:
                raise ValueError(f"{entry!r} is not a regular expression: {exc}") from None
        elif not _PREFIX.fullmatch(entry):
            raise ValueError(f"{entry!r} is neither a ^regex nor a number prefix (digits, letters, * # +)")
    return entries


def _check_contexts(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        try:
            fields.context("contexts", entry)
        except fields.FieldError as exc:
            raise ValueError(exc.reason) from None
    return entries


class Token(_Section):
    """``[token NAME]``: one API client, what it may do and how often.

    Only the token's hash is stored. ``destinations`` lists what a call may
    dial (its ``phone``) and whom a message may reach (its ``operator``):
    ``^regex`` entries are matched against the whole number, other entries
    are number prefixes, ``any`` allows every number; empty allows none.
    """

    hash: str = Field(pattern=TOKEN_HASH.pattern)
    rights: Annotated[tuple[Right, ...], BeforeValidator(_split_list)] = ()
    contexts: Annotated[StrList, AfterValidator(_check_contexts)] = ()
    """Dialplan contexts calls and messages may name; empty: only ``default_context``."""
    destinations: Annotated[
        tuple[str, ...], BeforeValidator(split_destinations), AfterValidator(_check_destinations)
    ] = ()
    rate: Annotated[Rate | None, BeforeValidator(lambda v: Rate.parse(v) if isinstance(v, str) else v)] = Rate(10, 60)


SECTIONS: dict[str, type[_Section]] = {
    "general": General,
    "event": Event,
    "url": Url,
    "keys": Keys,
    "ami": Ami,
    "agi": Agi,
    "routing": Routing,
    "outbox": Outbox,
    "api": Api,
}
SECRET_KEYS = frozenset({("ami", "secret"), ("url", "webhook_secret")})
URL_KEYS = frozenset({("url", "dest_url"), ("url", "dest_url_event")})
"""CRM URLs: shown through :func:`mask_url`, as they may carry credentials."""
TOKEN_SECTION = "token "
"""Token sections are ``[token NAME]``; the name keeps its case."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. ``routes`` maps caller number to destination."""

    general: General = General()
    event: Event = Event()
    url: Url = Url()
    keys: Keys = Keys()
    ami: Ami = Ami()
    agi: Agi = Agi()
    routing: Routing = Routing()
    outbox: Outbox = Outbox()
    api: Api = Api()
    routes: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    tokens: Mapping[str, Token] = field(default_factory=dict)
    """API tokens by name (``[token NAME]`` sections)."""

    def masked(self) -> dict[str, dict[str, object]]:
        """Every setting by section, secrets replaced by ``***`` (for ``show config``)."""
        out: dict[str, dict[str, object]] = {}
        for name in SECTIONS:
            section: _Section = getattr(self, name)
            values: dict[str, object] = {}
            for key in type(section).model_fields:
                value = getattr(section, key)
                if (name, key) in SECRET_KEYS and value:
                    value = "***"
                elif (name, key) in URL_KEYS and value:
                    value = mask_url(value)
                values[key] = str(value) if isinstance(value, HostPort) else value
            out[name] = values
        out["route"] = dict(self.routes)
        for name, token in self.tokens.items():
            out[f"{TOKEN_SECTION}{name}"] = {
                "hash": "***",
                "rights": token.rights,
                "contexts": token.contexts,
                "destinations": " ".join(token.destinations),
                "rate": str(token.rate) if token.rate else "off",
            }
        return out


# -- the file format -------------------------------------------------------

_SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]\s*$")


@dataclass(slots=True)
class RawConfig:
    """A parsed file: ``{section: {key: value}}`` plus the ``[route]`` pairs in order."""

    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)


def _is_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped[0] in ";#"


def section_name(header: str) -> str:
    """The name of a ``[header]``: lower case, but a token's own name keeps its case."""
    header = header.strip()
    if header.lower().startswith(TOKEN_SECTION):
        return TOKEN_SECTION + header[len(TOKEN_SECTION) :].strip()
    return header.lower()


def _strip_comment(line: str) -> str:
    """The line without its comment: Asterisk's rule, ``;`` starts one unless written ``\\;``."""
    if ";" not in line:
        return line
    out = []
    escaped = False
    for char in line:
        if escaped:
            out.append(char if char == ";" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            break
        else:
            out.append(char)
    if escaped:
        out.append("\\")
    return "".join(out)


def parse_text(text: str) -> RawConfig:
    """Split the old module's format into sections; raises ConfigError on a bad line.

    Asterisk's config syntax, as the old module read it through Asterisk:
    ``;`` comments anywhere (``\\;`` for a literal one), ``key = value`` or
    ``key => value``, whitespace around both ignored, a UTF-8 BOM allowed.
    Errors name the line but never repeat its text (it may hold a secret).
    """
    raw = RawConfig()
    section: str | None = None
    for number, full_line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if full_line.lstrip().startswith("#"):
            continue  # Asterisk's #include/#exec directives are not followed
        line = _strip_comment(full_line).strip()
        if not line:
            continue
        match = _SECTION_RE.match(line)
        if match:
            section = section_name(match.group(1))
            raw.sections.setdefault(section, {})
            continue
        if section is None:
            raise ConfigError("?", None, f"line {number}: a setting before any [section]")
        if section == "route":
            caller, sep, called = line.partition(":")
            if not sep or not caller.strip() or not called.strip():
                raise ConfigError("route", None, f"line {number}: expected CALLER:CALLED")
            raw.routes[caller.strip()] = called.strip()
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(section, None, f"line {number}: expected key=value")
        raw.sections[section][key.strip().lower()] = value.removeprefix(">").strip()
    return raw


def _apply_env(raw: RawConfig, environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                raw.sections.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break


def build(raw: RawConfig, path: Path | None = None) -> Config:
    """Validate a :class:`RawConfig` into a :class:`Config`; raises ConfigError."""
    values: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        given = raw.sections.get(name, {})
        unknown = sorted(set(given) - set(model.model_fields))
        for key in unknown:
            log.warning("config: [%s] %s is not a salara setting; ignored", name, key)
        try:
            values[name] = model.model_validate(given)
        except ValidationError as exc:
            error = exc.errors()[0]
            bad_key = str(error["loc"][0]) if error["loc"] else None
            shown = "***" if (name, bad_key) in SECRET_KEYS else given.get(bad_key or "", "")
            raise ConfigError(name, bad_key, f"{error['msg']} (got {shown!r})") from None
    tokens = _build_tokens(raw)
    for section in sorted(set(raw.sections) - set(SECTIONS) - {"route"}):
        if not section.startswith(TOKEN_SECTION):
            log.warning("config: section [%s] is not used by salara; ignored", section)
    _check_api(values["api"])
    _check_webhook_targets(values["url"])
    return Config(**values, routes=dict(raw.routes), path=path, tokens=tokens)


def _build_tokens(raw: RawConfig) -> dict[str, Token]:
    tokens: dict[str, Token] = {}
    hashes: dict[str, str] = {}
    for section, given in raw.sections.items():
        if not section.startswith(TOKEN_SECTION):
            continue
        name = section[len(TOKEN_SECTION) :]
        if not TOKEN_NAME.fullmatch(name):
            raise ConfigError(section, None, "a token name may hold only letters, digits, '_', '.' and '-'")
        for key in sorted(set(given) - set(Token.model_fields)):
            log.warning("config: [%s] %s is not a token setting; ignored", section, key)
        try:
            token = Token.model_validate(given)
        except ValidationError as exc:
            error = exc.errors()[0]
            bad_key = str(error["loc"][0]) if error["loc"] else None
            shown = "***" if bad_key == "hash" else given.get(bad_key or "", "")
            message = error["msg"].removeprefix("Value error, ")
            raise ConfigError(section, bad_key, f"{message} (got {shown!r})") from None
        if token.hash in hashes:
            raise ConfigError(section, "hash", f"the same token as [{TOKEN_SECTION}{hashes[token.hash]}]")
        hashes[token.hash] = name
        tokens[name] = token
    return tokens


def load_tokens(path: Path) -> dict[str, Token]:
    """Only the ``[token NAME]`` sections of the file at ``path``; raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError("file", None, f"cannot read {path}: {exc.strerror}") from None
    return _build_tokens(parse_text(text))


def _check_api(api: Api) -> None:
    if bool(api.tls_cert) != bool(api.tls_key):
        missing = "tls_key" if api.tls_cert else "tls_cert"
        raise ConfigError("api", missing, "HTTPS needs both tls_cert and tls_key")


_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def normalise_host(host: str) -> str:
    """``host`` as the system's resolver reads it: one spelling per address or name.

    Lower case, without brackets or a trailing dot (``localhost.`` is
    ``localhost``); an IPv4 address in any form ``inet_aton`` accepts
    (``127.1``, ``2130706433``, ``0x7f.1``, ``0``) in dotted quad; an IPv6
    address compressed, a v4-mapped one as its IPv4 address. Names are not
    looked up.
    """
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not host or not re.fullmatch(r"[0-9a-fx.]+", host):
            return host
        try:
            return str(ipaddress.IPv4Address(socket.inet_aton(host)))
        except OSError:
            return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine's loopback or every address (``0.0.0.0``, ``::``)."""
    host = normalise_host(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_SECRET_PARAMETER = re.compile(r"key|token|secret|pass|pwd|auth|sig|credential|session", re.IGNORECASE)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:)?//[^/?#]*@")
_PARAMETER = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")


def mask_url(url: str) -> str:
    """``url`` fit to show: credentials (``user:pass@``) and secret-looking query values as ``***``.

    A query parameter counts as secret when its name holds ``key``,
    ``token``, ``secret``, ``pass``, ``pwd``, ``auth``, ``sig``,
    ``credential`` or ``session`` (``api_key=``, ``access_token=``...).
    Everything else is kept as written. A secret that is simply part of the
    path cannot be told apart from the path and is shown.

    >>> mask_url("https://crm:hunter2@crm.example/hook?api_key=abc&phone=")
    'https://***@crm.example/hook?api_key=***&phone='
    """

    def parameter(match: re.Match[str]) -> str:
        separator, name, value = match.groups()
        if value and _SECRET_PARAMETER.search(name):
            value = "***"
        return f"{separator}{name}={value}"

    def userinfo(match: re.Match[str]) -> str:
        return f"{match.group(1) or ''}//***@"

    return _PARAMETER.sub(parameter, _USERINFO.sub(userinfo, url, count=1))


def _check_webhook_targets(url: Url) -> None:
    """``dest_url`` and ``dest_url_event`` may not point at salara's own API (a loop)."""
    own = url.rest_server
    for key in ("dest_url", "dest_url_event"):
        target = getattr(url, key)
        if not target:
            continue
        try:
            parts = urlsplit(target)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
        except ValueError:
            raise ConfigError("url", key, f"{mask_url(target)!r} is not a URL") from None
        host = normalise_host(parts.hostname or "")
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise ConfigError("url", key, f"{mask_url(target)!r} is not an http(s) URL")
        own_host = normalise_host(own.host)
        same_host = host == own_host or (is_local_host(host) and is_local_host(own_host))
        if same_host and port == own.port:
            raise ConfigError("url", key, f"points at salara's own API ([url] rest_server={own})")


def load(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply ``SALARA_*`` overrides, validate.

    Raises :class:`ConfigError` for a missing file or any invalid value.
    """
    raw = RawConfig()
    file_path = Path(path) if path is not None else None
    if file_path is not None:
        try:
            text = file_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError("file", None, f"cannot read {file_path}: {exc.strerror}") from None
        raw = parse_text(text)
        _warn_if_readable(file_path)
    _apply_env(raw, os.environ if environ is None else environ)
    return build(raw, file_path)


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        log.warning("config: %s is readable by every user and may hold secrets; chmod 600 it", path)


# -- editing the route table in place ---------------------------------------


def edit_route(text: str, caller: str, called: str | None) -> str:
    """Return ``text`` with the ``[route]`` entry of ``caller`` set or removed.

    Comments, order and every other line stay as they are. ``called=None``
    deletes the entry. A missing ``[route]`` section is appended.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = end = None
    section: str | None = None
    for index, line in enumerate(lines):
        match = _SECTION_RE.match(line)
        if match:
            section = match.group(1).strip().lower()
            if section == "route" and start is None:
                start = end = index + 1
            continue
        if section == "route" and not _is_comment(line):
            end = index + 1
    new_line = f"{caller}:{called}\n" if called is not None else None
    if start is None:
        if new_line is None:
            return "".join(lines)
        return "".join(lines) + f"[route]\n{new_line}"
    assert end is not None
    for index in range(start, len(lines)):
        line = lines[index]
        if _SECTION_RE.match(line):
            break
        if not _is_comment(line) and line.strip().partition(":")[0].strip() == caller:
            if new_line is None:
                del lines[index]
            else:
                lines[index] = new_line
            return "".join(lines)
    if new_line is not None:
        lines.insert(end, new_line)
    return "".join(lines)


def lock_path(path: Path) -> Path:
    """The lock file of the config file ``path``: ``.<name>.lock`` beside it."""
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on :func:`lock_path` of ``path`` (waits for other editors).

    Every rewrite of the file (:func:`save_route`, :func:`save_token`) reads
    and replaces it under this lock, so concurrent ``salara route set`` and
    ``token create/revoke`` runs never lose each other's change. Readers need
    no lock: a rewrite is an atomic rename.
    """
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError("file", None, f"cannot lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def save_route(path: Path, caller: str, called: str | None) -> None:
    """Set (or with ``called=None`` delete) a route in the file at ``path``, atomically, under :func:`locked`."""
    for what, value in (("caller", caller), ("called", called)):
        if value is not None and not re.fullmatch(r"[0-9A-Za-z_+*#.\-]{1,80}", value):
            raise ConfigError("route", value, f"{what} must be a dial string of digits/letters")
    with locked(path):
        text = path.read_text(encoding="utf-8")
        replace_file(path, edit_route(text, caller, called))


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` atomically, keeping its permissions.

    Writes a temporary file beside it, fsyncs, then renames over the original,
    so a reader never sees half a file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- editing token sections in place -----------------------------------------


def edit_token(text: str, name: str, values: Mapping[str, str] | None) -> str:
    """Return ``text`` with the ``[token NAME]`` section replaced, added or (``values=None``) removed.

    Comments and every other section stay as they are; a replaced section
    keeps its place, a new one is appended.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    wanted = TOKEN_SECTION + name
    start = None
    end = len(lines)
    for index, line in enumerate(lines):
        match = _SECTION_RE.match(line)
        if not match:
            continue
        if start is not None:
            end = index
            break
        if section_name(match.group(1)) == wanted:
            start = index
    new = [f"[{wanted}]\n", *(f"{key} = {value}\n" for key, value in (values or {}).items())]
    if start is None:
        return "".join(lines) if values is None else "".join([*lines, *new])
    kept_comments = [line for line in lines[start + 1 : end] if _is_comment(line)]
    body = new if values is not None else []
    return "".join([*lines[:start], *body, *kept_comments, *lines[end:]])


def save_token(path: Path, name: str, values: Mapping[str, str] | None) -> None:
    """Write (or with ``values=None`` remove) the ``[token NAME]`` section of the file, atomically.

    Under :func:`locked`, like :func:`save_route`. The result must still
    load: a bad value raises :class:`ConfigError` and the file is left as it was.
    """
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(TOKEN_SECTION + name, None, "a token name may hold only letters, digits, '_', '.' and '-'")
    with locked(path):
        text = path.read_text(encoding="utf-8")
        updated = edit_token(text, name, values)
        _build_tokens(parse_text(updated))
        replace_file(path, updated)
