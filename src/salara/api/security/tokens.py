"""Who may use the API and what they may do: tokens, rights, allow-lists, rate limits.

Pure: no sockets, no clock (time is an argument). The HTTP side is
:mod:`salara.api.security.middleware` (every request authenticated) and
:mod:`salara.api.security.access` (rights checked by the routes).

- A token is 32 random bytes, base64url (:func:`new_token`). The config keeps
  only ``sha256:<hex>`` of it. A fast hash is enough here: the secret is 256
  random bits, so there is nothing to guess a dictionary from, and a slow
  password hash would only make every request slower. Hashes are compared in
  constant time (:func:`hmac.compare_digest`), against every token.
- Rights: ``call`` (make call), ``message`` (send message), ``state``
  (extension, peer and channel state, every ``/v1`` read, ``/metrics``, the
  API description, ``/ready``'s details), ``admin`` (operations such as
  ``/v1/tracked-calls``). Any valid token may ask ``/ready``'s status.
- Calls and messages are also checked against the token's contexts and
  destinations, then against its rate (a token bucket: ``10/60`` is a burst of
  10 and one more every 6 seconds).
- With no token configured, loopback clients may do everything (the old
  module's behaviour, so old CRMs keep working) and other clients nothing,
  unless ``[api] allow_remote_without_token`` says otherwise; ``salara serve``
  refuses to listen beyond loopback so (:func:`exposure_problem`).
- A request presents its token as ``Authorization: Bearer <token>`` or
  ``X-API-Key: <token>`` (:func:`credential_from`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from salara.api.compat.request import (
    ChannelStateQuery,
    CompatRequest,
    ExtensionStateQuery,
    MakeCall,
    PeerStateQuery,
    SendMessage,
)
from salara.config import RIGHTS, Config, Rate, Right, Token, is_local_host

TOKEN_BYTES = 32
HASH_PREFIX = "sha256:"


def new_token() -> str:
    """A fresh API token: 32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the config stores for ``token``: ``sha256:<64 hex digits>``."""
    return HASH_PREFIX + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def is_loopback(host: str | None) -> bool:
    """Whether a client address is on loopback (``127.0.0.0/8``, ``::1``, v4-mapped too)."""
    if not host:
        return False
    return _is_loopback(host)


@functools.lru_cache(maxsize=1024)  # asked on every request without tokens; parsing it is a tenth of one
def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class Destinations:
    """A destination allow-list: ``^regex`` entries fullmatched, other entries number prefixes.

    >>> allowed = Destinations(("^[0-9]{3,4}$", "+7495", "8495"))
    >>> [allowed.allows(n) for n in ("8001", "+74951234567", "810441234567", "12345")]
    [True, True, False, False]
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.any = "any" in entries
        self.patterns = tuple(re.compile(entry) for entry in entries if entry.startswith("^"))
        self.prefixes = tuple(entry for entry in entries if entry != "any" and not entry.startswith("^"))

    def allows(self, number: str) -> bool:
        if self.any:
            return True
        return number.startswith(self.prefixes) or any(pattern.fullmatch(number) for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from and what it may do.

    ``contexts``/``destinations`` None means no restriction (loopback clients
    without tokens); ``rate`` None means no limit.
    """

    name: str
    rights: frozenset[str]
    contexts: frozenset[str] | None = None
    destinations: Destinations | None = None
    rate: Rate | None = None
    token: bool = False
    """Authenticated by a token (else by being on loopback, or by the opt-in)."""


LOOPBACK = Principal("loopback", frozenset(RIGHTS))
REMOTE_WITHOUT_TOKEN = Principal("remote", frozenset(RIGHTS))


@dataclass(frozen=True, slots=True)
class Denial:
    """A refused request: HTTP status, the reason (safe to show and log), Retry-After for 429."""

    status: int
    reason: str
    retry_after_s: int | None = None


def principal_of(name: str, token: Token, default_context: str) -> Principal:
    return Principal(
        name=name,
        rights=frozenset(token.rights),
        contexts=frozenset(token.contexts or (default_context,)),
        destinations=Destinations(token.destinations),
        rate=token.rate,
        token=True,
    )


class RateLimiter:
    """Token buckets by key: ``rate.count`` at once, refilled at ``count/per_s`` per second."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    def take(self, key: str, rate: Rate, now: float) -> float:
        """Spend one unit: 0.0 if allowed, else the seconds until one is available."""
        refill = rate.count / rate.per_s
        level, last = self._buckets.get(key, (float(rate.count), now))
        level = min(float(rate.count), level + max(0.0, now - last) * refill)
        if level >= 1.0:
            if key not in self._buckets and len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # keys are token names: a bound only against misuse
            self._buckets[key] = (level - 1.0, now)
            return 0.0
        self._buckets[key] = (level, now)
        return (1.0 - level) / refill


def compat_scope(request: CompatRequest) -> tuple[Right, str | None, str | None]:
    """The right a compat request needs, and for calls/messages its context and number.

    The number checked against the destinations is what is dialled: the
    ``phone`` of a call, the ``operator`` a message goes to.
    """
    match request:
        case MakeCall(_, phone, context):
            return "call", context, phone
        case SendMessage(operator, _, _, context):
            return "message", context, operator
        case ExtensionStateQuery() | PeerStateQuery() | ChannelStateQuery():
            return "state", None, None


@dataclass
class Security:
    """The API's access policy, built from the config; time is passed in."""

    config: Config
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def __post_init__(self) -> None:
        self._tokens: tuple[tuple[str, Principal], ...] = ()
        self.set_tokens(self.config.tokens)

    def set_tokens(self, tokens: Mapping[str, Token]) -> None:
        """Use ``tokens`` from now on (the config file changed: ``salara token create/revoke``)."""
        default_context = self.config.general.default_context
        self._tokens = tuple((token.hash, principal_of(name, token, default_context)) for name, token in tokens.items())

    def identify(self, presented: str) -> Principal | None:
        """The principal of a presented token, or None. Compares with every hash, in constant time."""
        digest = hash_token(presented)
        found = None
        for stored, principal in self._tokens:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    @property
    def has_tokens(self) -> bool:
        """Whether any token is configured (else loopback clients need none)."""
        return bool(self._tokens)

    def by_hash(self, stored: str) -> Principal | None:
        """The principal of the configured token whose stored hash is ``stored``; None once it is revoked.

        A console session keeps the hash of the token it signed in with (never the token).
        """
        found = None
        for digest, principal in self._tokens:
            if hmac.compare_digest(digest, stored):
                found = principal
        return found

    def authenticate(self, client_host: str | None, credential: str | None) -> Principal | Denial:
        """Who is asking: a token's principal, or loopback; else a 401/403 denial."""
        if self._tokens:
            if credential is None:
                return Denial(401, "an API token is required (Authorization: Bearer <token> or X-API-Key)")
            principal = self.identify(credential)
            if principal is None:
                return Denial(401, "invalid API token")
            return principal
        if is_loopback(client_host):
            return LOOPBACK
        if self.config.api.allow_remote_without_token:
            return REMOTE_WITHOUT_TOKEN
        return Denial(403, "only clients on this machine (loopback) are served while no API token is configured")

    def authorize(
        self, principal: Principal, right: Right, context: str | None = None, number: str | None = None
    ) -> Denial | None:
        """Whether ``principal`` may do ``right`` in ``context`` to ``number`` (no rate counted)."""
        if right not in principal.rights:
            return Denial(403, f"token {principal.name!r} lacks the {right!r} right")
        if context is not None and principal.contexts is not None and context not in principal.contexts:
            return Denial(403, f"token {principal.name!r} may not use context {context!r}")
        if number is not None and principal.destinations is not None and not principal.destinations.allows(number):
            return Denial(403, f"token {principal.name!r} may not dial {number!r} (not in its destinations)")
        return None

    def spend(self, principal: Principal, now: float) -> Denial | None:
        """Count one call or message against the principal's rate; 429 when it is used up."""
        if principal.rate is None:
            return None
        wait_s = self.limiter.take(principal.name, principal.rate, now)
        if wait_s <= 0:
            return None
        retry = max(1, math.ceil(wait_s))
        return Denial(429, f"token {principal.name!r} is over its rate of {principal.rate}; retry in {retry} s", retry)

    def check_compat(self, principal: Principal, request: CompatRequest, now: float) -> Denial | None:
        """Authorization of a parsed compat request, and its rate for calls and messages."""
        right, context, number = compat_scope(request)
        denial = self.authorize(principal, right, context, number)
        if denial is None and right in ("call", "message"):
            denial = self.spend(principal, now)
        return denial


def exposure_problem(config: Config) -> str | None:
    """Why ``salara serve`` must not start with this config, or None.

    Listening beyond loopback with no token would let anyone who reaches the
    port place calls, unless the operator opted in explicitly.
    """
    listen = config.url.rest_server
    if config.tokens or config.api.allow_remote_without_token:
        return None
    host = listen.host.strip("[]").lower()
    if is_loopback(host) or host in ("localhost", "ip6-localhost"):
        return None
    local = " (every address)" if is_local_host(host) else ""
    return (
        f"{listen}{local} is reachable beyond this machine and no API token is configured: "
        "anyone who reaches it could place calls. Create a token (salara token create NAME --rights ...) "
        "or set [api] allow_remote_without_token=yes to accept this."
    )


def credential_from(headers: Mapping[str, str]) -> str | None:
    """The token a request presents: ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    return None
