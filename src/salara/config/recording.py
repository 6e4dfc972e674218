"""``[recordings]``: recording calls with Asterisk's MixMonitor, and serving the files.

Pure, like :mod:`salara.config.schema`, which lists the section.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from salara.config.values import Flag


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class Recordings(BaseModel):
    """``[recordings]``: off by default; for a salara on the PBX's machine (or sharing its monitor directory)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    record_calls: Flag = False
    """Record the calls salara places (``/v1/calls`` ``record`` overrides it per call)."""
    record_inbound: Flag = False
    """Record the inbound calls salara routes."""
    monitor_dir: str = "/var/spool/asterisk/monitor"
    """Asterisk's monitor directory, where MixMonitor writes and salara reads (never through AMI)."""
    format: Annotated[Literal["wav", "wav49", "gsm", "ulaw", "alaw"], BeforeValidator(_lower)] = "wav"
    """The file format MixMonitor writes, by its extension."""
    retention_days: float = Field(0.0, ge=0)
    """Days after which salara deletes the recordings it asked for; 0 keeps them."""
    url_ttl: float = Field(7 * 86400.0, gt=0, le=365 * 86400.0)
    """Seconds a signed recording URL in ``call.ended`` stays valid."""
