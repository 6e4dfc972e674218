"""The sans-I/O FastAGI layer, fed from the recorded Asterisk 22 exchange (tests/transcripts/fastagi.txt)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salara.agi.commands import MAX_COMMAND_BYTES, format_command, quote_arg
from salara.agi.protocol import (
    CLOSED,
    NEED_DATA,
    AGIConnection,
    AGIReply,
    AGIRequest,
    parse_reply,
)
from salara.errors import AGICommandError, LocalProtocolError, RemoteProtocolError
from tests.transcript import load, received

TRANSCRIPT = "fastagi.txt"

# What the recorded AGI script sent on each connection, as (command, *args).
COMMANDS: dict[str, list[tuple[Any, ...]]] = {
    "1": [
        ("GET VARIABLE", "CRMID"),
        ("GET VARIABLE", "NOSUCHVAR"),
        ("SET VARIABLE", "FROM_AGI", "routed by agi"),
        ("GET VARIABLE", "FROM_AGI"),
        ("GET FULL VARIABLE", "${CALLERID(num)}/${EXTEN}/${CHANNEL}"),
        ("CHANNEL STATUS",),
        ("VERBOSE", "hello from fastagi", 1),
        ("EXEC", "NoOp", "exec from agi"),
        ("NO SUCH COMMAND",),
        ("GET VARIABLE",),
        ("SET VARIABLE",),
    ],
    "2": [("SET VARIABLE", "WAITSECS", 1), ("EXEC", "Goto", "sim,9001,1")],
    "3": [("GET VARIABLE", "CRMID")] * 3,
}

GET_VARIABLE_USAGE = (
    "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. Returns "
    "<literal>1</literal> if <replaceable>variablename</replaceable> is set and returns the variable "
    "in parentheses.",
    "Example return code: 200 result=1 (testvariable)",
)
SYNTAX = "Invalid command syntax.  Proper usage follows:"

# The replies Asterisk gave, summarised by `summary` below.
REPLIES: dict[str, list[tuple[object, ...]]] = {
    "1": [
        ("reply", 200, "1", "agi-basic", None, ""),
        ("reply", 200, "0", None, None, ""),
        ("reply", 200, "1", None, None, ""),
        ("reply", 200, "1", "routed by agi", None, ""),
        ("reply", 200, "1", "5555000/5000/Local/5000@phones-0000000e;2", None, ""),
        ("reply", 200, "6", None, None, ""),
        ("reply", 200, "1", None, None, ""),
        ("reply", 200, "0", None, None, ""),
        ("error", 510, "Invalid or unknown command", (), "NO SUCH COMMAND"),
        ("error", 520, SYNTAX, GET_VARIABLE_USAGE, "GET VARIABLE"),
        ("error", 520, SYNTAX, ("Sets a variable to the current channel.",), "SET VARIABLE"),
    ],
    "2": [("reply", 200, "1", None, None, ""), ("reply", 200, "0", None, None, "")],
    "3": [("reply", 200, "1", "agi-hangup", None, "")] * 3,
}


def summary(event: object) -> tuple[object, ...]:
    if isinstance(event, AGIReply):
        return ("reply", event.code, event.result, event.data, event.endpos, event.extra)
    if isinstance(event, AGICommandError):
        return ("error", event.code, event.text, event.usage, event.command)
    if isinstance(event, AGIRequest):
        return ("request", event.uniqueid)
    return (event,)


def drain(conn: AGIConnection) -> list[object]:
    out: list[object] = []
    while (event := conn.next_event()) is not NEED_DATA and event is not CLOSED:
        out.append(event)
    return out


def feed(conn: AGIConnection, data: bytes) -> None:
    """receive_data, skipping empty pieces (``b""`` means the peer closed)."""
    if data:
        conn.receive_data(data)


def asterisk_argv(line: bytes) -> list[str]:
    """Split a command line into words the way Asterisk's ``parse_args`` (res_agi.c) does."""
    text = line.decode().removesuffix("\n")
    words: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for char in text:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
                words.append("")
        elif char in " \t" and not quoted and not escaped:
            if current is not None:
                words[-1] = "".join(current)
            current = None
        elif char == "\\" and not escaped:
            escaped = True
            continue
        else:
            if current is None:
                current = []
                words.append("")
            current.append(char)
        escaped = False
    if current is not None:
        words[-1] = "".join(current)
    return words


