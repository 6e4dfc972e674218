"""uvicorn's settings for salara's API, from ``[api]``: HTTPS, connection and header limits, trusted proxies.

The HTTP protocol they name is salara's own (:func:`~salara.api.security.connections.http_protocol`).
"""

from __future__ import annotations

from typing import Any

from salara.api.security.connections import http_protocol
from salara.api.security.transport import QuickLane
from salara.config import Config


def uvicorn_options(config: Config, quick: QuickLane | None = None) -> dict[str, Any]:
    """uvicorn settings from ``[api]``: HTTPS, connection limits, header limits, trusted proxies.

    ``X-Forwarded-For`` is trusted from ``[api] trusted_proxies`` only
    (default loopback: a reverse proxy on this machine), whatever
    ``FORWARDED_ALLOW_IPS`` says: the loopback rule must not be fooled by a
    header from elsewhere. The same addresses are the proxies the
    per-client cap counts through (:func:`http_protocol`), which answers at
    once through ``quick`` what it can (the app's ``quick_lane``).
    """
    api = config.api
    options: dict[str, Any] = {
        "limit_concurrency": api.max_connections,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": api.max_header_bytes,
        "proxy_headers": True,
        "forwarded_allow_ips": list(api.trusted_proxies),
        "server_header": False,
    }
    protocol = http_protocol(
        api.request_timeout,
        api.max_header_bytes,
        api.max_connections_per_client,
        module_errors=config.general.answers == "module",
        trusted_proxies=api.trusted_proxies,
        quick=quick,
    )
    if protocol is not None:
        options["http"] = protocol
    if api.tls_cert:
        options["ssl_certfile"] = api.tls_cert
        options["ssl_keyfile"] = api.tls_key
    return options
