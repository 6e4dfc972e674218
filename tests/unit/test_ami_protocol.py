"""The sans-I/O AMI layer on recorded Asterisk 22 bytes."""

from __future__ import annotations

import pytest

from salara.ami.messages import MAX_OPEN_LISTS, Action, Event, Greeting, Response
from salara.ami.protocol import (
    CLOSED,
    MAX_HEADERS,
    NEED_DATA,
    AMIConnection,
    encode_action,
)
from salara.errors import AMIListOverflow, LocalProtocolError, RemoteProtocolError
from tests.transcript import load, names, received

AMI_TRANSCRIPTS = [name for name in names() if not name.startswith(("fastagi.txt", "sip_trace"))]


def parse(chunks: list[bytes]) -> list[object]:
    conn = AMIConnection()
    out: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (message := conn.next_event()) not in (NEED_DATA, CLOSED):
            out.append(message)
    return out


def summary(messages: list[object]) -> list[tuple[str, tuple[tuple[str, str], ...], int]]:
    out = []
    for message in messages:
        if isinstance(message, Greeting):
            out.append(("greeting", (("", message.text),), 0))
        elif isinstance(message, Response):
            out.append(("response", message.headers, len(message.events)))
        elif isinstance(message, Event):
            out.append(("event", message.headers, 0))
    return out


@pytest.mark.parametrize("name", AMI_TRANSCRIPTS)
def test_transcript_parses_the_same_whole_as_read_and_byte_by_byte(name: str) -> None:
    reads = received(name)
    as_read = summary(parse(reads))
    stream = b"".join(reads)
    assert summary(parse([stream])) == as_read
    assert summary(parse([stream[i : i + 1] for i in range(len(stream))])) == as_read
    assert as_read[0][0] == "greeting"
    assert len(as_read) > 1


@pytest.mark.parametrize("name", ["ping.txt", "login_md5.txt", "command.txt", "extensionstate.txt"])
def test_every_two_way_split_gives_the_same_messages(name: str) -> None:
    stream = b"".join(received(name))
    expected = summary(parse([stream]))
    for cut in range(len(stream) + 1):
        assert summary(parse([stream[:cut], stream[cut:]])) == expected, cut


def test_greeting_is_one_line_without_blank_line() -> None:
    messages = parse(received("login_plain.txt"))
    assert messages[0] == Greeting("Asterisk Call Manager/11.0.0")
    assert isinstance(messages[0], Greeting) and messages[0].version == "11.0.0"
    login = messages[1]
    assert isinstance(login, Response)
    assert login.ok and login.action_id == "a1" and login.message == "Authentication accepted"
    assert isinstance(messages[2], Event) and messages[2].name == "FullyBooted"


def test_headers_are_case_insensitive_first_wins_and_repeats_are_kept() -> None:
    conn = AMIConnection()
    conn.receive_data(
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: VarSet\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nUniqueid: 1.1\r\n\r\n"
    )
    assert isinstance(conn.next_event(), Greeting)
    event = conn.next_event()
    assert isinstance(event, Event)
    assert event.get("chanvariable") == "A=1"
    assert event.get_all("ChanVariable") == ["A=1", "B=2"]
    assert event["UNIQUEID"] == "1.1"
    assert "uniqueid" in event and "Linkedid" not in event
    with pytest.raises(KeyError):
        _ = event["Linkedid"]


def test_command_output_lines() -> None:
    responses = [m for m in parse(received("command.txt")) if isinstance(m, Response)]
    by_id = {r.action_id: r for r in responses}
    version = by_id["a2"]
    assert version.ok and version.output[0].startswith("Asterisk 22.10.1")
    hints = by_id["a4"].output
    assert any(line.startswith("9001@sim") for line in hints)
    assert hints[-1] == "- 6 hints registered"
    unknown = by_id["a5"]
    assert not unknown.ok
    assert unknown.output == [
        "No such command 'no such cli command' (type 'core show help no such' for other possible commands)"
    ]


def test_old_follows_command_format() -> None:
    # Asterisk before 14 answers Command with a raw body closed by --END COMMAND--;
    # the body may hold blank lines.
    conn = AMIConnection()
    conn.receive_data(b"Asterisk Call Manager/2.10.0\r\n")
    conn.receive_data(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n"
        b"Channel: looks like a header\nline: two\n\nafter blank\n--END COMMAND--\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n"
    )
    conn.next_event()
    response = conn.next_event()
    assert isinstance(response, Response)
    assert response.status == "Follows" and response.ok and response.action_id == "c1"
    assert response.output == ["Channel: looks like a header", "line: two", "", "after blank"]
    event = conn.next_event()
    assert isinstance(event, Event) and event.name == "Hangup"
    assert conn.next_event() is NEED_DATA