# -- the variable block --------------------------------------------------------


def test_request_from_transcript() -> None:
    conn = AGIConnection()
    for data in received(TRANSCRIPT, "1")[:2]:
        conn.receive_data(data)
    request = conn.next_event()
    assert isinstance(request, AGIRequest)
    assert request.network_script == "route"
    assert dict(request.query) == {"x": "1"}
    assert request.request == "agi://127.0.0.1:4573/route?x=1"
    assert request.channel == "Local/5000@phones-0000000e;2"
    assert request.uniqueid == "1795962339.39"
    assert request.callerid == "5555000"
    assert request.calleridname == "AGI Test"
    assert request.context == "phones"
    assert request.extension == "5000"
    assert request.priority == 2
    assert request.args == ("first arg", "basic")
    assert len(request.variables) == 24
    assert request.variables["agi_accountcode"] == ""
    assert request.variables["agi_network_script"] == "route?x=1"
    assert request.variables["agi_dnid"] == "unknown"
    assert conn.next_event() is NEED_DATA


def test_request_without_caller_id_keeps_asterisk_unknown() -> None:
    conn = AGIConnection()
    for data in received(TRANSCRIPT, "3")[:2]:
        conn.receive_data(data)
    request = conn.next_event()
    assert isinstance(request, AGIRequest)
    assert (request.callerid, request.calleridname, request.args) == (
        "unknown",
        "unknown",
        ("first arg", "hangup"),
    )


def test_request_query_and_args_order() -> None:
    request = AGIRequest.from_variables(
        {
            "agi_network_script": "route%20a?x=1&y=&x=2&z=a%2Bb",
            "agi_arg_10": "ten",
            "agi_arg_2": "two",
            "agi_arg_1": "one",
            "agi_priority": "7",
        }
    )
    assert request.network_script == "route a"
    assert dict(request.query) == {"x": "2", "y": "", "z": "a+b"}
    assert request.args == ("one", "two", "ten")
    assert (request.priority, request.channel) == (7, "")


def test_request_bad_priority_is_remote_error() -> None:
    conn = AGIConnection()
    with pytest.raises(RemoteProtocolError, match="agi_priority"):
        conn.receive_data(b"agi_priority: two\n\n")


def test_utf8_split_between_reads_and_invalid_bytes() -> None:
    block = "agi_calleridname: Иван Петров\n".encode() + b"agi_callerid: 1\xff\n\n"
    for cut in range(len(block) + 1):
        conn = AGIConnection()
        feed(conn, block[:cut])
        feed(conn, block[cut:])
        request = conn.next_event()
        assert isinstance(request, AGIRequest)
        assert request.calleridname == "Иван Петров"
        assert request.callerid == "1\ufffd"


def test_half_block_then_close() -> None:
    conn = AGIConnection()
    conn.receive_data(received(TRANSCRIPT, "1")[0][:100])
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert conn.closed


def test_line_without_colon_in_block_is_remote_error() -> None:
    conn = AGIConnection()
    with pytest.raises(RemoteProtocolError, match="not an AGI variable line"):
        conn.receive_data(b"agi_network: yes\n200 result=1\n")


# -- whole exchanges -------------------------------------------------------------


@pytest.mark.parametrize("conn_id", ["1", "2", "3"])
def test_transcript_replayed_in_recorded_order(conn_id: str) -> None:
    conn = AGIConnection()
    commands = iter(COMMANDS[conn_id])
    events: list[object] = []
    hungup_seen_at = None
    for block in load(TRANSCRIPT):
        if block.conn != conn_id:
            continue
        if block.sent:
            ours = conn.send_command(*map(str, next(commands)))
            assert asterisk_argv(ours) == asterisk_argv(block.data)
        else:
            conn.receive_data(block.data)
            events.extend(drain(conn))
            if conn.hungup and hungup_seen_at is None:
                hungup_seen_at = len(events)
    assert summary(events[0])[0] == "request"
    assert [summary(e) for e in events[1:]] == REPLIES[conn_id]
    assert conn.outstanding == 0
    # Only connection 3 saw the channel hang up, after its first reply.
    assert hungup_seen_at == (2 if conn_id == "3" else None)


