"""``Idempotency-Key`` handling: one result per key and scope within a time window.

Times are monotonic seconds passed in by the caller.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from salara.errors import Conflict

T = TypeVar("T")

IDEMPOTENCY_WINDOW_S: Final = 24 * 3600.0
IDEMPOTENCY_MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    created_at: float
    result: asyncio.Future[Any]


class IdempotencyCache:
    """``Idempotency-Key`` handling: one result per key and scope within ``window_s`` seconds.

    The first request with a key runs; a later (or concurrent) one with the
    same key and the same request gets the same result, never a second run;
    the same key with a different request raises :class:`Conflict`. A run
    that fails is forgotten, so the request may be retried with its key.
    Keys are looked up before anything runs, so a replay costs nothing but
    the lookup (the rate is spent inside ``work``, by new runs only). Keys
    live in a ``scope`` (the client: one client's key is not another's).
    At most ``max_keys`` keys are kept (the oldest goes first).
    """

    def __init__(self, window_s: float = IDEMPOTENCY_WINDOW_S, max_keys: int = IDEMPOTENCY_MAX_KEYS) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.replays = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def run(
        self, key: str, fingerprint: str, now: float, work: Callable[[], Awaitable[T]], scope: str = ""
    ) -> tuple[T, bool]:
        """``(result, replayed)``: the result of ``work()`` for ``key`` in ``scope``, run at most once."""
        self._expire(now)
        scoped = (scope, key)
        entry = self._entries.get(scoped)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise Conflict(
                    "this Idempotency-Key was used for a different request",
                    error="idempotency_key_reused",
                    details={"idempotency_key": key},
                )
            self.replays += 1
            return await asyncio.shield(entry.result), True
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[scoped] = _Entry(fingerprint, now, result)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        try:
            value = await work()
        except BaseException as exc:
            if self._entries.get(scoped) is not None and self._entries[scoped].result is result:
                del self._entries[scoped]
            if isinstance(exc, Exception):
                result.set_exception(exc)
                result.exception()  # retrieved: no warning when nobody else waited
            else:
                result.cancel()
            raise
        result.set_result(value)
        return value, False

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest.created_at <= self.window_s:
                break
            entries.popitem(last=False)
