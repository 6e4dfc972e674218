"""The HTTP side of salara towards the CRM: the client session and bounded answers.

Every request salara makes to the CRM (event posts, routing lookups, the
test post) goes through a session of :func:`make_client`: certificates
verified, no redirects followed, no proxy from the environment, no
compression; answers are read with :func:`read_limited`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import aiohttp

from salara import __version__

USER_AGENT: Final = f"salara/{__version__}"

MAX_ANSWER_BYTES = 64 * 1024
"""Largest CRM answer read: an answer to an event is only logged, a routing answer is a few dozen bytes."""

ClientFactory = Callable[[], aiohttp.ClientSession]


def make_client(
    *, tls_verify: bool = True, concurrency: int = 8, timeout_s: float = 300.0, user_agent: str = USER_AGENT
) -> aiohttp.ClientSession:
    """An HTTP session for the CRM; call it inside a running event loop (aiohttp needs one).

    Certificates are verified against the system's trust store unless
    ``tls_verify`` is false. At most ``concurrency`` connections are open at a
    time (a request waits for one), and they are kept alive for the next
    request. A request takes at most ``timeout_s`` seconds in all unless it
    gives its own ``timeout`` (TimeoutError past it). Every request sends
    ``user-agent: user_agent``. Redirects are never followed: every request
    of salara passes ``allow_redirects=False`` (aiohttp has no session-wide
    switch). Proxy variables of the environment are not used.
    """
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=tls_verify)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    # No compression: a few-kilobyte gzip answer could inflate to gigabytes.
    headers = {"user-agent": user_agent, "accept-encoding": "identity"}
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers, auto_decompress=False)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The answer's body if it is at most ``limit`` bytes, else None (the rest is not read).

    A CRM answer is tiny; reading it whole would let a broken or hostile CRM
    fill salara's memory. An answer read to its end keeps the connection
    for reuse; a longer one is dropped with its connection.
    """
    body = await response.content.read(limit + 1)
    while len(body) <= limit:
        more = await response.content.read(limit + 1 - len(body))
        if not more:
            return body
        body += more
    response.close()
    return None
