"""Text from outside made safe for one log line or one terminal line: control characters shown as escapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salara.logsafe import escape

CONTROLS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("\x00", "\\x00"),
        ("\x1b[2J\x1b]0;owned\x07", "\\x1b[2J\\x1b]0;owned\\x07"),
        ("\x0b\x0c\x1c\x1d\x1e\x1f", "\\x0b\\x0c\\x1c\\x1d\\x1e\\x1f"),
        ("\x7f", "\\x7f"),
        ("\x85 \x9b31m \x80", "\\x85 \\x9b31m \\x80"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ],
    ids=["LF", "CR", "TAB", "NUL", "ESC-BEL", "other-C0", "DEL", "C1", "line-paragraph-separators"],
)
def test_control_characters_are_shown_as_escapes(raw: str, shown: str) -> None:
    assert escape(raw) == shown


@pytest.mark.parametrize(
    "text",
    ["PJSIP/8001-0000001a", "Иван Петров", "客户 😀", "C:\\path\\n is not a newline", "", "route?context=sim&x=1"],
)
def test_printable_text_is_unchanged(text: str) -> None:
    assert escape(text) == text


def test_anything_is_shown_by_its_str() -> None:
    assert escape(ValueError("HTTP 500: no\r\nFAKE")) == "HTTP 500: no\\r\\nFAKE"
    assert escape(None) == "None"
    assert escape(42) == "42"


@given(st.text())
def test_the_result_is_one_line_without_control_characters(text: str) -> None:
    shown = escape(text)
    assert not CONTROLS & set(shown)
    assert len(shown.splitlines()) <= 1


@given(st.text().filter(lambda t: not CONTROLS & set(t)))
def test_text_without_control_characters_is_unchanged(text: str) -> None:
    assert escape(text) == text
