"""The call model checked against Asterisk: one ``CoreShowChannels`` per AMI login, and periodically.

While salara is not connected to Asterisk (AMI link down, or salara not
running) events go unseen. Right after every AMI login, and every ``[event]
sweep_interval`` seconds, :class:`Resynchronizer` asks AMI ``CoreShowChannels``
once and hands the list to the call model (:meth:`CallTracker.sweep
<salara.calls.tracking.CallTracker.sweep>`): the registry's live channels
become Asterisk's, channels gone meanwhile get a synthesized Hangup
(extended payload: ``"synthesized": true``) through the pipeline, and tracked
calls left without channels end. Events that arrive while the list is on its
way win over it.

:attr:`Resynchronizer.resyncs` counts completed resynchronisations; routing
trusts the registry once one completed since the current login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from salara.ami.messages import Response
from salara.calls.call import listed_channel
from salara.calls.ids import IdSpace
from salara.errors import AMIError
from salara.events.pipeline import EventPipeline
from salara.utc import utc_timestamp

log = logging.getLogger(__name__)


class ChannelLister(Protocol):
    """What the resynchronisation needs of the AMI client."""

    @property
    def ready(self) -> bool: ...

    async def action(self, name: str) -> Response: ...


class Resynchronizer:
    """Runs the resynchronisations of one pipeline's call model over one AMI client."""

    def __init__(
        self,
        pipeline: EventPipeline,
        ami: ChannelLister,
        *,
        interval_s: float,
        grace_s: float,
        space: IdSpace | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.ami = ami
        self.space = space
        """With several PBXs: the id space of this one's (its list speaks for its channels only); None: all."""
        self.interval_s = interval_s
        self.grace_s = grace_s
        """A tracked call with no channel yet is kept this long (an Originate still dialling)."""
        self.resyncs = 0
        self._wake = asyncio.Event()

    def completed(self) -> int:
        """:attr:`resyncs`, as a callable (what :class:`~salara.routing.channels.LiveChannels` counts)."""
        return self.resyncs

    def on_ami_state(self, ready: bool) -> None:
        """AMI state listener: after a (re)login, check at once what was missed while away."""
        if ready:
            self._wake.set()

    async def run(self) -> None:
        """Resynchronise after each AMI login and every :attr:`interval_s` seconds, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if not self.ami.ready:
                continue
            try:
                await self.resync()
            except AMIError as exc:
                log.warning("calls not resynchronised with Asterisk: %s", exc)

    async def resync(self) -> list[str]:
        """One AMI ``CoreShowChannels`` folded into the call model; returns the tracked calls ended.

        The synthesized Hangups are stored at once, in one transaction.
        Raises :class:`~salara.errors.AMIError` when the list did not come.
        """
        pipeline = self.pipeline
        tracker = pipeline.tracker
        tracker.begin_resync()
        try:
            response = await self.ami.action("CoreShowChannels")
        except BaseException:
            tracker.abort_resync()
            raise
        space = self.space
        items = [item for item in response.items if item.name == "CoreShowChannel"]
        listed = [listed_channel(space.event(item) if space else item) for item in items]
        wall = pipeline.clock()
        result = tracker.sweep(listed, wall, pipeline.monotonic(), self.grace_s, space.owns if space else None)
        self.resyncs += 1
        if result.hangups:
            timestamp = utc_timestamp(wall)
            for crm_event in result.hangups:
                pipeline.append(crm_event, timestamp)
            log.warning(
                "%d channels hung up while salara was not looking; Hangup events synthesized for %s",
                len(result.hangups),
                ", ".join(event.payload["chan"] for event in result.hangups[:10])
                + (" ..." if len(result.hangups) > 10 else ""),
            )
        pipeline.flush()
        registry = tracker.registry
        log.info(
            "calls resynchronised with Asterisk%s: %d channels in %d calls; %d channels gone unseen",
            f" {space.pbx}" if space else "",
            len(registry.channels),
            len(registry.active()),
            result.missed,
        )
        for linkedid in result.ended:
            log.info("tracked call %s has no channel left in Asterisk; tracking ended", linkedid)
        return result.ended
