"""Event ids: UUIDs of version 7 (RFC 9562), so that ids stored one after another sort together."""

from __future__ import annotations

import os
import time
import uuid

from salara.store.records import new_event_id


def test_an_event_id_is_32_hex_digits_of_a_version_7_uuid_of_its_time() -> None:
    now = time.time()
    event_id = new_event_id(now)
    assert len(event_id) == 32 and event_id == event_id.lower()
    parsed = uuid.UUID(hex=event_id)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == int(now * 1000)  # its first 48 bits: Unix time in milliseconds


def test_ids_made_later_sort_later_and_none_repeats() -> None:
    now = time.time()
    first = [new_event_id(now) for _ in range(1000)]
    later = [new_event_id(now + 0.002) for _ in range(1000)]
    assert max(first) < min(later)
    assert len(set(first + later)) == 2000
    # The random part varies in every position it holds (74 bits), not only a few.
    assert len({event_id[13:16] + event_id[17:] for event_id in first}) == 1000


def test_a_forked_child_does_not_make_the_ids_its_parent_makes() -> None:
    # Random bytes are drawn in blocks: a child must not reuse the block it inherited.
    now = time.time()
    new_event_id(now)  # a block drawn, most of it left
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids to the parent, then out
        os.write(write_end, "".join(new_event_id(now) for _ in range(8)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as child:
        theirs = child.read().decode()
    mine = "".join(new_event_id(now) for _ in range(8))
    assert len(theirs) == len(mine) == 8 * 32
    assert {theirs[i : i + 32] for i in range(0, 256, 32)}.isdisjoint({mine[i : i + 32] for i in range(0, 256, 32)})
