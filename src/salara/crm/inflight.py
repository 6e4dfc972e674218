"""The requests in flight to one CRM endpoint, and how many there may be.

:class:`InFlight` keeps each request's start (monotonic seconds, oldest
first), feeds each outcome to :class:`~salara.concurrency.AdaptiveLimit`,
and finds the requests that are stuck: unanswered for many round trips
while others answer (a CRM with a full listen backlog leaves them so until
they time out, seconds later). A stuck request tells the limit once, and no
longer counts against it: the sender it holds would otherwise keep the
others from the connections the CRM does serve.
"""

from __future__ import annotations

from collections import OrderedDict

from salara.concurrency import AdaptiveLimit

INITIAL = 8
"""Requests in flight at the start, before the CRM's answers tell how many it takes."""


class InFlight:
    """Requests under way to one endpoint (by event seq) and the number allowed.

    ``adaptive`` false: always ``concurrency``; else an :class:`AdaptiveLimit`
    with ``concurrency`` as its ceiling.
    """

    def __init__(self, concurrency: int, adaptive: bool = True) -> None:
        self.concurrency = concurrency
        self.limit = AdaptiveLimit(concurrency, INITIAL) if adaptive else None
        """None: not adaptive."""
        self.peak = 0
        """Most requests under way at once so far."""
        self._started: OrderedDict[int, float] = OrderedDict()
        self._stalled: set[int] = set()

    def __len__(self) -> int:
        return len(self._started)

    @property
    def allowed(self) -> int:
        """Requests allowed under way now: the limit plus the stuck ones, at most ``concurrency``."""
        if self.limit is None:
            return self.concurrency
        return min(self.concurrency, self.limit.value + len(self._stalled))

    def begin(self, seq: int, now: float) -> None:
        """Event ``seq``'s request starts at ``now``."""
        self._started[seq] = now
        self.peak = max(self.peak, len(self._started))

    def end(self, seq: int) -> None:
        """Event ``seq``'s request is over (answered, failed or cancelled)."""
        self._started.pop(seq, None)

    def outcome(self, seq: int, overloaded: bool, latency_s: float, backlog: bool, now: float) -> bool:
        """Tell the limit how ended request ``seq`` went; True when more requests may start now.

        ``overloaded``: a timeout, connection error, 5xx or 429; else an
        answer after ``latency_s``. ``backlog``: events wait for a sender.
        """
        limit = self.limit
        if limit is None:
            return False
        before = self.allowed
        if overloaded:
            if seq not in self._stalled:  # a stuck request told the limit when it stalled
                limit.overloaded(now)
        else:
            oldest = next(iter(self._started.values()), now)
            limit.answered(latency_s, backlog, now - oldest, now)
        self._stalled.discard(seq)
        self.flag_stalls(now)
        return self.allowed > before

    def flag_stalls(self, now: float) -> bool:
        """Find the requests stuck at ``now``; True when one was found (more may start)."""
        limit = self.limit
        if limit is None:
            return False
        stall_after_s = limit.stall_after_s
        flagged = False
        for seq, started in self._started.items():  # oldest first
            if now - started <= stall_after_s:
                break
            if seq not in self._stalled:
                self._stalled.add(seq)
                limit.stalled(now)
                flagged = True
        return flagged

    def check_every_s(self) -> float | None:
        """How often to look for stuck requests while some are under way (None: no need)."""
        if self.limit is None or not self._started:
            return None
        return max(self.limit.stall_after_s / 2, 0.05)
