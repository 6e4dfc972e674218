"""The configuration's schema: one frozen pydantic model per ``[section]``, and :class:`Config`.

Pure: no file I/O and no file format (reading is :mod:`salara.config.reader`).
A bad value raises pydantic's ``ValidationError``; the reader turns it into a
:class:`~salara.errors.ConfigError` naming its section and key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from salara import fields
from salara.config.hosts import mask_url
from salara.config.pbxs import AMI_SECTION, Agi, Ami
from salara.config.recording import Recordings
from salara.config.values import (
    Flag,
    HostPort,
    IntList,
    Rate,
    Section,
    StrList,
    check_contexts,
    host_port,
    lowered,
    split_destinations,
    split_list,
)
from salara.config.webhooks import WEBHOOK_SECTION, Webhook, check_secrets


def _context(value: str) -> str:
    try:
        return fields.context("default_context", value)
    except fields.FieldError as exc:
        raise ValueError(exc.reason) from None


class General(Section):
    """``[general]``: routing fallback, CRM timeout, default context, operator device."""

    default: str = ""
    """Fallback routing destination (for example a queue, ``710``)."""
    curlopt_timeout: float = Field(3.0, gt=0, le=300)
    """Seconds the CRM has to answer (routing lookup and each webhook POST)."""
    default_context: Annotated[str, AfterValidator(_context)] = "default"
    """Dialplan context when a request names none."""
    operator_technology: str = Field("PJSIP", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    """Channel technology of the operator's device for make call (``PJSIP/8001``)."""
    answers: Annotated[Literal["readme", "module"], BeforeValidator(lowered)] = "readme"
    """Compat bodies: ``readme`` as the old module's README documents them (errors say why), or
    ``module`` byte for byte as its code sent them (channel state ``{"result":6,"text":"UP"}``,
    every error ``{"result":-2,"text":"Error"}``). HTTP statuses are salara's either way."""
    log_format: Annotated[Literal["text", "json"], BeforeValidator(lowered)] = "text"
    """``text`` (with syslog priorities under systemd) or ``json`` lines (:mod:`salara.logformat`)."""
    edit_file: str = ""
    """Where ``salara route set`` and ``token create`` put new entries and sections (relative: to the main
    file's directory; the main file must include it); empty: the main file (:mod:`salara.config.editor`)."""


class Event(Section):
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
    lifecycle: Flag = False
    """Also post the call lifecycle events (``call.started`` ... ``call.ended``) to ``dest_url_event``.

    They always go to the live stream; to the webhook only with ``payload =
    extended``, so a CRM of the old module's format never sees a new type."""

    @model_validator(mode="after")
    def _lifecycle_needs_extended(self) -> Event:
        if self.lifecycle and self.payload != "extended":
            raise PydanticCustomError(
                "lifecycle_needs_extended", "lifecycle = yes needs payload = extended (compat bodies stay as they are)"
            )
        return self


class Url(Section):
    """``[url]``: API listen address, CRM URLs, good states, webhook options."""

    rest_server: Annotated[HostPort, host_port(5058)] = HostPort("127.0.0.1", 5058)
    dest_url: str = ""
    dest_url_event: str = ""
    good_status: IntList = (0,)
    tls_verify: Flag = True
    """Verify the CRM's TLS certificate (the old module never did)."""
    webhook_secret: Annotated[str, AfterValidator(check_secrets)] = ""
    """When set, webhooks are signed the Standard Webhooks way; two secrets (space between) during a rotation."""


class Keys(Section):
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


class Routing(Section):
    """``[routing]``: how routing copes with a failing CRM."""

    breaker_failures: int = Field(5, ge=1)
    """Consecutive CRM failures that open the circuit (lookups skipped)."""
    breaker_cooldown: float = Field(30.0, gt=0)
    """Seconds the circuit stays open before one lookup is tried again."""
    cache_max_age: float = Field(3600.0, ge=0)
    """Oldest CRM answer (seconds) reused for the same caller when the CRM fails; 0 disables."""
    cache_size: int = Field(10_000, ge=0)
    key_caller_name: str = Field("caller_name", min_length=1, max_length=64)
    """The key of the CRM's routing answer that names the caller (``CALLERID(name)``, lifecycle events)."""


class Outbox(Section):
    """``[outbox]``: the durable store of events waiting for the CRM."""

    path: str = "/var/lib/salara/outbox.db"
    """The SQLite file of the store, when there is no ``url``."""
    url: str = Field("", pattern=r"^(postgres(ql)?://\S*)?$")
    """``postgresql://user:password@host:port/db`` (libpq's URI): the store on PostgreSQL (``salara db migrate``)."""
    node: str = Field("", max_length=128)
    """This node's name on a PostgreSQL store: its claims are its own (empty: the host name). Each node its own."""
    lease: float = Field(60.0, gt=0, le=3600)
    """Seconds a PostgreSQL claim holds a delivery unrenewed; then another node may send it (renewed every 1/3)."""
    takeover: float = Field(1.0, ge=0.1, le=60)
    """Seconds between a PostgreSQL node's attempts to lead, and between the leader's checks of its lock."""
    max_rows: int = Field(100_000, gt=0)
    retry_max: float = Field(300.0, gt=0)
    """Longest wait between two delivery attempts of one event, seconds (a ``Retry-After`` may ask more)."""
    retry_for: float = Field(3 * 86400.0, gt=0)
    """Seconds an event is tried for, from when it was stored; then it is dead (kept, replayable)."""
    keep_days: float = Field(3.0, ge=0)
    """Days a stored event is kept once every endpoint is done with it (the event log), within ``max_rows``."""
    concurrency: int = Field(256, gt=0, le=1024)
    """Most event POSTs in flight to the CRM; how many it takes is found below that (from 8)."""


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


