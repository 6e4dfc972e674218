"""What the call model records of a call beyond its channels: renames, hangups, queues, transfers.

Pure: functions over the registry's records, called by
:meth:`CallRegistry.on_event <salara.calls.registry.CallRegistry.on_event>`
for the AMI events of :data:`DETAIL_EVENTS`; each returns the id of the call
it changed (None when it changed none).

- ``Rename`` (``Channel``, ``Newname``, ``Uniqueid``): a masquerade (a pickup,
  a transfer) gave a channel a new name under the same Uniqueid; the
  channel keeps it, so later names, synthesized Hangups, hangups by name and
  the transfer chain use it.
- Who hung up: the call's first hangup signal decides (:func:`hangup_party`):
  a ``HangupRequest`` (the device or far end hung up), a
  ``SoftHangupRequest``, the ``Hangup`` itself, or the dialplan's ``Hangup()``
  (``Newexten`` ``Application: Hangup``: the called side, an IVR or a
  simulated extension, ended it). salara's own hangup
  (:meth:`CallRegistry.hangup_requested`) says ``salara``. A transfer starts
  over: the channels it leaves behind (every channel live then but the one
  moved: the transferer, the bridge peer a ``Redirect`` hangs up) no longer
  count.
- ``QueueCallerJoin`` names the queue, ``AgentConnect`` the queue and agent.
- ``BlindTransfer`` and ``AttendedTransfer`` (``Result: Success``) add a
  :class:`~salara.calls.call.Transfer` to the call of the transferee.
- ``Cdr`` (``cdr_manager``) notes when the call ended (:mod:`salara.calls.cdr`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from salara.ami.messages import Event
from salara.calls.call import Call, Channel, Transfer, TransferKind
from salara.calls.cdr import fold_cdr
from salara.calls.events import agent_number

if TYPE_CHECKING:
    from salara.calls.registry import CallRegistry

DETAIL_EVENTS: Final = frozenset(
    {
        "Rename",
        "HangupRequest",
        "SoftHangupRequest",
        "QueueCallerJoin",
        "AgentConnect",
        "BlindTransfer",
        "AttendedTransfer",
        "Cdr",
    }
)
"""AMI events folded here rather than in the registry's channel fold."""
TRANSFER_EVENTS: Final = frozenset({"BlindTransfer", "AttendedTransfer"})
"""Detail events that carry no ``Uniqueid`` of their own (their channels' are prefixed)."""


def hangup_party(call: Call, channel: Channel, how: str) -> str:
    """Who a hangup signal ``how`` (``request``, ``soft``, ``hangup``, ``dialplan``) on ``channel`` names.

    The dialplan hanging up is the called side (for a call salara placed it
    runs on the operator's channel and stands for the called extension);
    otherwise the operator's channel of a call salara placed, the first
    channel of any other call (its caller), or the called side.
    """
    if how == "dialplan":
        return "called"
    if call.origin is not None:
        return "operator" if channel.uniqueid == call.id else "called"
    first = call.first
    return "caller" if first is not None and channel.uniqueid == first.uniqueid else "called"


def note_hangup(call: Call, channel: Channel, how: str) -> None:
    """Record a hangup signal: the first (of a channel a transfer did not leave behind) says who hung up."""
    if call.hung_up_by is None and channel.uniqueid not in call.left_behind:
        call.hung_up_by = hangup_party(call, channel, how)


def fold_detail(registry: CallRegistry, event: Event, wall: float) -> str | None:
    """Fold one event of :data:`DETAIL_EVENTS` into ``registry``; the id of the call it changed."""
    name = event.name
    if name in TRANSFER_EVENTS:
        return _transfer(registry, event, wall)
    if name == "Cdr":
        return fold_cdr(registry, event, registry.cdr_tz)
    channel = registry.channels.get(event.get("Uniqueid") or "")
    if channel is None:
        return None
    call = registry.calls.get(channel.linkedid)
    if name == "Rename":
        channel.name = event.get("Newname") or channel.name
        return channel.linkedid
    if call is None:
        return None
    if name == "HangupRequest":
        note_hangup(call, channel, "request")
    elif name == "SoftHangupRequest":
        note_hangup(call, channel, "soft")
    else:  # QueueCallerJoin, AgentConnect
        call.queue = event.get("Queue") or call.queue
        if name == "AgentConnect":
            agent = agent_number(event.get("Interface") or event.get("MemberName") or "")
            call.agent = agent or call.agent
    return call.id


def _transfer(registry: CallRegistry, event: Event, wall: float) -> str | None:
    if event.get("Result") != "Success":
        return None
    kind: TransferKind
    if event.name == "BlindTransfer":
        kind, transferer = "blind", "Transferer"
        target, context = event.get("Extension") or "", event.get("Context") or ""
    else:
        kind, transferer = "attended", "OrigTransferer"
        target = event.get("TransferTargetCallerIDNum") or event.get("SecondTransfererConnectedLineNum") or ""
        target = target if target not in ("", "<unknown>") else event.get("DestApp") or ""
        context = event.get("TransferTargetContext") or ""
    moved = registry.channels.get(event.get("TransfereeUniqueid") or "")
    by = registry.channels.get(event.get(f"{transferer}Uniqueid") or "")
    linkedid = (
        (moved.linkedid if moved is not None else None)
        or event.get("TransfereeLinkedid")
        or (by.linkedid if by is not None else None)
        or event.get(f"{transferer}Linkedid")
        or ""
    )
    call = registry.calls.get(linkedid)
    if call is None:
        return None
    name = event.get("TransfereeChannel") or (moved.name if moved is not None else "")
    add_transfer(call, Transfer(kind, wall, moved, name, target, context, by))
    return call.id


def add_transfer(call: Call, transfer: Transfer) -> None:
    """Add a transfer to the call's chain; the channels it leaves behind no longer say who hung up."""
    call.transfers.append(transfer)
    moved = transfer.channel.uniqueid if transfer.channel is not None else None
    call.left_behind.update(uniqueid for uniqueid in call.channels if uniqueid != moved)
    if call.hung_up_by != "salara":
        call.hung_up_by = None
