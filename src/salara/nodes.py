"""Two salara nodes for one PBX: what a node does as the leader and as a follower.

With the store on PostgreSQL (``[outbox] url``) several nodes may share one
database and one Asterisk. Each connects to AMI and answers the API (its
call model folds every AMI event: a call placed through one is seen through
the other); one only, the leader (:mod:`salara.store.leadership`, a
PostgreSQL advisory lock), stores the call events and runs the *duties*:
delivery to the endpoints, the event log's retention, the store's wake-ups.

:class:`Node` runs the leadership and, each time this node takes the lead:

1. fences the store (an add is refused unless this node's lock session
   still holds the lock) and counts its events again;
2. takes the call tracking the last leader stored, as after a restart
   (:meth:`EventPipeline.lead <salara.events.pipeline.EventPipeline.lead>`),
   and resynchronises with ``CoreShowChannels`` at once
   (:meth:`Resynchronizer.resync <salara.events.resync.Resynchronizer.resync>`):
   calls that ended while no node led are reconciled;
3. runs the duties until it loses the lead. The deliveries the last leader
   had in flight are taken over when their leases lapse (``[outbox] lease``).

When it loses the lead (its lock connection failed) it stops storing at
once, in the listener, before anything else runs, and the duties are
cancelled (their claims go back to due). With SQLite there is no
leadership: the one node leads always and runs its duties as parts of its
own (:mod:`salara.app`).

:class:`LeaderGauge` is ``salara_node_leader`` on ``/metrics``: 1 while
the node leads, else 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from salara.errors import AMIError
from salara.events.pipeline import EventPipeline
from salara.events.resync import Resynchronizer
from salara.store.interface import StoreError
from salara.supervision import PartFailed, supervise

if TYPE_CHECKING:
    from salara.config.schema import Outbox as OutboxSection
    from salara.control import CallControl
    from salara.store.interface import Store
    from salara.store.leadership import Leadership
    from salara.store.postgres import PostgresStore

log = logging.getLogger(__name__)

Duties = Mapping[str, Callable[[], Awaitable[None]]]
"""What the leader runs, by name: each runs until cancelled (one that returns or raises ends the service)."""


class Node:
    """One node of several on a PostgreSQL store: leads (ingests, delivers) or follows (module doc).

    The pipeline stops storing as soon as the node is made (it follows until
    the lock is its own).
    """

    def __init__(
        self,
        leadership: Leadership,
        pipeline: EventPipeline,
        resyncs: Sequence[Resynchronizer],
        store: PostgresStore,
    ) -> None:
        self.leadership = leadership
        self.pipeline = pipeline
        self.resyncs = resyncs
        """One per PBX (:mod:`salara.sites`): each resynchronises at a takeover."""
        self.store = store
        self.takeovers = 0
        """How many times this node took the lead and resynchronised."""
        self._changed = asyncio.Event()
        pipeline.follow()
        leadership.add_listener(self._on_change)

    @classmethod
    def of(
        cls,
        section: OutboxSection,
        control: CallControl,
        pipeline: EventPipeline,
        resyncs: Sequence[Resynchronizer],
        store: Store,
    ) -> Node | None:
        """The node of ``[outbox]``: None with SQLite (no ``url``: the one node always leads).

        On PostgreSQL, ``control`` is told where every node keeps the
        ``Idempotency-Key`` results (the store) and this node's role.
        """
        if not section.url:
            return None
        from salara.store.leadership import Leadership
        from salara.store.postgres import PostgresStore

        assert isinstance(store, PostgresStore)  # open_store chose it by the same url
        leadership = Leadership(section.url, node=store.node, retry_s=section.takeover)
        node = cls(leadership, pipeline, resyncs, store)
        control.shared_keys = store
        control.role = node.role
        return node

    @property
    def leading(self) -> bool:
        """Whether this node leads now."""
        return self.leadership.leading

    def role(self) -> str:
        """``leader`` or ``follower``, now."""
        return "leader" if self.leadership.leading else "follower"

    def _on_change(self, leading: bool) -> None:
        if not leading:
            # The reads waiting in the batch window first: stored while the lock holds (a stop), else
            # refused by the fence (the lock lost), and so counted and logged as lost.
            self.pipeline.flush()
            self.pipeline.follow()  # at once: nothing more is stored by this node
            self.store.fence_pid = None
        self._changed.set()

    async def _until(self, leading: bool) -> None:
        while self.leadership.leading != leading:
            self._changed.clear()
            await self._changed.wait()

    async def run(self, duties: Duties) -> None:
        """Run the leadership; lead with ``duties`` while the lock is held, follow otherwise; until cancelled.

        Raises :class:`~salara.supervision.PartFailed` when a duty raises or returns.
        """
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.leadership.run(), name="leadership")
                while True:
                    await self._until(True)
                    term = group.create_task(self._lead(duties), name="leading")
                    await self._until(False)
                    term.cancel()
                    await asyncio.wait([term])
        except* PartFailed as failures:
            raise failures.exceptions[0] from None

    async def _lead(self, duties: Duties) -> None:
        await self._take_over()
        await supervise(duties)

    async def _take_over(self) -> None:
        """Fence the store, take the last leader's tracking, resynchronise; retried while the store fails."""
        store = self.store
        while True:
            store.fence_pid = self.leadership.pid
            try:
                store.recount()
                stored = store.load_tracking()
            except StoreError as exc:
                log.error("taking the lead: the store cannot be read (%s); trying again in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            break
        self.pipeline.lead(stored)
        self.takeovers += 1
        log.warning(
            "node %s took the lead: %d tracked calls and %d live channels from the store; resynchronising",
            store.node,
            len(stored.calls),
            len(stored.channels),
        )
        for resync in self.resyncs:
            if not resync.ami.ready:
                continue  # the resynchronisation at the next AMI login does it
            try:
                await resync.resync()
            except AMIError as exc:
                log.warning("calls not resynchronised after taking the lead: %s; at the next sweep", exc)


class LeaderGauge(Collector):
    """``salara_node_leader``: 1 while the node leads (always, without a :class:`Node`: one node on SQLite)."""

    def __init__(self, node: Node | None) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        leading = self.node is None or self.node.leading
        yield GaugeMetricFamily(
            "salara_node_leader", "1 while this node leads: stores call events and delivers them", value=int(leading)
        )
