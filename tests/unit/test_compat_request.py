"""Decoding compat requests (SPEC §1) without touching AMI."""

from __future__ import annotations

import pytest

from salara.api.compat.endpoint import decode_fields
from salara.api.compat.request import (
    ChannelStateQuery,
    ExtensionStateQuery,
    MakeCall,
    PeerStateQuery,
    RequestError,
    SendMessage,
    parse_request,
)
from salara.config import Keys
from salara.fields import FieldError

KEYS = Keys()


def parse(data: dict[str, object], keys: Keys = KEYS) -> object:
    return parse_request(data, keys, "from-crm")


def test_request_kinds_in_spec_order() -> None:
    assert parse({"operator": "8003", "phone": "0000", "msg": "hi"}) == SendMessage("8003", "0000", "hi", "from-crm")
    assert parse({"operator": 8003, "phone": "0000"}) == MakeCall("8003", "0000", "from-crm")
    assert parse({"exten": 9001, "context": "sim"}) == ExtensionStateQuery("9001", "sim")
    assert parse({"peer": "8001"}) == PeerStateQuery("8001")
    assert parse({"chan": "Local/9999@sim-0000000a;1"}) == ChannelStateQuery("Local/9999@sim-0000000a;1")
    # operator without phone is not a call; exten present wins next.
    assert parse({"operator": "8003", "exten": "1"}) == ExtensionStateQuery("1", "from-crm")


def test_configured_key_names_and_defaults() -> None:
    old = Keys(key_extension="extension", key_channel="channel", key_operator="op")
    assert parse({"extension": "1"}, old) == ExtensionStateQuery("1", "from-crm")
    assert parse({"exten": "1"}, old) == ExtensionStateQuery("1", "from-crm")
    assert parse({"op": "1", "phone": "2"}, old) == MakeCall("1", "2", "from-crm")
    # A default name configured for another field is not an alias.
    swapped = Keys(key_phone="exten", key_extension="number")
    assert parse({"operator": "1", "exten": "2"}, swapped) == MakeCall("1", "2", "from-crm")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"foo": "bar"},
        {"exten": True},
        {"exten": 1.5},
        {"exten": None},
        {"exten": ["1"]},
        {"exten": ""},
        {"exten": "12\r\n34"},
        {"exten": "_X."},
        {"exten": "1", "context": "a b"},
        {"chan": "no-slash"},
        {"peer": "a b"},
        {"operator": "1", "phone": "2", "msg": "line\nbreak"},
        {"operator": "1", "phone": "2", "msg": "x" * 2000},
        {"exten": "1" * 81},
    ],
)
def test_bad_requests_are_refused(data: dict[str, object]) -> None:
    with pytest.raises((RequestError, FieldError)):
        parse(data)


def test_decode_fields_json_form_and_query() -> None:
    assert decode_fields(b'{"exten": 1}', "application/json", {}) == {"exten": 1}
    assert decode_fields(b'{"exten": "1"}', "text/plain", {}) == {"exten": "1"}
    assert decode_fields(b"exten=1&context=sim", "application/x-www-form-urlencoded", {}) == {
        "exten": "1",
        "context": "sim",
    }
    assert decode_fields(b"", "", {"exten": "2"}) == {"exten": "2"}
    assert decode_fields(b"exten=1", "", {"exten": "2", "context": "q"}) == {"exten": "1", "context": "q"}
    # Forms are read as leniently as query strings.
    assert decode_fields(b"exten=9001&", "", {}) == {"exten": "9001"}
    assert decode_fields(b"a=1&&exten=2&submit", "", {}) == {"a": "1", "exten": "2", "submit": ""}
    for bad in (b"{", b"[1]", b"\xff", b"no form here"):
        with pytest.raises(RequestError):
            decode_fields(bad, "", {})


@pytest.mark.parametrize("key", ["peer", "exten", "chan", "context"])
def test_lone_surrogates_are_refused(key: str) -> None:
    data: dict[str, object] = {key: "8\ud8001"} if key != "context" else {"exten": "1", "context": "a\udc00"}
    with pytest.raises(FieldError, match="surrogate"):
        parse(data)
