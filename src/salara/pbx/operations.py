"""The one façade of typed operations on Asterisk, over one AMI client.

Used by the compat API, ``/v1``, routing and the command line alike; each
operation is one AMI action (named in its docstring), its answer read into a
record of :mod:`salara.pbx.records`. Errors: :class:`~salara.errors.AMIUnavailable`
when AMI is down, :class:`~salara.errors.AMITimeout` when Asterisk does not
answer in time, :class:`~salara.errors.AMIActionError` when it refused,
:class:`~salara.errors.NotFound` for an endpoint or channel it does not have.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping, Sequence

from salara.ami.client import AMIClient
from salara.ami.messages import Event, Response
from salara.errors import AMIActionError, NotFound
from salara.pbx.hints import HintStates
from salara.pbx.records import (
    ChannelInfo,
    EndpointInfo,
    ExtensionInfo,
    channel_of,
    endpoint_of,
    extension_state_of,
)

log = logging.getLogger(__name__)

Fields = Sequence[tuple[str, str | int]]


def new_channel_id() -> str:
    """A Uniqueid for the first channel of a call salara originates.

    Choosing it (``Originate`` ``ChannelId``) makes it the call's Linkedid
    before Asterisk emits a single event, so the call can be tracked from its
    very first ``Newchannel``. 19 characters: fits CDR schemas of 32.
    """
    return f"salara-{secrets.token_hex(6)}"


class PBX:
    """Typed operations on one Asterisk; ``good_status`` are the extension states counted as available."""

    def __init__(self, ami: AMIClient, good_status: tuple[int, ...]) -> None:
        self.ami = ami
        self._good_status = good_status
        self._state_queries: dict[tuple[str, str], asyncio.Task[ExtensionInfo]] = {}
        self.hints = HintStates(good_status)
        ami.add_event_listener(self.hints.on_event)
        ami.add_state_listener(self._link_changed)

    @property
    def good_status(self) -> tuple[int, ...]:
        """The extension state codes counted as available (``[url] good_status``; a reload sets it)."""
        return self._good_status

    @good_status.setter
    def good_status(self, codes: tuple[int, ...]) -> None:
        self._good_status = codes
        self.hints.good_status = codes  # the states it answers from events count by the new codes too

    def _link_changed(self, ready: bool) -> None:
        self.hints.clear()

    @property
    def ready(self) -> bool:
        """Whether AMI is logged in (and Asterisk fully booted)."""
        return self.ami.ready

    def known_extension_state(self, exten: str, context: str) -> ExtensionInfo | None:
        """The hint state of ``exten@context`` when salara knows it without asking Asterisk, else None.

        Known: read once by ``ExtensionState`` and followed by its
        ``ExtensionStatus`` events since (:meth:`salara.pbx.hints.HintStates.get`).
        """
        return self.hints.get(exten, context, time.monotonic())

    async def extension_state(self, exten: str, context: str) -> ExtensionInfo:
        """AMI ``ExtensionState``: the hint state of ``exten@context``.

        State -1 ``Unknown`` when there is no such extension or it has no
        hint. A hint read once is then answered from its ``ExtensionStatus``
        events without a round trip (:mod:`salara.pbx.hints`). Identical
        queries made while one is in flight share its answer: CRMs poll the
        same extensions in bursts, and the state a joiner gets was read at
        most one AMI round trip before it asked.
        """
        known = self.hints.get(exten, context, time.monotonic())
        if known is not None:
            return known
        key = (exten, context)
        query = self._state_queries.get(key)
        if query is None:
            query = asyncio.create_task(self._extension_state(exten, context))
            self._state_queries[key] = query
            query.add_done_callback(lambda done: self._query_done(key, done))
        # Shielded: one caller giving up (client gone) must not cancel the others' answer.
        return await asyncio.shield(query)

    def _query_done(self, key: tuple[str, str], query: asyncio.Task[ExtensionInfo]) -> None:
        self._state_queries.pop(key, None)
        if not query.cancelled():
            query.exception()  # retrieved here: every waiter may have gone

    async def _extension_state(self, exten: str, context: str) -> ExtensionInfo:
        token = self.hints.reading()
        response = await self.ami.action("ExtensionState", {"Exten": exten, "Context": context})
        info = extension_state_of(exten, context, response, self.good_status)
        return self.hints.answered(info, token, time.monotonic())

    async def endpoint(self, name: str) -> EndpointInfo:
        """AMI ``PJSIPShowEndpoint`` normalised: contacts, reachability, device state.

        Falls back to chan_sip ``SIPshowpeer`` on an Asterisk without PJSIP.
        Raises :class:`~salara.errors.NotFound` for an unknown endpoint.
        """
        response = await self.ami.action("PJSIPShowEndpoint", {"Endpoint": name}, check=False)
        if not response.ok:
            if "invalid/unknown command" in response.message.lower():
                return await self._sip_peer(name)
            raise NotFound(f"no PJSIP endpoint {name}", details={"asterisk": response.message})
        return endpoint_of(name, response.events)

    async def _sip_peer(self, name: str) -> EndpointInfo:
        response = await self.ami.action("SIPshowpeer", {"Peer": name}, check=False)
        if not response.ok:
            raise NotFound(f"no SIP peer {name}", details={"asterisk": response.message})
        status = (response.get("Status") or "").upper()
        if status.startswith("OK"):
            reachability = "reachable"
        elif status.startswith(("UNREACHABLE", "LAGGED")):
            reachability = "unreachable"
        else:
            reachability = "unknown"
        return EndpointInfo(name, bool(status), reachability, None, None, None, ())

    async def channel(self, name: str) -> ChannelInfo:
        """AMI ``Status`` of one channel (by name or Uniqueid); :class:`~salara.errors.NotFound` when absent."""
        response = await self.ami.action("Status", {"Channel": name}, check=False)
        items = [event for event in response.items if event.name == "Status"]
        if not response.ok or not items:
            raise NotFound(f"no channel {name}")
        return channel_of(items[0])

    async def originate(self, fields: Fields, *, timeout_s: float) -> asyncio.Future[Event]:
        """AMI ``Originate`` (``Async: true``) of ``fields``; returns the future ``OriginateResponse``.

        Every value must have been validated (``salara.fields``) by the
        caller. The future fails with :class:`~salara.errors.AMIError` when
        no answer came within ``timeout_s`` seconds or the link dropped.
        """
        _, outcome = await self.ami.originate(fields, timeout_s=timeout_s)
        return outcome

    async def message_send(self, to: str, from_: str, text: str) -> str | None:
        """AMI ``MessageSend`` to ``pjsip:<to>`` from ``from_``, without a state check.

        Returns None when Asterisk accepted the message, else Asterisk's reason
        (e.g. ``Message failed to send.`` for an unregistered endpoint).
        """
        try:
            await self.ami.action(
                "MessageSend",
                {"To": f"pjsip:{to}", "From": f'"{from_}" <sip:{from_}@localhost>', "Body": text},
            )
        except AMIActionError as exc:
            log.warning("message to %s not sent: %s", to, exc.message)
            return exc.message or "refused"
        log.info("message from %s to %s sent", from_, to)
        return None

    async def hangup(self, channel: str, cause: int = 16) -> str | None:
        """AMI ``Hangup`` of ``channel`` with Q.850 ``cause``; None when done, else Asterisk's reason."""
        fields: dict[str, str | int] = {"Channel": channel, "Cause": cause}
        response = await self.ami.action("Hangup", fields, check=False)
        return None if response.ok else response.message

    async def redirect(self, channel: str, exten: str, context: str, priority: int = 1) -> None:
        """AMI ``Redirect`` of ``channel`` to ``exten@context`` at ``priority``; AMIActionError when refused."""
        fields: dict[str, str | int] = {"Channel": channel, "Exten": exten, "Context": context, "Priority": priority}
        await self.ami.action("Redirect", fields)

    async def command(self, command: str, *, timeout_s: float | None = None) -> list[str]:
        """AMI ``Command``: a CLI command's output lines."""
        return await self.ami.command(command, timeout_s=timeout_s)

    async def action(self, name: str, fields: Mapping[str, str | int] | None = None) -> Response:
        """Any AMI action, checked (``Response: Error`` raises :class:`~salara.errors.AMIActionError`)."""
        return await self.ami.action(name, fields or {})