def test_list_ends_on_eventlist_complete_and_keeps_unrelated_events() -> None:
    messages = parse(received("pjsip_show_endpoint.txt"))
    lists = [m for m in messages if isinstance(m, Response) and m.events]
    registered = next(r for r in lists if r.action_id == "a2")
    assert [e.name for e in registered.events][-1] == "EndpointDetailComplete"
    assert registered.events[-1]["ListItems"] == str(len(registered.items))
    contact = next(e for e in registered.items if e.name == "ContactStatusDetail")
    assert contact["Status"] == "Reachable" and contact["EndpointName"] == "8001"
    unknown = next(m for m in messages if isinstance(m, Response) and m.action_id == "a4")
    assert not unknown.ok and unknown.message == "Unable to retrieve endpoint 9999"
    # Events of other sources are still delivered on their own.
    assert any(isinstance(m, Event) and m.name == "TestEvent" for m in messages)


def test_list_events_interleaved_with_other_events() -> None:
    conn = AMIConnection()
    conn.receive_data(
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nActionID: L\r\nEventList: start\r\nMessage: x\r\n\r\n"
        b"Event: Status\r\nActionID: L\r\nChannel: A\r\n\r\n"
        b"Event: Newchannel\r\nChannel: B\r\n\r\n"
        b"Event: StatusComplete\r\nActionID: L\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"
    )
    messages = [conn.next_event() for _ in range(3)]
    assert isinstance(messages[1], Event) and messages[1].name == "Newchannel"
    listed = messages[2]
    assert isinstance(listed, Response)
    assert [e.name for e in listed.events] == ["Status", "StatusComplete"]
    assert [e.name for e in listed.items] == ["Status"]


def test_originate_response_is_an_event_with_the_action_id() -> None:
    messages = parse(received("originate_failures.txt"))
    outcome = next(m for m in messages if isinstance(m, Event) and m.name == "OriginateResponse")
    assert outcome.action_id == "fail-unreg"
    assert outcome["Response"] == "Failure" and outcome["Reason"] == "0"


def test_utf8_split_across_reads_survives_and_bad_bytes_become_replacement() -> None:
    name = "Jürgen Straße".encode()
    stream = b"Asterisk Call Manager/11.0.0\r\nEvent: Newcallerid\r\nCallerIDName: " + name + b"\r\n\r\n"
    cut = stream.index(b"\xc3") + 1  # inside the two-byte "ü"
    messages = parse([stream[:cut], stream[cut:]])
    assert isinstance(messages[1], Event) and messages[1]["CallerIDName"] == "Jürgen Straße"
    bad = parse([b"Asterisk Call Manager/11.0.0\r\nEvent: X\r\nName: a\xffb\r\n\r\nEvent: Y\r\n\r\n"])
    assert isinstance(bad[1], Event) and bad[1]["Name"] == "a\ufffdb"
    assert isinstance(bad[2], Event) and bad[2].name == "Y"


def test_closed_after_eof() -> None:
    conn = AMIConnection()
    conn.receive_data(b"Asterisk Call Manager/11.0.0\r\nEvent: Shutdown\r\nRestart: True\r\n\r\n")
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), Greeting)
    event = conn.next_event()
    assert isinstance(event, Event) and event.name == "Shutdown"
    assert conn.next_event() is CLOSED


