"""The PBXs behind one salara: which one serves a request, a call, a FastAGI connection.

Each ``[ami]`` (the PBX named ``default``) and ``[ami NAME]`` section is a
:class:`Site`: its own AMI connection, its typed operations
(:class:`~salara.pbx.PBX`, with its hint states), and its id space in the one
call model (:mod:`salara.calls.ids`: ``NAME:Linkedid``, ``default``'s ids
as Asterisk gives them). Its resynchronisation and routing check are made
by :mod:`salara.app` and kept here beside it.

Which PBX serves what (:class:`Sites`):

- a request naming a PBX (``/v1``'s ``pbx``): that one, else
  :class:`~salara.errors.Unprocessable` ``unknown_pbx``;
- a request in a dialplan context: the PBX whose ``contexts`` lists it, else ``default``;
- a call: the PBX of its id;
- a FastAGI connection: among the PBXs whose AMI ``host`` is the peer's
  address, the one its ``pbx=`` script parameter names, else the first;
  a peer no AMI host matches (a NAT, a name) is taken at its ``pbx=`` word,
  else it is ``default``'s.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from salara.agi.server import AGISession
from salara.ami.client import AMIClient, AMISettings
from salara.calls.ids import DEFAULT_PBX, IdSpace, pbx_of
from salara.config import Config
from salara.config.pbxs import Ami
from salara.errors import Unprocessable
from salara.logformat import CALL_ID
from salara.pbx import PBX

if TYPE_CHECKING:
    from salara.ami.messages import Event
    from salara.calls.call import Channel
    from salara.events.resync import Resynchronizer
    from salara.routing.channels import LiveChannels


Handler = Callable[[AGISession], Awaitable[None]]


def ami_settings(section: Ami) -> AMISettings:
    """The AMI client's settings of one ``[ami]`` / ``[ami NAME]`` section."""
    return AMISettings(
        host=section.host,
        port=section.port,
        username=section.username,
        secret=section.secret,
        auth=section.auth,
        ping_interval_s=section.ping_interval,
        reconnect_max_s=section.reconnect_max,
        tls=section.tls,
        tls_ca=section.tls_ca,
    )


@dataclass(eq=False)
class Site:
    """One PBX behind salara (module doc). ``section`` is its ``[ami]`` section as read at start."""

    name: str
    section: Ami
    ami: AMIClient
    pbx: PBX
    space: IdSpace
    resync: Resynchronizer | None = None
    channels: LiveChannels | None = None
    """FastAGI requests from this PBX are checked against these (:mod:`salara.routing.channels`)."""

    def add_event_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for each AMI event of this PBX, its ids in the call model's space."""
        space = self.space
        if not space.prefix:
            self.ami.add_event_listener(listener)
        else:
            self.ami.add_event_listener(lambda event: listener(space.event(event)))


def _address(host: str) -> str:
    """``host`` as an address to compare peers with (IPv4-mapped IPv6 as IPv4); names as they are, lower case."""
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1" if host == "localhost" else host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


class Sites:
    """Every PBX behind salara by name, ``default`` first (module doc for which serves what)."""

    def __init__(self, sites: list[Site]) -> None:
        if not sites or sites[0].name != DEFAULT_PBX:
            raise ValueError("the first PBX is the default one")
        self._by_name = {site.name: site for site in sites}
        self.default = sites[0]
        self._by_context = {context: site for site in reversed(sites) for context in site.section.contexts}

    @classmethod
    def of(cls, config: Config) -> Sites:
        """A site per ``[ami]`` section of ``config``, each with its AMI client (not connected yet)."""
        sites = []
        for name, section in config.ami_sections().items():
            ami = AMIClient(ami_settings(section))
            sites.append(Site(name, section, ami, PBX(ami, config.url.good_status), IdSpace(name)))
        return cls(sites)

    @classmethod
    def single(cls, pbx: PBX, section: Ami | None = None) -> Sites:
        """Only the ``default`` PBX, over ``pbx`` (the CLI, tests)."""
        return cls([Site(DEFAULT_PBX, section or Ami(), pbx.ami, pbx, IdSpace())])

    def __iter__(self) -> Iterator[Site]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def several(self) -> bool:
        """Whether more than one PBX is behind salara."""
        return len(self._by_name) > 1

    def named(self, name: str) -> Site:
        """The PBX called ``name``; raises :class:`~salara.errors.Unprocessable` ``unknown_pbx``."""
        site = self._by_name.get(name.lower())  # sections' names are read in lower case
        if site is None:
            raise Unprocessable(
                f"no PBX {name!r} (one of: {', '.join(self._by_name)})",
                error="unknown_pbx",
                details={"pbx": name},
            )
        return site

    def serving(self, context: str, name: str | None = None) -> Site:
        """The PBX named ``name`` (when given), else the one serving ``context``, else ``default``."""
        if name is not None:
            return self.named(name)
        return self._by_context.get(context, self.default)

    def of_call(self, call_id: str) -> Site:
        """The PBX of a call (or channel) id of the call model; ``default`` for one of no known PBX."""
        return self._by_name.get(pbx_of(call_id), self.default)

    def with_call_id(self, channels: Mapping[str, Channel], handler: Handler) -> Handler:
        """``handler`` with what it logs labelled with the call's id (:data:`salara.logformat.CALL_ID`).

        The id is the Linkedid AMI reported for the request's channel (in the
        registry's ``channels``, by the PBX the connection comes from), looked
        up when a line is logged; nothing the FastAGI peer claims is taken for it.
        """

        async def handle(session: AGISession) -> None:
            space = self.of_peer(session.peer.rpartition(":")[0], session.request.query.get("pbx")).space
            uniqueid = space.id(session.request.uniqueid)

            def call_id() -> str | None:
                channel = channels.get(uniqueid)
                return channel.linkedid if channel is not None else None

            CALL_ID.set(call_id)  # this session's task only
            await handler(session)

        return handle

    def of_peer(self, host: str, claimed: str | None) -> Site:
        """The PBX a FastAGI connection from ``host`` comes from, ``claimed`` its ``pbx=`` word (module doc)."""
        address = _address(host)
        matching = [site for site in self if _address(site.section.host) == address]
        chosen = self._by_name.get(claimed.lower()) if claimed else None
        if matching:
            return chosen if chosen in matching else matching[0]
        return chosen or self.default
