"""The call event types salara emits, by name: SPEC §2's, then the call lifecycle's.

Pure, with no imports of salara's: the config (endpoint filters), the call
model and the live stream all name types from here.
"""

from __future__ import annotations

from typing import Final

COMPAT_TYPES: Final = ("Newchannel", "Newexten", "Hangup", "AgentConnect")
"""The SPEC §2 event types: the only ones with a compat body."""
LIFECYCLE_TYPES: Final = ("call.started", "call.ringing", "call.answered", "call.transferred", "call.ended")
"""The lifecycle event types, in the order a call goes through them (:mod:`salara.calls.lifecycle`)."""
EVENT_TYPES: Final = (*COMPAT_TYPES, *LIFECYCLE_TYPES)
"""Every event type salara emits."""
