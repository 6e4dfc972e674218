"""How a refused request is answered and logged.

Compat paths answer ``{"result": -2, "text": "Error: ..."}``, the others
(``/v1``, operations, docs) ``{"error": "...", "message": "..."}``. A 401
carries ``WWW-Authenticate: Bearer``, a 429 its ``Retry-After``. Denials are
logged with the client, the token's name and the reason, never the token.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from salara.api.security.tokens import Denial

log = logging.getLogger(__name__)

API_PATH_PREFIXES = ("/v1/", "/metrics", "/ready", "/health", "/docs", "/redoc", "/openapi.json", "/ui")
"""Paths whose errors use the ``{"error", "message"}`` shape; every other path is the compat endpoint."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    408: "request_timeout",
    413: "payload_too_large",
    429: "rate_limited",
    431: "headers_too_large",
    503: "too_many_connections",
}


def is_compat_path(path: str) -> bool:
    return not (path == "/v1" or path.startswith(API_PATH_PREFIXES))


def error_body(path: str, status: int, reason: str) -> dict[str, object]:
    if is_compat_path(path):
        return {"result": -2, "text": f"Error: {reason}"}
    return {"error": _CODES.get(status, "error"), "message": reason}


def denial_headers(denial: Denial) -> dict[str, str]:
    headers: dict[str, str] = {}
    if denial.status == 401:
        headers["www-authenticate"] = 'Bearer realm="salara"'
    if denial.retry_after_s is not None:
        headers["retry-after"] = str(denial.retry_after_s)
    return headers


def denial_response(path: str, denial: Denial) -> JSONResponse:
    return JSONResponse(error_body(path, denial.status, denial.reason), denial.status, denial_headers(denial))


def log_denial(method: str, path: str, client: str | None, who: str, denial: Denial) -> None:
    log.warning(
        "API request refused (%d): %s %r from %s, token %s: %s",
        denial.status,
        method,
        path[:200],
        client or "?",
        who,
        denial.reason,
    )
