"""Which calls a client sees and controls: its own, those in its contexts; every call with ``admin``.

A token's calls are those it placed and those with a channel whose dialplan
position was in one of the token's ``contexts`` (so a CRM's token still sees
and transfers the inbound calls routed into its contexts). Every other call
needs the ``admin`` right. The same rule decides what ``/v1/calls``, the
live stream and the later event and console views show.
"""

from __future__ import annotations

from dataclasses import dataclass

from salara.calls.call import Call


@dataclass(frozen=True, slots=True)
class Viewer:
    """A client as the rule sees it: its name, whether it is ``admin``, its contexts (None: no restriction)."""

    name: str
    admin: bool = False
    contexts: frozenset[str] | None = None

    @property
    def sees_all(self) -> bool:
        return self.admin or self.contexts is None


EVERYONE = Viewer("", admin=True)
"""A viewer without restriction (no access control installed, loopback without tokens)."""


def sees(viewer: Viewer, call: Call) -> bool:
    """Whether ``viewer`` may see and control ``call``.

    >>> call = Call("c1", 0.0, owner="crm", contexts={"phones"})
    >>> sales, phones = frozenset({"sales"}), frozenset({"phones"})
    >>> sees(Viewer("crm", contexts=sales), call), sees(Viewer("x", contexts=phones), call)
    (True, True)
    >>> sees(Viewer("x", contexts=sales), call), sees(Viewer("x", admin=True), call)
    (False, True)
    """
    if viewer.sees_all:
        return True
    if viewer.name and call.owner == viewer.name:
        return True
    return viewer.contexts is not None and not viewer.contexts.isdisjoint(call.contexts)