@pytest.mark.parametrize("conn_id", ["1", "2", "3"])
def test_transcript_split_at_every_byte(conn_id: str) -> None:
    stream = b"".join(received(TRANSCRIPT, conn_id))
    expected = REPLIES[conn_id]
    for cut in [*range(len(stream) + 1), -1]:
        conn = AGIConnection()
        for command in COMMANDS[conn_id]:  # pipelined: Asterisk reads them in turn
            conn.send_command(*command)
        if cut == -1:  # one byte per read
            events = []
            for index in range(len(stream)):
                conn.receive_data(stream[index : index + 1])
                events.extend(drain(conn))
        else:
            feed(conn, stream[:cut])
            events = drain(conn)
            feed(conn, stream[cut:])
            events += drain(conn)
        assert [summary(e) for e in events[1:]] == expected, cut
        assert isinstance(events[0], AGIRequest)
        assert conn.hungup is (conn_id == "3")
        conn.receive_data(b"")
        assert conn.next_event() is CLOSED


def test_recorded_command_bytes() -> None:
    sent = [b.data for b in load(TRANSCRIPT) if b.sent]
    assert format_command("SET VARIABLE", "FROM_AGI", "routed by agi") in sent
    assert format_command("VERBOSE", "hello from fastagi", 1) in sent
    assert format_command("EXEC", "NoOp", "exec from agi") in sent
    assert format_command("EXEC", "Goto", "sim,9001,1") == b"EXEC Goto sim,9001,1\n"
    assert format_command("SET VARIABLE", "WAITSECS", 1) == b"SET VARIABLE WAITSECS 1\n"
    assert format_command("CHANNEL STATUS") == b"CHANNEL STATUS\n"


# -- replies not in the recording ------------------------------------------------


def replies_for(data: bytes, commands: int = 1) -> tuple[AGIConnection, list[object]]:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\n\n")
    assert isinstance(conn.next_event(), AGIRequest)
    for _ in range(commands):
        conn.send_command("EXEC", "Gosub", "sub,s,1")
    feed(conn, data)
    return conn, drain(conn)


def test_511_dead_channel() -> None:
    conn, events = replies_for(b"HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n")
    (error,) = events
    assert isinstance(error, AGICommandError)
    assert (error.code, error.text, error.dead_channel) == (
        511,
        "Command Not Permitted on a dead channel or intercept routine",
        True,
    )
    assert str(error) == "EXEC: 511 Command Not Permitted on a dead channel or intercept routine"
    assert conn.hungup and conn.outstanding == 0


def test_100_trying_then_final_reply_split_anywhere() -> None:
    data = b"100 result=0 Trying...\n200 result=0 Gosub complete\n"
    for cut in range(len(data) + 1):
        conn, events = replies_for(data[:cut])
        feed(conn, data[cut:])
        events += drain(conn)
        assert [summary(e) for e in events] == [("reply", 200, "0", None, None, "Gosub complete")]


def test_520_without_usage() -> None:
    _, events = replies_for(b"520 Invalid command syntax.  Proper usage not available.\n")
    (error,) = events
    assert isinstance(error, AGICommandError)
    assert (error.code, error.text, error.usage) == (
        520,
        "Invalid command syntax.  Proper usage not available.",
        (),
    )


def test_hangup_line_inside_usage_is_usage_text_and_pairing_holds() -> None:
    data = b"520-Invalid command syntax.  Proper usage follows:\nHANGUP\n520 End of proper usage.\n200 result=1\n"
    conn, events = replies_for(data, commands=2)
    assert [summary(e) for e in events] == [
        ("error", 520, SYNTAX, ("HANGUP",), "EXEC"),
        ("reply", 200, "1", None, None, ""),
    ]
    assert not conn.hungup


def test_503_is_an_error() -> None:
    _, events = replies_for(b"503 result=-2 Memory allocation failure\n")
    (error,) = events
    assert isinstance(error, AGICommandError)
    assert (error.code, error.text) == (503, "result=-2 Memory allocation failure")


def test_reply_without_command_is_remote_error() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\n\n")
    with pytest.raises(RemoteProtocolError, match="no command outstanding"):
        conn.receive_data(b"200 result=1\n")


def test_garbage_line_is_remote_error() -> None:
    conn, _ = replies_for(b"")
    with pytest.raises(RemoteProtocolError, match="unexpected line"):
        conn.receive_data(b"hello\n")


