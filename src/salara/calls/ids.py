"""Call and channel ids across several PBXs: ``NAME:Linkedid`` for every PBX but ``default``.

Two Asterisk servers may hand out the same Uniqueid (``1733131200.42``), so
the one call model keeps the ids of a PBX other than ``default`` in that
PBX's *id space*: its events are rewritten as they come in
(:meth:`IdSpace.event`), every header naming a channel or a call
(``Uniqueid``, ``Linkedid``, ``DestUniqueid``, ``LocalOneLinkedid``...,
the ``Cdr`` event's ``UniqueID``; a ``BridgeUniqueid`` names a bridge and
is left alone) gaining the prefix ``NAME:``. The ``default`` PBX (the
``[ami]`` section) keeps Asterisk's ids as they are, so one PBX's salara
looks as it always did. Asterisk ids never hold ``:``, so the prefix says
which PBX a call is on (:func:`pbx_of`), and what to send back to that PBX
is the id without it (:func:`local_id`).

Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

from salara.ami.messages import Event

DEFAULT_PBX: Final = "default"
"""The name of the ``[ami]`` section's PBX, whose ids carry no prefix."""
SEPARATOR: Final = ":"


def _names_an_id(header: str) -> bool:
    lowered = header.lower()
    return lowered.endswith(("uniqueid", "linkedid")) and "bridge" not in lowered


def pbx_of(call_id: str) -> str:
    """The PBX a call or channel id belongs to: its prefix, else :data:`DEFAULT_PBX`."""
    name, found, _ = call_id.partition(SEPARATOR)
    return name if found else DEFAULT_PBX


def local_id(call_id: str) -> str:
    """The id as its PBX knows it (the prefix taken off)."""
    _, found, rest = call_id.partition(SEPARATOR)
    return rest if found else call_id


class IdSpace:
    """The ids of one PBX named ``pbx`` in the call model (module doc)."""

    __slots__ = ("pbx", "prefix")

    def __init__(self, pbx: str = DEFAULT_PBX) -> None:
        self.pbx = pbx
        self.prefix = "" if pbx == DEFAULT_PBX else pbx + SEPARATOR
        """What this PBX's ids start with in the call model (empty for ``default``)."""

    def id(self, local: str) -> str:
        """The call model's id for ``local``, an id this PBX reported (empty stays empty)."""
        return self.prefix + local if self.prefix and local else local

    def owns(self, call_id: str) -> bool:
        """Whether ``call_id`` (a call or channel id of the call model) is this PBX's."""
        return call_id.startswith(self.prefix) if self.prefix else SEPARATOR not in call_id

    def event(self, event: Event) -> Event:
        """``event`` with its channel and call ids in this id space (the same object for ``default``)."""
        if not self.prefix:
            return event
        prefix = self.prefix
        headers = tuple(
            (name, prefix + value) if value and _names_an_id(name) else (name, value) for name, value in event.headers
        )
        return Event(event.name, headers)
