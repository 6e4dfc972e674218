"""FastAGI requests checked against the live channels AMI reports.

Anything that can connect to the FastAGI port can send a variable block, so a
request is checked before anything is decided: its ``agi_uniqueid`` must be a
live channel of the call registry with the same name and caller number, and
the call tracked for events is that channel's Linkedid as AMI gave it. While
AMI cannot vouch for channels (not logged in, or not yet resynchronised since
its login) calls are still routed, untracked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from salara.agi.protocol import AGIRequest
from salara.calls.ids import IdSpace
from salara.calls.registry import CallRegistry

CHANNEL_WAIT_S: Final = 0.5
"""Longest wait for AMI to report a FastAGI request's channel (Newchannel is normally long in)."""
CHANNEL_POLL_S: Final = 0.005


@dataclass(frozen=True, slots=True)
class Verdict:
    """A FastAGI request checked against AMI.

    ``ok``: route it. ``linkedid``: the call to track (None: route untracked,
    AMI could not vouch for the channel). ``reason``: why, for the log.
    """

    ok: bool
    linkedid: str | None
    reason: str


class AMIState(Protocol):
    """What :class:`LiveChannels` needs of the AMI client."""

    @property
    def ready(self) -> bool: ...


class LiveChannels:
    """The live channels AMI reports (the call registry), to check FastAGI requests.

    ``resyncs()`` counts the registry's completed resynchronisations with
    Asterisk (``CoreShowChannels``, done after every AMI login); register
    :meth:`on_ami_state` as an AMI state listener. The registry
    is trusted while AMI is logged in and it was resynchronised since the
    login: then every live channel is in it, and a channel missing from it
    does not exist.
    """

    def __init__(
        self, registry: CallRegistry, ami: AMIState, resyncs: Callable[[], int], space: IdSpace | None = None
    ) -> None:
        self.registry = registry
        self.space = space or IdSpace()
        """The PBX's id space: a request's ``agi_uniqueid`` is this PBX's (:mod:`salara.calls.ids`)."""
        self.ami = ami
        self._resyncs = resyncs
        self._at_login: int | None = None

    def on_ami_state(self, ready: bool) -> None:
        """AMI state listener: a login starts a new wait for its resynchronisation."""
        # The resync after this login runs in a task: it completes later and bumps the count.
        self._at_login = self._resyncs() if ready else None

    @property
    def trusted(self) -> bool:
        return self.ami.ready and self._at_login is not None and self._resyncs() > self._at_login

    def _match(self, request: AGIRequest, caller: str) -> tuple[str | None, str]:
        """The channel's Linkedid if the request is that live channel, else None and why not."""
        channel = self.registry.channels.get(self.space.id(request.uniqueid))
        if channel is None:
            return None, f"uniqueid {request.uniqueid!r} is not a live channel"
        if channel.name != request.channel:
            return None, f"uniqueid {request.uniqueid!r} is channel {channel.name!r}, not {request.channel!r}"
        if (channel.caller_number or "") != caller:
            return None, (
                f"channel {channel.name!r} has caller {channel.caller_number or '(none)'!r}, not {caller or '(none)'!r}"
            )
        return channel.linkedid, ""

    async def check(self, request: AGIRequest, caller: str, wait_s: float) -> Verdict:
        """Whether ``request`` is a live channel as AMI reports it, waiting up to ``wait_s`` for AMI to catch up."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.trusted:
                linkedid, why = self._match(request, caller)
                if linkedid is not None:
                    return Verdict(True, linkedid, "live channel")
                if time.monotonic() >= deadline:
                    return Verdict(False, None, why)
            elif not self.ami.ready:
                return Verdict(True, None, "AMI is not connected")
            elif time.monotonic() >= deadline:
                return Verdict(True, None, "AMI's channels are not resynchronised since its login")
            await asyncio.sleep(CHANNEL_POLL_S)
