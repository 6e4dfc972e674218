"""The test post of ``salara send post`` (SPEC §5): one event-like POST, signed, its answer shown."""

from __future__ import annotations

import contextlib
import time

import aiohttp

from salara.config import HostPort
from salara.crm.client import MAX_ANSWER_BYTES, make_client, read_limited
from salara.crm.signing import secret_keys, webhook_headers
from salara.store.records import new_event_id


async def send_test_post(
    url: str,
    body: bytes,
    *,
    secret: str = "",
    timeout_s: float = 3.0,
    client: aiohttp.ClientSession | None = None,
    tls_verify: bool = True,
    api_listen: HostPort | None = None,
) -> tuple[int, str]:
    """POST ``body`` once the way events are posted (SPEC §5 ``send post``): (status, answer text).

    The request gets a fresh ``webhook-id`` and, with a secret, a signature.
    Without ``client``, a session of its own is made, refusing salara's own
    API at ``api_listen`` (:class:`~salara.crm.client.SelfLoopGuard`).
    Raises :class:`aiohttp.ClientError` when the CRM cannot be reached (or is salara's own API),
    TimeoutError when the whole exchange takes over ``timeout_s`` seconds,
    ValueError for a malformed ``whsec_`` secret.
    """
    now = time.time()
    headers = webhook_headers(secret_keys(secret), new_event_id(now), int(now), body)
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(
                make_client(tls_verify=tls_verify, concurrency=1, api_listen=api_listen)
            )
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with client.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as response:
            answer = await read_limited(response, MAX_ANSWER_BYTES)
            return response.status, answer.decode(errors="replace") if answer is not None else "(answer too large)"
