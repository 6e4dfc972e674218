"""Asterisk's state codes and the names salara reports for them.

Extension states follow ``enum ast_extension_states`` (include/asterisk/pbx.h)
as the old module printed them; channel states follow ``enum
ast_channel_state`` (include/asterisk/channelstate.h): the short form is what
``ast_state2str`` prints (used in ``"Up (6)"``), the capital form is what the
old module posted in events (``"UP"``).
"""

from __future__ import annotations

from typing import Final

EXTENSION_STATES: Final[dict[int, str]] = {
    -1: "Unknown",
    0: "Idle",
    1: "InUse",
    2: "Busy",
    4: "Unavailable",
    8: "Ringing",
    9: "InUse&Ringing",
    16: "Hold",
    17: "InUse&Hold",
}
"""Extension (hint) state code -> name. -1 means no such extension or no hint."""

CHANNEL_STATES: Final[tuple[str, ...]] = (
    "Down",
    "Rsrvd",
    "OffHook",
    "Dialing",
    "Ring",
    "Ringing",
    "Up",
    "Busy",
    "Dialing Offhook",
    "Pre-ring",
    "Unknown",
)
"""Channel state code (index) -> ``ast_state2str`` name."""

CHANNEL_STATE_EVENT_NAMES: Final[tuple[str, ...]] = (
    "DOWN",
    "RESERVED",
    "OFFHOOK",
    "DIALING",
    "RING",
    "RINGING",
    "UP",
    "BUSY",
    "DIALING_OFFHOOK",
    "PRERING",
    "UNKNOWN",
)
"""Channel state code (index) -> the capitalised name used in CRM events."""


def extension_state_name(code: int) -> str:
    """Name of an extension state code; combinations not listed read ``Unknown``."""
    return EXTENSION_STATES.get(code, "Unknown")


def channel_state_name(code: int) -> str:
    """``ast_state2str`` name of a channel state code (``Unknown`` if out of range)."""
    return CHANNEL_STATES[code] if 0 <= code < len(CHANNEL_STATES) else "Unknown"


def channel_state_event_name(code: int) -> str:
    """Capitalised channel state for CRM events (``UNKNOWN`` if out of range)."""
    return CHANNEL_STATE_EVENT_NAMES[code] if 0 <= code < len(CHANNEL_STATE_EVENT_NAMES) else "UNKNOWN"
