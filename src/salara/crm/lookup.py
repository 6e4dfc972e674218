"""The CRM routing lookup (SPEC §3 step 1): which extension the CRM names for a caller.

:class:`CrmLookup` asks; :class:`LookupFailed` says why there is no usable
answer. The router (:mod:`salara.routing.script`) bounds the lookup by its deadline
and falls back on the cache, the ``[route]`` table and the default.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp

from salara import fields
from salara.crm.client import MAX_ANSWER_BYTES, read_limited


class LookupFailed(Exception):
    """The CRM gave no usable destination; the message says why.

    ``definitive`` is true when the CRM answered properly that it names no
    one for this caller (404, or an answer without a usable ``key_word``): a
    working CRM, so it does not count against the circuit breaker, and a
    cached older answer must not override it.
    """

    def __init__(self, reason: str, *, definitive: bool = False) -> None:
        super().__init__(reason)
        self.definitive = definitive


class CrmLookup:
    """The CRM routing lookup (SPEC §3 step 1).

    ``dest_url`` ending in ``=`` (``...?phone=``): GET with the caller's
    number appended; otherwise POST ``{"phone": "<number>"}``. The JSON
    answer's ``key_word`` (string or integer) names the extension. Redirects
    are not followed; ``client``'s own timeout bounds each request, and the
    router bounds the lookup again by its deadline.
    """

    def __init__(self, client: aiohttp.ClientSession, url: str, key_word: str) -> None:
        self.client = client
        self.url = url
        self.key_word = key_word

    async def lookup(self, caller: str) -> str:
        """The extension the CRM names for ``caller``; raises :class:`LookupFailed` or TimeoutError."""
        try:
            if self.url.endswith("="):
                request = self.client.get(self.url + quote(caller, safe=""), allow_redirects=False)
            else:
                request = self.client.post(self.url, json={"phone": caller}, allow_redirects=False)
            async with request as response:
                body = await read_limited(response, MAX_ANSWER_BYTES)
        except aiohttp.ClientError as exc:
            raise LookupFailed(f"{type(exc).__name__}: {exc}") from None
        if response.status == 404:
            raise LookupFailed("HTTP 404: the CRM knows no one for this caller", definitive=True)
        if not 200 <= response.status < 300:
            raise LookupFailed(f"HTTP {response.status}")
        if body is None:
            raise LookupFailed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise LookupFailed("answer is not JSON (or nested too deep)") from None
        value = answer.get(self.key_word) if isinstance(answer, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise LookupFailed(f"answer has no usable {self.key_word!r}", definitive=True)
        try:
            return fields.extension(self.key_word, str(value))
        except fields.FieldError as exc:
            raise LookupFailed(str(exc), definitive=True) from None
