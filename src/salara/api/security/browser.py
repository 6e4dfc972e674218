"""Browsers: the console's sign-in sessions, their cookie, cross-site and DNS-rebinding guards.

A browser cannot add a bearer header to a page it opens, so the console
(``/ui``) asks for a token once and trades it for a session
(:class:`Sessions`): a random id in the cookie :data:`COOKIE`
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` when salara serves TLS,
expiring after :data:`SESSION_TTL_S`), kept server side with the token's
hash (so a revoked token ends its sessions) and a CSRF token. The cookie
authenticates only the paths :func:`covered` names: ``/ui``, the
documentation pages and ``/v1``, never the compat endpoint (where a GET
with a query string places a call).

:class:`BrowserGate` is consulted by the security middleware for those
paths, after the header credential was checked:

- a state-changing request (not GET/HEAD/OPTIONS) whose ``Origin`` is not
  the ``Host`` it was sent to is refused (403), whatever authenticated it;
- with no token configured (loopback only) a console or documentation page,
  or a ``/v1`` request from a browser, whose ``Host`` is not a loopback
  name or address is refused (403): a page of another site whose name was
  made to resolve to 127.0.0.1 (DNS rebinding) gets nothing;
- without a header credential, a valid session cookie authenticates, and a
  state-changing request must then carry the session's CSRF token in
  :data:`CSRF_HEADER`;
- the sign-in page, its assets and the sign-in itself (:func:`is_public`)
  are served unauthenticated (their principal is None).

Time is monotonic seconds, passed in.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Final
from urllib.parse import urlsplit

from salara.api.security.tokens import Denial, Principal, Security, credential_from

COOKIE: Final = "salara_session"
CSRF_HEADER: Final = "x-csrf-token"
SESSION_TTL_S: Final = 8 * 3600.0
"""A session ends 8 hours after sign-in (a working day); the page then asks for the token again."""
MAX_SESSIONS: Final = 1_000
"""Sessions kept at once; signing in beyond it ends the oldest."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
UI_PREFIX: Final = "/ui"
DOC_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
API_PATHS: Final = frozenset({"/openapi.json", "/v1"})
SIGN_IN_PATH: Final = "/ui/api/session"
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its id (the cookie's value), CSRF token, the token's stored hash, expiry (monotonic)."""

    id: str
    csrf: str
    token_hash: str
    expires_mono: float


class Sessions:
    """Sessions by id, in memory, bounded by ``max_sessions`` (the oldest goes first) and by ``ttl_s``."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, token_hash: str, mono: float) -> Session:
        """A new session for the token whose stored hash is ``token_hash`` (``sha256:...``)."""
        self._prune(mono)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), token_hash, mono + self.ttl_s)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, mono: float) -> Session | None:
        """The live session ``session_id``, or None (unknown, or expired: then forgotten)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if mono >= session.expires_mono:
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        """End a session (sign-out); nothing happens for an unknown one."""
        if session_id:
            self._sessions.pop(session_id, None)

    def _prune(self, mono: float) -> None:
        for session_id in [s.id for s in self._sessions.values() if mono >= s.expires_mono]:
            del self._sessions[session_id]


def covered(path: str) -> bool:
    """Whether the session cookie may authenticate ``path``: ``/ui``, the documentation, ``/v1``.

    >>> [covered(p) for p in ("/ui", "/ui/api/calls", "/docs", "/v1/calls", "/", "/uix", "/v1x", "/metrics")]
    [True, True, True, True, False, False, False, False]
    """
    return (
        path == UI_PREFIX
        or path.startswith(UI_PREFIX + "/")
        or path in DOC_PATHS
        or path in API_PATHS
        or path.startswith("/v1/")
    )


def is_public(method: str, path: str) -> bool:
    """The sign-in page, its assets and the sign-in: served to a browser that has no session yet."""
    if method == "POST":
        return path == SIGN_IN_PATH
    if method not in ("GET", "HEAD"):
        return False
    return path in (UI_PREFIX, UI_PREFIX + "/") or path.startswith(UI_PREFIX + "/static/")


def session_id_of(headers: Mapping[str, str]) -> str | None:
    """The session id in the request's ``Cookie`` header, or None."""
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def host_name(host_header: str) -> str:
    """The name or address of a ``Host`` header, without port and brackets, lower case.

    >>> [host_name(h) for h in ("127.0.0.1:5058", "[::1]:5058", "LocalHost", "evil.example:80")]
    ['127.0.0.1', '::1', 'localhost', 'evil.example']
    """
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host


def is_loopback_host(host_header: str | None) -> bool:
    """Whether a ``Host`` header names loopback: 127.0.0.0/8, ::1, ``localhost`` and names under ``.localhost``.

    >>> [is_loopback_host(h) for h in ("127.0.0.1:5058", "[::1]", "localhost:1", "a.localhost", "rebind.example")]
    [True, True, True, True, False]
    """
    if not host_header:
        return False
    host = host_name(host_header).rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_browser(headers: Mapping[str, str]) -> bool:
    """Whether a request shows a browser's marks: a cookie, ``Origin``, ``Sec-Fetch-*``, a ``Mozilla/`` agent.

    A page cannot remove these from the requests it makes, so a rebinding
    page is always recognised; API clients (curl, a CRM's HTTP library) show none.
    """
    if any(name in headers for name in ("cookie", "origin", "sec-fetch-site", "sec-fetch-mode")):
        return True
    return headers.get("user-agent", "").startswith("Mozilla/")


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether the request's ``Origin`` (when it has one) is the ``Host`` it was sent to."""
    origin = headers.get("origin")
    if origin is None:
        return True
    split = urlsplit(origin)
    return bool(split.netloc) and split.netloc.lower() == headers.get("host", "").strip().lower()


class BrowserGate:
    """What the security middleware asks for the paths :func:`covered` names (see the module's rules)."""

    def __init__(self, security: Security, sessions: Sessions) -> None:
        self.security = security
        self.sessions = sessions

    def authenticate(
        self, method: str, path: str, headers: Mapping[str, str], result: Principal | Denial, mono: float
    ) -> Principal | Denial | None:
        """The request's principal given ``result`` (what its header credential gave): a principal, a refusal,
        or None for a public page requested without a session."""
        security = self.security
        if method not in SAFE_METHODS and not same_origin(headers):
            return Denial(403, "cross-site request refused: its Origin is not this server")
        if not security.has_tokens and not security.config.api.allow_remote_without_token:
            surface = not path.startswith("/v1") and path != "/openapi.json"
            if (surface or from_browser(headers)) and not is_loopback_host(headers.get("host")):
                return Denial(403, "the Host header names no loopback address (possible DNS rebinding): refused")
        if not isinstance(result, Denial) or result.status != 401 or credential_from(headers) is not None:
            return result
        session = self.sessions.get(session_id_of(headers), mono)
        principal = security.by_hash(session.token_hash) if session is not None else None
        if session is not None and principal is not None:
            if method not in SAFE_METHODS and not hmac.compare_digest(
                headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()
            ):
                return Denial(403, f"a signed-in browser's {method} needs the session's {CSRF_HEADER} header")
            return principal
        if is_public(method, path):
            return None
        if session is not None:  # its token was revoked
            return Denial(401, "the session's token is no longer configured: sign in again")
        return Denial(401, "sign in at /ui, or send an API token (Authorization: Bearer <token> or X-API-Key)")
