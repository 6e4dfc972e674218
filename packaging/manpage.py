"""Write salara(8), the manual page, from the command line's own help (click), to stdout.

Run with the Python that has salara installed: ``python packaging/manpage.py > salara.8``.
Sections: NAME, SYNOPSIS, DESCRIPTION, OPTIONS, COMMANDS (every command and
subcommand with its help and options), SIGNALS, FILES, SEE ALSO (man-pages(7)).
"""

from __future__ import annotations

import datetime
import os
import sys

import click

import salara
from salara.cli import main


def roff(text: str) -> str:
    """Text as roff: backslashes escaped, no line starting with a control character."""
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        stripped = line.strip()
        lines.append("\\&" + stripped if stripped.startswith((".", "'")) else stripped)
    return "\n".join(lines)


def paragraphs(text: str) -> str:
    return "\n.PP\n".join(roff(part) for part in text.strip().split("\n\n"))


def options(command: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{roff(names)}\\fR", roff(help_text) or "\\&"]
    return out


def commands(group: click.Group, ctx: click.Context, path: str) -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        usage = " ".join(command.collect_usage_pieces(sub))
        title = " ".join(part for part in (path, name, roff(usage)) if part)
        out += [f'.SS "{title}"', paragraphs(command.help or "")]
        out += options(command, sub)
        if isinstance(command, click.Group):
            out += commands(command, sub, f"{path} {name}")
    return out


def manpage() -> str:
    ctx = click.Context(main, info_name="salara")
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    day = datetime.datetime.fromtimestamp(epoch, datetime.UTC) if epoch else datetime.datetime.now(datetime.UTC)
    page = [
        f'.TH SALARA 8 "{day:%Y-%m-%d}" "salara {salara.__version__}" "System Administration"',
        ".SH NAME",
        "salara \\- connects an Asterisk PBX to a CRM: call control API, call events, incoming-call routing",
        ".SH SYNOPSIS",
        "\\fBsalara\\fR [\\fB\\-c\\fR \\fIFILE\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        paragraphs(main.help or ""),
        ".PP",
        "\\fBsalara serve\\fR runs the service: an HTTP API for the CRM (default 127.0.0.1:5058), "
        "a FastAGI server for incoming-call routing (127.0.0.1:4573) and an AMI client (127.0.0.1:5038). "
        "The other commands are for the operator; those that need Asterisk open their own short AMI session.",
        ".SH OPTIONS",
        *options(main, ctx),
        ".SH COMMANDS",
        *commands(main, ctx, "salara"),
        ".SH SIGNALS",
        ".TP",
        "\\fBSIGHUP\\fR",
        "Read the configuration again (\\fBsystemctl reload salara\\fR). What can change live changes; "
        "keys that need a restart (listen addresses, the AMI connection, the API's limits, the event store) "
        "are logged and keep their value; a file that does not load is logged and the old configuration kept.",
        ".TP",
        "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
        "Stop cleanly.",
        ".SH FILES",
        ".TP",
        "\\fI/etc/salara/salara.conf\\fR",
        "The configuration (the old Asterisk module's format, plus salara's keys).",
        ".TP",
        "\\fI/etc/salara/local/salara.conf\\fR",
        "Routes and tokens that \\fBsalara route set\\fR and \\fBsalara token create\\fR write "
        "(\\fB[general] edit_file\\fR); included by the main file.",
        ".TP",
        "\\fI/var/lib/salara/outbox.db\\fR",
        "Call events waiting for the CRM (unless \\fB[outbox] url\\fR names a PostgreSQL database).",
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBSALARA_CONFIG\\fR",
        "The configuration file, as \\fB\\-c\\fR.",
        ".TP",
        "\\fBSALARA_\\fISECTION\\fB_\\fIKEY\\fR",
        "Overrides one key of the file, for example \\fBSALARA_AMI_SECRET\\fR.",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fI/usr/share/doc/salara/README.md.gz\\fR",
    ]
    return "\n".join(page) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
