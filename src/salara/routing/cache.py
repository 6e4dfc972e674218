"""Recent CRM routing answers per caller, for stale-if-error. Pure: times are monotonic seconds passed in."""

from __future__ import annotations

from collections import OrderedDict


class AnswerCache:
    """Recent CRM answers per caller, for stale-if-error; bounded in size and age."""

    def __init__(self, max_age_s: float, max_entries: int) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def put(self, caller: str, exten: str, now: float) -> None:
        self._entries[caller] = (exten, now)
        self._entries.move_to_end(caller)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, caller: str) -> None:
        """Drop a caller's answer (the CRM now says it names no one)."""
        self._entries.pop(caller, None)

    def get(self, caller: str, now: float) -> str | None:
        """The cached answer if younger than ``max_age_s``, else None."""
        entry = self._entries.get(caller)
        if entry is None:
            return None
        exten, stored_at = entry
        if now - stored_at > self.max_age_s:
            del self._entries[caller]
            return None
        return exten

    def __len__(self) -> int:
        return len(self._entries)
