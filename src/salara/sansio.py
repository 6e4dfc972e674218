"""What the sans-I/O protocol layers (AMI and FastAGI) return instead of a message."""

from __future__ import annotations

from enum import Enum
from typing import Final


class Sentinel(Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA: Final = Sentinel.NEED_DATA
"""``next_event()`` needs more bytes before it can return a message."""
CLOSED: Final = Sentinel.CLOSED
"""``next_event()``: the peer closed and everything it sent was read."""