@pytest.mark.parametrize(
    ("line", "result", "data", "endpos", "extra"),
    [
        ("200 result=1 (agi-basic)", "1", "agi-basic", None, ""),
        ("200 result=1 ()", "1", "", None, ""),
        ("200 result=1 (a (b) c)", "1", "a (b) c", None, ""),
        ("200 result=1 (x) endpos=5)", "1", "x) endpos=5", None, ""),
        ("200 result=0 (timeout) endpos=8000", "0", "timeout", 8000, "endpos=8000"),
        ("200 result=1 (digit) digit=5 endpos=1234", "1", "digit", 1234, "digit=5 endpos=1234"),
        ("200 result=0 endpos=0", "0", None, 0, "endpos=0"),
        ("200 result= (timeout)", "", "timeout", None, ""),
        ("200 result=12#", "12#", None, None, ""),
        ("200 result=-1", "-1", None, None, ""),
    ],
)
def test_parse_reply(line: str, result: str, data: str | None, endpos: int | None, extra: str) -> None:
    assert parse_reply(line) == AGIReply(200, result, data, endpos, extra)


def test_result_int() -> None:
    assert parse_reply("200 result=-1").result_int == -1
    assert parse_reply("200 result=6").result_int == 6
    assert parse_reply("200 result=12#").result_int is None
    with pytest.raises(RemoteProtocolError):
        parse_reply("200 ok")


# -- framing limits --------------------------------------------------------------


def test_endless_line_is_remote_error() -> None:
    conn = AGIConnection(max_line_bytes=64)
    conn.receive_data(b"a" * 64)
    with pytest.raises(RemoteProtocolError, match="exceeds 64 bytes"):
        conn.receive_data(b"a")


def test_long_complete_line_is_remote_error() -> None:
    conn = AGIConnection(max_line_bytes=64)
    with pytest.raises(RemoteProtocolError, match="exceeds 64 bytes"):
        conn.receive_data(b"agi_x: " + b"a" * 100 + b"\n\n")


def test_crlf_lines_accepted() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_channel: PJSIP/8001-00000001\r\nagi_priority: 1\r\n\r\n")
    request = conn.next_event()
    assert isinstance(request, AGIRequest)
    assert (request.channel, request.priority) == ("PJSIP/8001-00000001", 1)


# -- formatting commands ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("CRMID", "CRMID"),
        ("sim,9001,1", "sim,9001,1"),
        ("routed by agi", '"routed by agi"'),
        ("", '""'),
        ("a\tb", '"a\tb"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir", '"C:\\\\dir"'),
    ],
)
def test_quote_arg(value: str, quoted: str) -> None:
    assert quote_arg(value) == quoted
    assert asterisk_argv(format_command("SET VARIABLE", "X", value)) == ["SET", "VARIABLE", "X", value]


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b", "\r\nHANGUP", "x\n"])
def test_cr_lf_nul_refused_before_any_bytes(bad: str) -> None:
    conn = AGIConnection()
    with pytest.raises(LocalProtocolError, match="refused"):
        conn.send_command("SET VARIABLE", "X", bad)
    assert conn.outstanding == 0
    with pytest.raises(LocalProtocolError):
        format_command("EXEC", "Goto", bad)


@pytest.mark.parametrize(
    "name", ["", "GET  VARIABLE", " GET", "GET\nHANGUP", "GET VARIABLE\n", "EXEC1", "GET_VARIABLE"]
)
def test_bad_command_name_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="invalid AGI command name"):
        format_command(name)


def test_too_long_or_too_many_words_refused() -> None:
    fits = "x" * (MAX_COMMAND_BYTES - len("VERBOSE \n"))
    assert len(format_command("VERBOSE", fits)) == MAX_COMMAND_BYTES
    with pytest.raises(LocalProtocolError, match="bytes"):
        format_command("VERBOSE", fits + "x")
    assert format_command("EXEC", *["a"] * 125).count(b" ") == 125
    with pytest.raises(LocalProtocolError, match="words"):
        format_command("EXEC", *["a"] * 127)
    with pytest.raises(LocalProtocolError, match="not valid text"):
        format_command("VERBOSE", "\ud800")


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=20)


@given(st.lists(_TEXT, max_size=8))
def test_asterisk_reads_back_what_we_format(args: list[str]) -> None:
    assert asterisk_argv(format_command("GET FULL VARIABLE", *args)) == ["GET", "FULL", "VARIABLE", *args]
