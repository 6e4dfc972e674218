"""``Idempotency-Key`` handling: one result per key and scope within a time window.

Times are monotonic seconds passed in by the caller, but a shared store's
(:class:`Shared`): Unix seconds, as they must hold across processes.

Nodes on one PostgreSQL store (:mod:`salara.nodes`) share their keys through
it: a key used on one node and then on another gets the first node's result
(:class:`Shared`, with :func:`call_record` and :func:`placed_call` for a
placed call). Two first uses of one key on two nodes at the same instant are
not held back from each other (each node only waits for its own).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from salara.calls.call import Call, Origin
from salara.calls.registry import CallRegistry
from salara.errors import Conflict
from salara.store.interface import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

IDEMPOTENCY_WINDOW_S: Final = 24 * 3600.0
IDEMPOTENCY_MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    created_at: float
    result: asyncio.Future[Any]


class KeyStore(Protocol):
    """Where keys are kept for every node: the store's idempotency keys (:class:`~salara.store.interface.Store`)."""

    def remember_key(self, scope: str, key: str, fingerprint: str, created_at: float, result: bytes) -> None: ...

    def recall_key(self, scope: str, key: str, now: float, window_s: float) -> tuple[str, bytes] | None: ...


@dataclass(frozen=True, slots=True)
class Shared(Generic[T]):
    """A result kept in ``store`` too, as bytes (``encode``/``decode``), at ``wall`` (Unix seconds, now).

    A store that fails is logged and left out: the key then holds on this node only.
    """

    store: KeyStore
    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]
    wall: float

    def recall(self, scope: str, key: str, window_s: float) -> tuple[str, T] | None:
        """``(fingerprint, result)`` another node (or this one) kept for ``key``, else None."""
        try:
            found = self.store.recall_key(scope, key, self.wall, window_s)
            return None if found is None else (found[0], self.decode(found[1]))
        except StoreError as exc:
            log.warning("Idempotency-Key not looked up in the store (it holds on this node only): %s", exc)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Idempotency-Key: the stored result is unreadable (%s); the request runs", exc)
        return None

    def remember(self, scope: str, key: str, fingerprint: str, value: T) -> None:
        try:
            self.store.remember_key(scope, key, fingerprint, self.wall, self.encode(value))
        except StoreError as exc:
            log.warning("Idempotency-Key not kept in the store (it holds on this node only): %s", exc)


def call_record(call: Call) -> bytes:
    """What a node keeps of a call it placed for a key: its id, parties, owner, state for the client (JSON)."""
    origin = call.origin or Origin("", "", "")
    return json.dumps(
        {
            "id": call.id,
            "created_at": call.created_at,
            "from": origin.from_,
            "to": origin.to,
            "context": origin.context,
            "owner": call.owner,
            "client_state": call.client_state,
        }
    ).encode()


def placed_call(record: bytes, registry: CallRegistry, mono: float) -> Call:
    """The call of a :func:`call_record` as this node knows it, told who placed it and how.

    The registry's call (its channels are folded from this node's AMI
    events), else one not seen here yet (its first event is on its way).
    Raises ValueError, KeyError or TypeError on a record that is not one.
    """
    data = json.loads(record)
    call = registry.get(str(data["id"]), mono) or Call(str(data["id"]), float(data["created_at"]))
    if call.origin is None:
        call.origin = Origin(str(data["from"]), str(data["to"]), str(data["context"]))
        call.contexts.add(call.origin.context)
    call.owner = call.owner or str(data["owner"])
    if call.client_state is None and data["client_state"] is not None:
        call.client_state = str(data["client_state"])
    return call


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
        self,
        key: str,
        fingerprint: str,
        now: float,
        work: Callable[[], Awaitable[T]],
        scope: str = "",
        shared: Shared[T] | None = None,
    ) -> tuple[T, bool]:
        """``(result, replayed)``: the result of ``work()`` for ``key`` in ``scope``, run at most once.

        With ``shared``, a key none of this node's keys holds is looked up
        there, and a new result is kept there.
        """
        self._expire(now)
        scoped = (scope, key)
        entry = self._entries.get(scoped)
        if entry is not None:
            _same(entry.fingerprint, fingerprint, key)
            self.replays += 1
            return await asyncio.shield(entry.result), True
        found = shared.recall(scope, key, self.window_s) if shared is not None else None
        if found is not None:
            _same(found[0], fingerprint, key)
            self.replays += 1
            return found[1], True
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
        if shared is not None:
            shared.remember(scope, key, fingerprint, value)
        return value, False

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest.created_at <= self.window_s:
                break
            entries.popitem(last=False)


def _same(kept: str, fingerprint: str, key: str) -> None:
    if kept != fingerprint:
        raise Conflict(
            "this Idempotency-Key was used for a different request",
            error="idempotency_key_reused",
            details={"idempotency_key": key},
        )
