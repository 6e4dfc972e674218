"""The callbacks :class:`~salara.ami.client.AMIClient` calls: events, readiness, finished actions.

Every callback runs in the client's reader task (or where an action ends),
so it must be quick; one that raises is logged and the others still run, in
the order they were added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from salara.ami.messages import Event

log = logging.getLogger("salara.ami.client")

EventListener = Callable[[Event], None]
"""``listener(event)`` for every AMI event, in arrival order."""
StateListener = Callable[[bool], None]
"""``listener(ready)`` whenever the client becomes ready (logged in, booted) or stops being so."""
ActionListener = Callable[[str, float, str], None]
"""``listener(action_name, seconds, outcome)``; outcome ``success``, ``error``, ``timeout`` or ``lost``."""


class Listeners:
    """The three lists of callbacks and their calls; a callback that raises is logged, never propagated."""

    __slots__ = ("actions", "events", "states")

    def __init__(self) -> None:
        self.events: list[EventListener] = []
        self.states: list[StateListener] = []
        self.actions: list[ActionListener] = []

    def event(self, event: Event) -> None:
        """Hand ``event`` to every event listener."""
        for listener in self.events:
            try:
                listener(event)
            except Exception:
                log.exception("AMI event listener failed on %s", event.name)

    def state(self, ready: bool) -> None:
        """Tell every state listener that readiness is now ``ready``."""
        for listener in self.states:
            try:
                listener(ready)
            except Exception:
                log.exception("AMI state listener failed")

    def action(self, name: str, seconds: float, outcome: str) -> None:
        """Tell every action listener that action ``name`` ended with ``outcome`` after ``seconds``."""
        for listener in self.actions:
            try:
                listener(name, seconds, outcome)
            except Exception:
                log.exception("AMI action listener failed")
