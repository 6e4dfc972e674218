"""The ``salara`` command line: run the service and the operator commands (SPEC §5).

Operator commands that need Asterisk open their own short AMI session with
the credentials of the config file; they do not need the service running.

:data:`main` (the entry point) and what all commands share are in
:mod:`salara.cli.common`; the commands, by what they work on, in
:mod:`salara.cli.pbx` (Asterisk, and the test post to the CRM),
:mod:`salara.cli.admin` (the config file: routes, tokens) and
:mod:`salara.cli.events` (the outbox and the calls the service tracks),
:mod:`salara.cli.db` (the PostgreSQL store's migrations).
"""

from __future__ import annotations

from salara.cli import admin, db, events, pbx
from salara.cli.common import main

__all__ = ["admin", "db", "events", "main", "pbx"]
