"""Property tests of the sans-I/O AMI layer: any bytes, any cuts.

Whatever the peer sends, :class:`AMIConnection` raises nothing but
:class:`~salara.errors.RemoteProtocolError` (list overflows come out as
messages, not exceptions), and between reads it never holds more than its
configured limits: the buffer at most ``max_message_bytes``, each list at
most its item and byte caps, at most ``MAX_OPEN_LISTS`` lists. Recorded
Asterisk streams cut anywhere frame as they do whole.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salara.ami.messages import MAX_OPEN_LISTS, Event, Greeting, Response
from salara.ami.protocol import CLOSED, NEED_DATA, AMIConnection
from salara.errors import AMIListOverflow, RemoteProtocolError
from tests.transcript import names, received
from tests.unit.test_ami_protocol import AMI_TRANSCRIPTS, summary

MAX_MESSAGE_BYTES = 300
MAX_LIST_ITEMS = 4
MAX_LIST_BYTES = 200
EXAMPLES = 300

FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that steer random bytes into the interesting states: framing, lists, Follows bodies.
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"\n\n",
    b"Asterisk Call Manager/11.0.0\r\n",
    b"Event: ",
    b"Response: ",
    b"Success",
    b"Follows",
    b"Response: Follows\r\n",
    b"--END COMMAND--",
    b"ActionID: ",
    b"L1",
    b"L2",
    b"EventList: start",
    b"EventList: Complete",
    b"Output: ",
    b":",
    b": ",
    b"x" * 40,
    b"y" * 200,
    "ж".encode(),
    b"\xff",
    b"\xc3",
    b"\x00",
]
stream_pieces = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=24)), max_size=60)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def check_bounds(conn: AMIConnection) -> None:
    assert conn.buffered_bytes <= MAX_MESSAGE_BYTES
    lists = conn.open_lists()
    assert len(lists) <= MAX_OPEN_LISTS
    for items, size in lists.values():
        assert items <= MAX_LIST_ITEMS and size <= MAX_LIST_BYTES


def check_message(message: object) -> None:
    assert isinstance(message, (Event, Response, AMIListOverflow, Greeting))
    if isinstance(message, Event):
        headers = message.headers
        if message.name:  # the name is the first header's value, as parsed
            assert headers[0][0].lower() == "event" and headers[0][1] == message.name


def feed(chunks: list[bytes], *, close: bool = False) -> list[object]:
    """Feed ``chunks``; the messages until a RemoteProtocolError (the only error allowed)."""
    conn = AMIConnection(
        max_message_bytes=MAX_MESSAGE_BYTES, max_list_items=MAX_LIST_ITEMS, max_list_bytes=MAX_LIST_BYTES
    )
    out: list[object] = []
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            check_bounds(conn)
            while (message := conn.next_event()) not in (NEED_DATA, CLOSED):
                check_message(message)
                out.append(message)
        if close:
            conn.receive_data(b"")
            assert conn.next_event() is CLOSED
    except RemoteProtocolError as exc:
        # The messages before the bad one are still there; then nothing more is framed.
        while (message := conn.next_event()) not in (NEED_DATA, CLOSED):
            check_message(message)
            out.append(message)
        out.append(exc)
        assert conn.buffered_bytes == 0 and conn.open_lists() == {}
    return out


@FUZZ
@given(stream_pieces, st.lists(st.integers(min_value=0), max_size=12))
def test_any_bytes_any_cuts_only_remote_errors_and_bounded(pieces: list[bytes], points: list[int]) -> None:
    data = b"".join(pieces)
    feed(cut(data, points), close=True)


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=8))
def test_raw_random_bytes_only_remote_errors_and_bounded(data: bytes, points: list[int]) -> None:
    feed(cut(b"Asterisk Call Manager/11.0.0\r\n" + data, points))


def outcome(messages: list[object]) -> list[object]:
    """What came out, comparable between runs (an error by its class)."""
    return [type(m).__name__ if isinstance(m, Exception) else summary([m]) for m in messages]


@FUZZ
@given(stream_pieces, st.lists(st.integers(min_value=0), max_size=12))
def test_where_the_stream_is_cut_never_changes_what_comes_out(pieces: list[bytes], points: list[int]) -> None:
    data = b"".join(pieces)
    whole = outcome(feed([data]) if data else [])  # b"" would mean "closed"
    assert outcome(feed(cut(data, points))) == whole


STREAMS = {name: b"".join(received(name)) for name in AMI_TRANSCRIPTS}


def parse_default(chunks: list[bytes]) -> list[object]:
    conn = AMIConnection()
    out: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        assert conn.buffered_bytes <= 1 << 20
        out.extend(conn.drain())
    return out


@FUZZ
@given(st.sampled_from(sorted(STREAMS)), st.lists(st.integers(min_value=0), min_size=1, max_size=40))
def test_recorded_streams_cut_at_random_frame_as_whole(name: str, points: list[int]) -> None:
    stream = STREAMS[name]
    assert summary(parse_default(cut(stream, points))) == summary(parse_default([stream]))


def test_every_ami_transcript_is_fuzzed() -> None:
    assert set(STREAMS) == {n for n in names() if not n.startswith(("fastagi.txt", "sip_trace"))}
    assert len(STREAMS) > 20


@pytest.mark.parametrize("size", [MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1])
@pytest.mark.parametrize("end", [b"\r\n\r\n", b"\n\n"])
def test_a_message_at_and_over_the_limit_whole_or_cut(size: int, end: bytes) -> None:
    """The limit counts a message's bytes with its closing empty line, however it arrives."""
    head = b"Asterisk Call Manager/11.0.0\r\n"
    body = b"Event: X\r\nData: "
    message = body + b"a" * (size - len(body) - len(end)) + end
    assert len(message) == size
    for chunks in ([head + message], [head, message[:-1], message[-1:]], [head + message[:150], message[150:]]):
        out = feed(chunks)
        assert isinstance(out[-1], RemoteProtocolError) is (size > MAX_MESSAGE_BYTES), chunks


