"""Long-lived parts run together: one that raises or stops ends them all, named in the log.

:func:`supervise` runs the service's parts (:mod:`salara.app`) and, on a
node of several, the leader's duties (:mod:`salara.nodes`) under one
:class:`asyncio.TaskGroup`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from salara.errors import SalaraError

log = logging.getLogger("salara.app")


class PartFailed(SalaraError):
    """A long-lived part of the service raised or stopped; ``part`` names it."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part} {reason}")
        self.part = part


class _Stopped(Exception):
    """The main part returned: a clean shutdown."""


async def supervise(parts: Mapping[str, Callable[[], Awaitable[None]]], main: str | None = None) -> None:
    """Run ``parts`` together until ``main`` returns (a clean stop: the others are cancelled), or until cancelled.

    Any part that raises, or any part but ``main`` that returns, is logged
    by name and cancels the others; then :class:`PartFailed` is raised.
    """

    async def watch(name: str, part: Callable[[], Awaitable[None]]) -> None:
        try:
            await part()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("salara part %r failed; stopping the service", name, exc_info=True)
            raise PartFailed(name, f"failed: {type(exc).__name__}: {exc}") from exc
        if name == main:
            raise _Stopped
        log.critical("salara part %r stopped unexpectedly; stopping the service", name)
        raise PartFailed(name, "stopped unexpectedly")

    try:
        async with asyncio.TaskGroup() as group:
            for name, part in parts.items():
                group.create_task(watch(name, part), name=name)
    except* _Stopped:
        pass
    except* PartFailed as failures:
        raise failures.exceptions[0] from None
