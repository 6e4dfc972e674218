"""salara's configuration: the old module's ``salara.conf``, read as it is.

Format (the old module's, SPEC §4): ``[section]`` headers, ``key=value``
lines, ``;`` comments, and a ``[route]`` section of ``CALLER:CALLED`` lines;
Asterisk's ``#include`` and ``#tryinclude`` are followed (``#exec`` is
refused). New keys salara needs live in the same files; every key can be
overridden by an environment variable ``SALARA_<SECTION>_<KEY>`` (for
example ``SALARA_AMI_SECRET``). Unknown sections and keys are logged with
their file:line and ignored, so an old file with keys salara does not use
still loads; :func:`check` (``salara check``) lists them, and every other
problem, as errors.

Values are validated into frozen pydantic models; a bad value raises
:class:`~salara.errors.ConfigError` naming its section and key. Durations in
code carry their unit (``_s``).

The package, its imports going down:

- :mod:`~salara.config.values`: the value types of keys (lists, flags, ``host:port``, rates);
- :mod:`~salara.config.hosts`: hosts and URLs compared and shown (loopback, masked secrets);
- :mod:`~salara.config.schema`: the section models and :class:`Config`, no file I/O;
- :mod:`~salara.config.source`: the file format and the tree of included files (:func:`read_file`);
- :mod:`~salara.config.reader`: files and environment to a validated :class:`Config` (:func:`load`, :func:`check`);
- :mod:`~salara.config.editor`: the files edited in place, atomically, under a lock;
- :mod:`~salara.config.changes`: what a reload (SIGHUP) changes live, and what needs a restart.

Import from ``salara.config`` itself; the names below are its interface.
"""

from salara.config.editor import check_value, edit_route, edit_token, locked, save_route, save_token, save_webhook
from salara.config.hosts import is_local_host, mask_url, normalise_host
from salara.config.pbxs import Agi, Ami
from salara.config.reader import build, check, check_config, check_destinations, load, load_tokens
from salara.config.schema import (
    RIGHTS,
    SECTIONS,
    Api,
    Config,
    Event,
    General,
    Keys,
    Outbox,
    Right,
    Routing,
    Token,
    Url,
)
from salara.config.source import Origin, Problem, RawConfig, Report, parse_text, read_file, stamp
from salara.config.values import HostPort, Rate, destination_problem, split_destinations

__all__ = [
    "RIGHTS",
    "SECTIONS",
    "Agi",
    "Ami",
    "Api",
    "Config",
    "Event",
    "General",
    "HostPort",
    "Keys",
    "Origin",
    "Outbox",
    "Problem",
    "Rate",
    "RawConfig",
    "Report",
    "Right",
    "Routing",
    "Token",
    "Url",
    "build",
    "check",
    "check_config",
    "check_destinations",
    "check_value",
    "destination_problem",
    "edit_route",
    "edit_token",
    "is_local_host",
    "load",
    "load_tokens",
    "locked",
    "mask_url",
    "normalise_host",
    "parse_text",
    "read_file",
    "save_route",
    "save_token",
    "save_webhook",
    "split_destinations",
    "stamp",
]
