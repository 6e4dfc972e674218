"""Host forms read as the C resolver reads them, without asking it at load time."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from salara.config.hosts import inet_aton

PART = st.one_of(
    st.integers(0, 1 << 32).map(str),
    st.integers(0, 1 << 32).map(hex),
    st.integers(0, 1 << 32).map(lambda n: "0" + format(n, "o")),
    st.sampled_from(["", "0x", "0X1f", "08", "x", "-1", " 1", "+1", "1_0", "0x_1"]),
)


@settings(deadline=None, max_examples=500)
@given(st.lists(PART, min_size=1, max_size=5).map(".".join))
def test_inet_aton_reads_what_the_resolver_reads(text: str) -> None:
    try:
        expected: int | None = struct.unpack("!I", socket.inet_aton(text))[0]
    except OSError:
        expected = None
    assert inet_aton(text) == expected