def _trusted_proxies(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        if entry == "*":
            raise ValueError("'*' would trust every client's X-Forwarded-For: any client could claim to be local")
        try:
            ipaddress.ip_network(entry) if "/" in entry else ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is neither an IP address nor a network (names are not looked up)") from None
    return entries


class Api(Section):
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
    trusted_proxies: Annotated[StrList, AfterValidator(_trusted_proxies)] = ("127.0.0.1", "::1")
    """Reverse proxies (IP addresses, networks) whose ``X-Forwarded-For`` names the client; once one relays,
    its connections are not capped as one client's, its clients are (by that header). Empty: none."""
    variable_prefix: Annotated[str, AfterValidator(_variable_prefix)] = "CRM_"
    """``/v1`` call ``variables`` must start with it: Asterisk's own variables stay out of reach."""
    public_url: str = Field("", pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")
    """How the CRM reaches this API (``https://pbx.example.com:5058``): the base of links salara sends,
    such as a recording's signed URL. Empty: no links."""


TOKEN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""What a ``[token NAME]`` may be called."""
TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")
RIGHTS = ("call", "message", "state", "recordings", "admin")
Right = Literal["call", "message", "state", "recordings", "admin"]
_PREFIX = re.compile(r"[0-9A-Za-z*#+]+")


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


class Calls(Section):
    """``[calls]``: what the call model takes from the dialplan."""

    inbound_contexts: Annotated[StrList, AfterValidator(check_contexts)] = ()
    """Dialplan contexts where calls from outside enter (a trunk's): a call in one is ``inbound``."""


class Token(Section):
    """``[token NAME]``: one API client, what it may do and how often.

    Only the token's hash is stored. ``destinations`` lists what a call may
    dial (its ``phone``) and whom a message may reach (its ``operator``):
    ``^regex`` entries are matched against the whole number, other entries
    are number prefixes, ``any`` allows every number; empty allows none.
    """

    hash: str = Field(pattern=TOKEN_HASH.pattern)
    rights: Annotated[tuple[Right, ...], BeforeValidator(split_list)] = ()
    contexts: Annotated[StrList, AfterValidator(check_contexts)] = ()
    """Dialplan contexts calls and messages may name; empty: only ``default_context``."""
    destinations: Annotated[
        tuple[str, ...], BeforeValidator(split_destinations), AfterValidator(_check_destinations)
    ] = ()
    rate: Annotated[Rate | None, BeforeValidator(lambda v: Rate.parse(v) if isinstance(v, str) else v)] = Rate(10, 60)


SECTIONS: dict[str, type[BaseModel]] = {
    "general": General,
    "event": Event,
    "url": Url,
    "keys": Keys,
    "ami": Ami,
    "agi": Agi,
    "routing": Routing,
    "calls": Calls,
    "outbox": Outbox,
    "api": Api,
    "recordings": Recordings,
}
SECRET_KEYS = frozenset({("ami", "secret"), ("url", "webhook_secret")})
URL_KEYS = frozenset({("url", "dest_url"), ("url", "dest_url_event"), ("outbox", "url")})
"""CRM URLs and the PostgreSQL store's: shown through :func:`mask_url`, as they may carry credentials."""
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
    calls: Calls = Calls()
    outbox: Outbox = Outbox()
    api: Api = Api()
    recordings: Recordings = Recordings()
    routes: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    tokens: Mapping[str, Token] = field(default_factory=dict)
    """API tokens by name (``[token NAME]`` sections)."""
    webhooks: Mapping[str, Webhook] = field(default_factory=dict)
    """Event endpoints by name (``[webhook NAME]`` sections), beside ``[url] dest_url_event``."""
    pbxs: Mapping[str, Ami] = field(default_factory=dict)
    """The PBXs beyond ``[ami]`` by name (``[ami NAME]`` sections): :mod:`salara.calls.ids`."""

    def ami_sections(self) -> dict[str, Ami]:
        """Every PBX's ``[ami]`` by name, ``default`` (the ``[ami]`` section) first."""
        return {"default": self.ami, **self.pbxs}

    def masked(self) -> dict[str, dict[str, object]]:
        """Every setting by section, secrets replaced by ``***`` (for ``show config``)."""
        out: dict[str, dict[str, object]] = {}
        for name in SECTIONS:
            section: BaseModel = getattr(self, name)
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
        for name, pbx in self.pbxs.items():
            out[f"{AMI_SECTION}{name}"] = pbx.model_dump() | ({"secret": "***"} if pbx.secret else {})
        for name, webhook in self.webhooks.items():
            shown: dict[str, object] = {**webhook.fields(), "url": mask_url(webhook.url)}
            if webhook.secret:
                shown["secret"] = "***"
            out[f"{WEBHOOK_SECTION}{name}"] = shown
        return out