def test_a_partial_message_left_after_complete_ones_is_bounded_too() -> None:
    out = feed([b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\n" + b"x" * (MAX_MESSAGE_BYTES + 1)])
    assert isinstance(out[-1], RemoteProtocolError)


# -- header lookup without a full parse ---------------------------------------------

LOOKED_UP = ["Uniqueid", "Linkedid", "Timestamp", "Channel", "Value", "Event", "event", "UNIQUEID"]
HEADER_NAMES = st.sampled_from(
    ["Uniqueid", "uniqueid", "UniqueID", "Linkedid", "Timestamp", "Value", "Event", "K\u212a"]
)
PIECES = st.sampled_from([": ", ":", "::", " ", "\r", "\n", "\r\n", "x", "1.2", "\u00e9", "\u0130", ""])
LINES = st.one_of(
    st.tuples(HEADER_NAMES, st.sampled_from([": ", ":", ":: ", " : "]), st.lists(PIECES, max_size=3).map("".join)).map(
        "".join
    ),
    st.lists(st.one_of(HEADER_NAMES, PIECES), max_size=6).map("".join),
)


@FUZZ
@given(st.lists(LINES, max_size=8), st.sampled_from(LOOKED_UP))
def test_a_header_found_in_the_text_is_the_one_a_full_parse_finds(lines: list[str], name: str) -> None:
    text = "\r\n".join(["Event: Newstate", *lines])
    lazy = Event("Newstate", text=text)
    parsed = Event("Newstate", text=text)
    parsed.headers  # noqa: B018 -- parse all: get() then reads the index
    assert lazy.get(name) == parsed.get(name)
    assert (name in lazy) == (name in parsed)


@FUZZ
@given(st.lists(LINES, max_size=8), st.sampled_from(["1.2", "x", "\u00e9", "Value", "1.2x", ""]))
def test_may_hold_says_no_only_of_a_value_no_header_has(lines: list[str], value: str) -> None:
    text = "\r\n".join(["Event: VarSet", *lines])
    held = any(header_value == value for _, header_value in Event("VarSet", text=text).headers)
    assert Event("VarSet", text=text).may_hold(value) or not held
    assert Event("VarSet", (("Value", "1.2"),)).may_hold(value)  # headers only: look it up
