"""Property tests of the sans-I/O FastAGI layer: any bytes, any cuts.

Whatever Asterisk (or anything on the FastAGI port) sends,
:class:`AGIConnection` raises nothing but
:class:`~salara.errors.RemoteProtocolError`, and between reads it holds at
most ``max_line_bytes`` unframed bytes, :data:`MAX_VARIABLES` lines of a
variable block and :data:`MAX_USAGE_LINES` of a multi-line reply. The
recorded exchange cut anywhere gives the same events as whole.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salara.agi.protocol import CLOSED, MAX_USAGE_LINES, MAX_VARIABLES, NEED_DATA, AGIConnection, AGIReply, AGIRequest
from salara.errors import AGICommandError, RemoteProtocolError
from tests.transcript import received
from tests.unit.test_agi_protocol import COMMANDS, REPLIES, summary

MAX_LINE_BYTES = 120
EXAMPLES = 300

FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    b"\n",
    b"\r\n",
    b"\r",
    b"agi_network: yes\n",
    b"agi_priority: 2\n",
    b"agi_priority: x\n",
    b"agi_arg_1: a\n",
    b"agi_",
    b": ",
    b"200 result=1",
    b"200 result=0 (data) endpos=12",
    b"100 result=0 Trying...\n",
    b"510 Invalid or unknown command\n",
    b"520-Invalid command syntax.  Proper usage follows:\n",
    b"520 End of proper usage.\n",
    b"HANGUP\n",
    b"x" * 50,
    "Иван".encode(),
    b"\xff",
    b"\x00",
]
pieces = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=16)), max_size=60)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def feed(chunks: list[bytes], commands: int, *, close: bool = False) -> list[object]:
    """Events (summarised) until a RemoteProtocolError, the only error allowed; bounds checked between reads."""
    conn = AGIConnection(max_line_bytes=MAX_LINE_BYTES)
    for _ in range(commands):
        conn.send_command("GET VARIABLE", "CRMID")
    out: list[object] = []
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            assert conn.buffered_bytes <= MAX_LINE_BYTES
            assert conn.held_lines <= max(MAX_VARIABLES, MAX_USAGE_LINES)
            while (event := conn.next_event()) not in (NEED_DATA, CLOSED):
                assert isinstance(event, (AGIRequest, AGIReply, AGICommandError))
                out.append(summary(event))
            assert 0 <= conn.outstanding <= commands
        if close:
            conn.receive_data(b"")
            assert conn.next_event() is CLOSED
    except RemoteProtocolError:
        # The events before the bad line are still there; then nothing more is read.
        while (event := conn.next_event()) not in (NEED_DATA, CLOSED):
            out.append(summary(event))
        out.append("RemoteProtocolError")
        assert conn.buffered_bytes == 0 and conn.held_lines == 0
    return out


@FUZZ
@given(pieces, st.integers(min_value=0, max_value=4), st.lists(st.integers(min_value=0), max_size=12))
def test_any_bytes_any_cuts_only_remote_errors_bounded_and_cut_anywhere_alike(
    stream: list[bytes], commands: int, points: list[int]
) -> None:
    data = b"".join(stream)
    whole = feed([data], commands, close=True) if data else []
    assert feed(cut(data, points), commands, close=True) == whole


@FUZZ
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=4), st.lists(st.integers(min_value=0), max_size=8))
def test_raw_random_bytes_after_a_variable_block(data: bytes, commands: int, points: list[int]) -> None:
    feed(cut(b"agi_network: yes\n\n" + data, points), commands)


@FUZZ
@given(st.sampled_from(sorted(COMMANDS)), st.lists(st.integers(min_value=0), min_size=1, max_size=40))
def test_recorded_exchange_cut_at_random_gives_the_recorded_replies(conn_id: str, points: list[int]) -> None:
    stream = b"".join(received("fastagi.txt", conn_id))
    conn = AGIConnection()
    for command in COMMANDS[conn_id]:
        conn.send_command(*command)
    events: list[object] = []
    for chunk in cut(stream, points):
        conn.receive_data(chunk)
        assert conn.buffered_bytes <= 1 << 16
        while (event := conn.next_event()) not in (NEED_DATA, CLOSED):
            events.append(event)
    assert isinstance(events[0], AGIRequest)
    assert [summary(e) for e in events[1:]] == REPLIES[conn_id]


def test_the_block_and_usage_caps_hold() -> None:
    conn = AGIConnection()
    block = b"".join(b"agi_v%d: x\n" % n for n in range(MAX_VARIABLES))
    conn.receive_data(block)
    assert conn.held_lines == MAX_VARIABLES
    try:
        conn.receive_data(b"agi_one_more: x\n")
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("a variable block over MAX_VARIABLES lines must be refused")
    assert conn.held_lines == 0 and conn.buffered_bytes == 0  # dropped: nothing more is read
    try:
        conn.receive_data(b"\n")
    except RemoteProtocolError as exc:
        assert "exceeds" in str(exc)
    else:
        raise AssertionError("a broken connection must keep refusing")
