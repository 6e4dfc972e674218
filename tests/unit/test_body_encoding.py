"""Call-event bodies and compat answers keep the bytes the standard JSON encoder gave them.

They were ``json.dumps(ensure_ascii=False, separators=(",", ":"))``; a CRM that
compares or signs bodies, and every body stored before an upgrade, sees no
difference in the values salara puts in them.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from salara.api.compat.endpoint import render
from salara.calls.events import CrmEvent
from salara.calls.lifecycle import LifecycleEvent
from salara.events.payload import compat_body, extended_body, lifecycle_body

TEXT = st.text(st.characters(codec="utf-8"), max_size=40)  # control characters, quotes, non-ASCII; no surrogates
MS = st.integers(0, 10**12).map(lambda ms: round(ms / 1000, 3))  # durations and times, rounded to milliseconds
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from([2**64, -(2**63) - 1]) | MS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def standard(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


@given(st.dictionaries(TEXT, TEXT, max_size=8))
def test_a_compat_body_is_the_standard_encoding_of_its_payload(payload: dict[str, str]) -> None:
    event = CrmEvent("Hangup", payload, "1.1", "1.1", tracked=True)
    assert compat_body(event) == standard(payload)


@given(st.dictionaries(TEXT, TEXT, max_size=6), TEXT, TEXT)
def test_an_extended_body_is_the_standard_encoding_of_its_fields(payload: dict[str, str], id_: str, at: str) -> None:
    body = extended_body(CrmEvent("Newchannel", payload, "1.1", "1.2", tracked=False), id_, at)
    assert body == standard(json.loads(body))
    assert json.loads(body)["uniqueid"] == "1.1" and json.loads(body)["id"] == id_


@given(st.dictionaries(TEXT, VALUES, max_size=8))
def test_a_lifecycle_body_and_a_compat_answer_are_the_standard_encoding(fields: dict[str, object]) -> None:
    fields.pop("type", None)
    fields.pop("id", None)
    event = LifecycleEvent("call.ended", "1.1", fields)
    assert lifecycle_body(event, "abc") == standard({"type": "call.ended", "id": "abc", **fields})
    assert render(fields) == standard(fields)


def test_an_integer_past_64_bits_is_written_as_json_writes_it() -> None:
    assert render({"result": 0, "status": 2**70}) == b'{"result":0,"status":1180591620717411303424}'
