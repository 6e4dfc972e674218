"""Dialplan of a test's own, added to the running test Asterisk over AMI and removed after.

Each test module keeps its extensions in a context nobody else uses.
"""

from __future__ import annotations

import contextlib

from testpbx import pbx


def add_extension(context: str, exten: str, priority: str, application: str, data: str = "") -> None:
    """``exten,priority`` of ``context`` runs ``application(data)`` (AMI ``DialplanExtensionAdd``, replacing)."""
    reply = pbx.ami_command(
        "Action: DialplanExtensionAdd",
        f"Context: {context}",
        f"Extension: {exten}",
        f"Priority: {priority}",
        f"Application: {application}",
        f"ApplicationData: {data}",
        "Replace: yes",
    )
    assert "Success" in reply, reply


def remove_extensions(context: str, *extens: str) -> None:
    """Remove ``extens`` from ``context`` (AMI ``DialplanExtensionRemove``); Asterisk being away is no error."""
    for exten in extens:
        with contextlib.suppress(OSError, ConnectionError):
            pbx.ami_command("Action: DialplanExtensionRemove", f"Context: {context}", f"Extension: {exten}")
