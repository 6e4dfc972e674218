"""Keys in the store, on each driver: idempotency keys (window, cap, scopes) and free-text call keys."""

from __future__ import annotations

import pytest

from salara.store.interface import Store, StoreError
from salara.store.postgres import PostgresStore
from salara.store.records import Counts
from salara.store.sqlite import Outbox
from tests.unit.conftest import OpenStore

NOW = 1_700_000_000.0
WINDOW_S = 86_400.0


@pytest.fixture
def outbox(open_store: OpenStore) -> Store:
    return open_store(max_rows=1000, max_keys=5)


def test_both_drivers_are_stores() -> None:
    # Declared, so mypy checks every method against the protocol.
    assert Store in Outbox.__mro__ and Store in PostgresStore.__mro__


def test_a_remembered_key_is_recalled_with_its_fingerprint_and_result(outbox: Store) -> None:
    assert outbox.recall_key("crm", "k1", NOW, WINDOW_S) is None
    outbox.remember_key("crm", "k1", "sha256:abc", NOW, b'{"linkedid":"1.1"}')
    assert outbox.recall_key("crm", "k1", NOW + 1, WINDOW_S) == ("sha256:abc", b'{"linkedid":"1.1"}')
    assert outbox.recall_key("crm", "k2", NOW + 1, WINDOW_S) is None
    assert outbox.counts() == Counts() and outbox.depth() == 0, "keys are no events"


def test_scopes_keep_their_keys_apart(outbox: Store) -> None:
    outbox.remember_key("crm", "same", "f1", NOW, b"1")
    outbox.remember_key("ops", "same", "f2", NOW, b"2")
    assert outbox.recall_key("crm", "same", NOW, WINDOW_S) == ("f1", b"1")
    assert outbox.recall_key("ops", "same", NOW, WINDOW_S) == ("f2", b"2")


def test_keys_are_free_text(outbox: Store) -> None:
    odd = ["pbx-a:1700000000.12", "a b;c'd\"", "ключ", "%00", ""]
    for n, key in enumerate(odd):
        outbox.remember_key("pbx-a:crm", key, f"f{n}", NOW, bytes([n]))
    assert [outbox.recall_key("pbx-a:crm", key, NOW, WINDOW_S) for key in odd] == [
        (f"f{n}", bytes([n])) for n in range(len(odd))
    ]


def test_a_key_remembered_again_is_replaced(outbox: Store) -> None:
    outbox.remember_key("crm", "k", "f1", NOW, b"first")
    outbox.remember_key("crm", "k", "f2", NOW + 5, b"second")
    assert outbox.recall_key("crm", "k", NOW + 5, WINDOW_S) == ("f2", b"second")


def test_keys_expire_after_the_window_and_are_deleted(outbox: Store) -> None:
    outbox.remember_key("crm", "old", "f", NOW, b"1")
    outbox.remember_key("crm", "new", "f", NOW + 100, b"2")
    outbox.remember_key("ops", "old", "f", NOW, b"3")
    assert outbox.recall_key("crm", "old", NOW + 60, 60.0) == ("f", b"1")  # at the edge: still kept
    assert outbox.recall_key("crm", "old", NOW + 61, 60.0) is None
    assert outbox.recall_key("crm", "old", NOW + 61, WINDOW_S) is None, "an expired key is gone"
    assert outbox.recall_key("crm", "new", NOW + 61, 60.0) == ("f", b"2")
    assert outbox.recall_key("ops", "old", NOW + 61, WINDOW_S) == ("f", b"3"), "other scopes keep theirs"


def test_past_the_cap_the_oldest_keys_are_forgotten(outbox: Store) -> None:
    for n in range(7):
        outbox.remember_key("crm", f"k{n}", "f", NOW + n, b"%d" % n)
    kept = [n for n in range(7) if outbox.recall_key("crm", f"k{n}", NOW + 7, WINDOW_S) is not None]
    assert kept == [2, 3, 4, 5, 6]


def test_keys_survive_a_restart(open_store: OpenStore) -> None:
    with open_store(max_rows=10) as outbox:
        outbox.remember_key("crm", "k", "f", NOW, b"kept")
    with open_store(max_rows=10) as outbox:
        assert outbox.recall_key("crm", "k", NOW + 1, WINDOW_S) == ("f", b"kept")


def test_a_readonly_outbox_cannot_remember(open_store: OpenStore) -> None:
    open_store(max_rows=10).close()
    with open_store(max_rows=10, readonly=True) as listing, pytest.raises(StoreError):
        listing.remember_key("crm", "k", "f", NOW, b"")


def test_max_keys_must_be_positive(open_store: OpenStore) -> None:
    with pytest.raises(ValueError):
        open_store(max_rows=10, max_keys=0)


def test_call_keys_carrying_a_pbx_name_are_calls_of_their_own(outbox: Store) -> None:
    # The same Linkedid on two PBXs: two calls, each in its own order.
    ids = outbox.add([("east:1700.1", b"e1"), ("west:1700.1", b"w1"), ("east:1700.1", b"e2")], now=NOW)
    first = outbox.claim(10, now=NOW)
    assert [(e.call_key, e.body) for e in first] == [("east:1700.1", b"e1"), ("west:1700.1", b"w1")]
    assert [e.id for e in first] == ids[:2]
    outbox.record([])
    assert outbox.claim(10, now=NOW) == []  # e2 waits for e1