def test_oversized_message_is_refused() -> None:
    conn = AMIConnection(max_message_bytes=1000)
    conn.receive_data(b"Asterisk Call Manager/11.0.0\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"Event: X\r\nData: " + b"a" * 2000)


def test_encode_action_matches_what_asterisk_received() -> None:
    sent = [b.data for b in load("ping.txt") if b.sent]
    assert encode_action(Action.build("Ping", "a2")) == sent[1]
    login = Action.build("Login", "a1", {"Username": "crm", "Secret": "crmsecret"})
    assert encode_action(login) == sent[0]


@pytest.mark.parametrize(
    "headers",
    [
        (("Exten", "9001\r\nAction: Originate"),),
        (("Exten", "9001\n"),),
        (("Exten", "90\r01"),),
        (("Exten", "90\x0001"),),
        (("Bad\r\nName", "x"),),
        (("Bad: Name", "x"),),
        (("", "x"),),
    ],
)
def test_cr_lf_nul_and_bad_names_are_refused_before_a_byte_is_sent(
    headers: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(LocalProtocolError):
        AMIConnection().send(Action("ExtensionState", "x1", headers))


def test_action_id_and_name_are_checked_too() -> None:
    with pytest.raises(LocalProtocolError):
        encode_action(Action("Ping\r\nAction: Originate", "x"))
    with pytest.raises(LocalProtocolError):
        encode_action(Action("Ping", "x\r\n"))


def test_asterisk_line_and_header_limits() -> None:
    fits = "a" * (1024 - len("Body: \r\n"))
    assert encode_action(Action("MessageSend", "m", (("Body", fits),))).count(b"\r\n") == 4
    with pytest.raises(LocalProtocolError):
        encode_action(Action("MessageSend", "m", (("Body", fits + "a"),)))
    many = tuple(("Variable", f"v{i}=1") for i in range(MAX_HEADERS - 2))
    assert encode_action(Action("Originate", "o", many))
    with pytest.raises(LocalProtocolError):
        encode_action(Action("Originate", "o", (*many, ("Variable", "x=1"))))


# -- lists: caps and given-up actions -------------------------------------------

GREETING = b"Asterisk Call Manager/11.0.0\r\n"


def list_start(action_id: str) -> bytes:
    return f"Response: Success\r\nActionID: {action_id}\r\nEventList: start\r\nMessage: x\r\n\r\n".encode()


def list_item(action_id: str, number: int, padding: str = "") -> bytes:
    return f"Event: Status\r\nActionID: {action_id}\r\nChannel: PJSIP/{number}{padding}\r\n\r\n".encode()


def list_complete(action_id: str, items: int) -> bytes:
    return (
        f"Event: StatusComplete\r\nActionID: {action_id}\r\nEventList: Complete\r\nListItems: {items}\r\n\r\n"
    ).encode()


UNRELATED = b"Event: Newchannel\r\nChannel: PJSIP/9-00000001\r\n\r\n"


def names_of(messages: list[object]) -> list[str]:
    out = []
    for message in messages:
        if isinstance(message, AMIListOverflow):
            out.append(f"overflow {message.action_id}")
        elif isinstance(message, Response):
            out.append(f"response {message.action_id} {len(message.events)}")
        elif isinstance(message, Event):
            out.append(f"event {message.name} {message.action_id}")
    return out


@pytest.mark.parametrize(
    ("caps", "padding"),
    [({"max_list_items": 3}, ""), ({"max_list_bytes": 300}, "x" * 40)],
)
def test_a_list_over_a_cap_is_dropped_reported_and_the_rest_discarded(caps: dict[str, int], padding: str) -> None:
    conn = AMIConnection(**caps)
    conn.receive_data(GREETING + list_start("L") + b"".join(list_item("L", n, padding) for n in range(3)))
    assert conn.open_lists()["L"][0] <= 3 and conn.open_lists()["L"][1] <= caps.get("max_list_bytes", 1 << 30)
    conn.receive_data(b"".join(list_item("L", n, padding) for n in range(3, 8)) + UNRELATED + list_complete("L", 8))
    assert conn.open_lists() == {}
    messages = parse_all(conn)[1:]  # after the greeting
    assert names_of(messages) == ["overflow L", "event Newchannel None"]
    overflow = messages[0]
    assert isinstance(overflow, AMIListOverflow) and "dropped" in str(overflow)
    # Once its Complete event went by, the ActionID is an ActionID like any other.
    conn.receive_data(list_item("L", 99))
    assert names_of(parse_all(conn)) == ["event Status L"]


def parse_all(conn: AMIConnection) -> list[object]:
    out: list[object] = []
    while (message := conn.next_event()) not in (NEED_DATA, CLOSED):
        out.append(message)
    return out


def test_byte_cap_counts_wire_bytes_of_utf8_items() -> None:
    conn = AMIConnection(max_list_bytes=1000)
    conn.receive_data(GREETING + list_start("L") + list_item("L", 1, "ж" * 100))
    ((items, size),) = conn.open_lists().values()
    assert (items, size) == (1, len(list_item("L", 1, "ж" * 100)) - 4)  # the closing blank line is framing


def test_forgotten_list_is_released_and_its_late_items_dropped() -> None:
    conn = AMIConnection()
    conn.receive_data(GREETING + list_start("L") + list_item("L", 1) + list_item("L", 2))
    assert conn.open_lists() == {"L": (2, len(list_item("L", 1)) * 2 - 8)}
    conn.forget("L")
    assert conn.open_lists() == {}
    conn.receive_data(list_item("L", 3) + UNRELATED + list_complete("L", 3))
    assert names_of(parse_all(conn)) == ["event Newchannel None"]


def test_a_list_starting_after_its_action_was_given_up_is_discarded() -> None:
    conn = AMIConnection()
    conn.receive_data(GREETING)
    conn.forget("late")
    conn.receive_data(list_start("late") + list_item("late", 1) + UNRELATED + list_complete("late", 1))
    assert conn.open_lists() == {}
    assert names_of(parse_all(conn)) == ["event Newchannel None"]


def test_a_plain_late_answer_to_a_given_up_action_is_still_delivered() -> None:
    conn = AMIConnection()
    conn.receive_data(GREETING)
    conn.forget("p1")
    conn.receive_data(b"Response: Success\r\nActionID: p1\r\nPing: Pong\r\n\r\n" + list_item("p1", 1))
    assert names_of(parse_all(conn)) == ["response p1 0", "event Status p1"]


def test_too_many_open_lists_fail_the_newest() -> None:
    conn = AMIConnection()
    conn.receive_data(GREETING + b"".join(list_start(f"L{n}") for n in range(MAX_OPEN_LISTS + 1)))
    assert len(conn.open_lists()) == MAX_OPEN_LISTS
    assert names_of(parse_all(conn)) == [f"overflow L{MAX_OPEN_LISTS}"]


# -- framing: LF-only message ends -----------------------------------------------


def lf_only(stream: bytes) -> bytes:
    """``stream`` as an AMI proxy that writes LF-only line ends would pass it on."""
    return stream.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("name", AMI_TRANSCRIPTS)
def test_lf_only_stream_frames_as_the_crlf_one_whole_and_byte_by_byte(name: str) -> None:
    stream = b"".join(received(name))
    expected = summary(parse([stream]))
    lf = lf_only(stream)
    assert summary(parse([lf])) == expected
    assert summary(parse([lf[i : i + 1] for i in range(len(lf))])) == expected


MIXED = (
    b"Asterisk Call Manager/11.0.0\r\n"
    b"Event: A\r\nX: 1\r\n\n"  # CR LF lines, an LF-only blank line
    b"Event: B\nX: 2\n\n"  # LF only
    b"Event: C\nX: 3\r\n\r\n"  # a bare LF inside, CR LF at the end
    b"Response: Error\r\nActionID: e1\r\nMessage: Unable to retrieve endpoint 9999\n\r\n\r\n"
)


def test_mixed_line_ends_split_at_every_byte() -> None:
    whole = summary(parse([MIXED]))
    assert whole == [
        ("greeting", (("", "Asterisk Call Manager/11.0.0"),), 0),
        ("event", (("Event", "A"), ("X", "1")), 0),
        ("event", (("Event", "B"), ("X", "2")), 0),
        ("event", (("Event", "C"), ("X", "3")), 0),
        ("response", (("Response", "Error"), ("ActionID", "e1"), ("Message", "Unable to retrieve endpoint 9999")), 0),
    ]
    for cut in range(len(MIXED) + 1):
        assert summary(parse([MIXED[:cut], MIXED[cut:]])) == whole, cut
    assert summary(parse([MIXED[i : i + 1] for i in range(len(MIXED))])) == whole


def test_lf_only_greeting_and_messages_come_out_at_once() -> None:
    conn = AMIConnection()
    conn.receive_data(b"Asterisk Call Manager/11.0.0\nEvent: Hangup\nUniqueid: 1.2\n\n")
    assert conn.next_event() == Greeting("Asterisk Call Manager/11.0.0")
    event = conn.next_event()
    assert isinstance(event, Event) and event.name == "Hangup" and event["Uniqueid"] == "1.2"
    assert conn.next_event() is NEED_DATA


@pytest.mark.parametrize(
    "text",
    [
        b"Event: Hangup\nUniqueid: 1.2\r\n\r\n",  # a bare LF ends the first line
        b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n",
        b"Event: Hangup \r\nUniqueid: 1.2\r\n\r\n",  # trailing space kept, as in the header
        b"Event: Hang: up\r\n\r\n",
        b"Event: Hangup\r\r\nUniqueid: 1.2\r\n\r\n",
    ],
)
def test_event_name_is_the_parsed_first_header(text: bytes) -> None:
    conn = AMIConnection()
    conn.receive_data(b"Asterisk Call Manager/11.0.0\r\n" + text)
    conn.next_event()
    event = conn.next_event()
    assert isinstance(event, Event)
    assert event.headers[0] == ("Event", event.name)


def test_a_held_follows_body_is_visible_and_ends_at_its_marker() -> None:
    conn = AMIConnection()
    conn.receive_data(b"Asterisk Call Manager/2.10.0\r\n")
    assert not conn.awaiting_body
    conn.receive_data(b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\nsome output\n")
    conn.receive_data(b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n")
    assert conn.awaiting_body  # until the marker all is body (Asterisk writes it at once): the caller bounds the wait
    assert isinstance(conn.next_event(), Greeting) and conn.next_event() is NEED_DATA
    conn.receive_data(b"more output\n--END COMMAND--\r\n\r\n")
    assert not conn.awaiting_body
    response, event = conn.next_event(), conn.next_event()
    assert isinstance(response, Response) and response.output[-1] == "more output"
    assert "Event: Hangup" in response.output  # before the marker, all is body
    assert event is NEED_DATA
