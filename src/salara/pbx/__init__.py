"""Asterisk as salara sees it: typed operations (:class:`PBX`) and the records they return."""

from salara.pbx.operations import PBX, new_channel_id
from salara.pbx.records import ChannelInfo, Contact, EndpointInfo, ExtensionInfo

__all__ = ["PBX", "ChannelInfo", "Contact", "EndpointInfo", "ExtensionInfo", "new_channel_id"]
