"""The results table's row and the small formatters every benchmark's rows use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    benchmark: str
    figure: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: str = "—"
    """``yes``, ``no``, or ``—`` (nothing to judge: not built, skipped, informative)."""


def yes(ok: bool) -> str:
    """``yes`` or ``no``."""
    return "yes" if ok else "no"


def ms(seconds: float) -> str:
    """Seconds shown in milliseconds, three decimals."""
    return f"{seconds * 1e3:.3f} ms"
