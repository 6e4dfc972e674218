"""The ``salara`` command line: run the service and the operator commands (SPEC §5).

Operator commands that need Asterisk open their own short AMI session with
the credentials of the config file; they do not need the service running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

import salara
from salara import config as config_module
from salara import fields
from salara.ami.client import AMIClient
from salara.app import ami_settings, serve, setup_logging
from salara.config import Config
from salara.errors import AMIError, ConfigError
from salara.service import Telephony

T = TypeVar("T")

DEFAULT_CONFIG_PATHS = (Path("/etc/salara/salara.conf"), Path("/etc/asterisk/salara.conf"))


def find_config(given: str | None) -> Path | None:
    """The config file to read: ``-c``/``SALARA_CONFIG``, else the first default that exists."""
    if given:
        return Path(given)
    return next((path for path in DEFAULT_CONFIG_PATHS if path.is_file()), None)


def load_config(ctx: click.Context) -> Config:
    try:
        return config_module.load(find_config(ctx.obj["config_path"]))
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


def emit(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=None if isinstance(data, dict) else 2))


def with_telephony(ctx: click.Context, work: Callable[[Telephony], Awaitable[T]], timeout_s: float = 10) -> T:
    """Connect to AMI, run ``work(telephony)``, disconnect. Errors become CLI errors."""
    config = load_config(ctx)

    async def run() -> T:
        ami = AMIClient(ami_settings(config))
        task = asyncio.create_task(ami.run())
        try:
            try:
                await ami.wait_ready(timeout_s)
            except TimeoutError:
                raise click.ClickException(
                    f"cannot reach AMI at {config.ami.host}:{config.ami.port}: {ami.last_error or 'timeout'}"
                ) from None
            return await work(Telephony(ami, config))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    logging.getLogger("salara.ami").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(run())
    except (AMIError, fields.FieldError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(salara.__version__, prog_name="salara")
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="SALARA_CONFIG",
    type=click.Path(dir_okay=False),
    help="salara.conf to use (default: /etc/salara/salara.conf, then /etc/asterisk/salara.conf).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """salara: connects an Asterisk PBX to a CRM."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command("serve")
@click.pass_context
def serve_command(ctx: click.Context) -> None:
    """Run the service: HTTP API, AMI client (until SIGINT/SIGTERM)."""
    config = load_config(ctx)
    setup_logging(config.event.verbose)
    asyncio.run(serve(config))


@main.group()
def show() -> None:
    """Show information, configuration or routes."""


@show.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Print the effective configuration; secrets are masked."""
    config = load_config(ctx)
    for section, values in config.masked().items():
        click.echo(f"[{section}]")
        separator = ":" if section == "route" else "="
        for key, value in values.items():
            shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            click.echo(f"{key}{separator}{shown}")
        click.echo()


@show.command("info")
@click.pass_context
def show_info(ctx: click.Context) -> None:
    """Print salara's version, addresses and the Asterisk it talks to."""
    config = load_config(ctx)

    async def work(telephony: Telephony) -> dict[str, Any]:
        settings = await telephony.ami.action("CoreSettings")
        status = await telephony.ami.action("CoreStatus")
        return {
            "asterisk_version": settings.get("AsteriskVersion"),
            "asterisk_uptime": f"{status.get('CoreStartupDate')} {status.get('CoreStartupTime')}",
            "active_calls": status.get("CoreCurrentCalls"),
        }

    info: dict[str, Any] = {
        "salara_version": salara.__version__,
        "config": str(config.path) if config.path else None,
        "api": f"http://{config.url.rest_server}",
        "ami": f"{config.ami.host}:{config.ami.port}",
    }
    info.update(with_telephony(ctx, work))
    emit(info)


@main.group()
def route() -> None:
    """Show or change the [route] table (saved to the config file; the service picks it up)."""


@route.command("show")
@click.pass_context
def route_show(ctx: click.Context) -> None:
    """Print the [route] table (caller:called)."""
    for caller, called in load_config(ctx).routes.items():
        click.echo(f"{caller}:{called}")


def _config_file(ctx: click.Context) -> Path:
    path = find_config(ctx.obj["config_path"])
    if path is None or not path.is_file():
        raise click.ClickException("no config file to change: give one with -c")
    return path


@route.command("set")
@click.argument("caller")
@click.argument("called")
@click.pass_context
def route_set(ctx: click.Context, caller: str, called: str) -> None:
    """Route calls from CALLER to CALLED when the CRM gives no answer."""
    path = _config_file(ctx)
    try:
        config_module.save_route(path, caller, called)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{caller}:{called} saved to {path}")


@route.command("del")
@click.argument("caller")
@click.pass_context
def route_del(ctx: click.Context, caller: str) -> None:
    """Remove CALLER from the [route] table."""
    path = _config_file(ctx)
    if caller not in load_config(ctx).routes:
        raise click.ClickException(f"{caller} is not in the [route] table")
    try:
        config_module.save_route(path, caller, None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{caller} removed from {path}")


show.add_command(route_show, "routes")


@main.group()
def get() -> None:
    """Get a state from Asterisk."""


@get.group("status")
def get_status() -> None:
    """Extension, channel or peer state (as the compat API answers)."""


@get_status.command("extension")
@click.argument("exten")
@click.option("--context", help="Dialplan context (default: [general] default_context).")
@click.pass_context
def status_extension(ctx: click.Context, exten: str, context: str | None) -> None:
    """Extension (hint) state of EXTEN."""

    async def work(telephony: Telephony) -> dict[str, int | str]:
        ctx_name = fields.context("context", context or telephony.config.general.default_context)
        state = await telephony.extension_state(fields.extension("exten", exten), ctx_name)
        return state.as_dict()

    emit(with_telephony(ctx, work))


@get_status.command("channel")
@click.argument("channel")
@click.pass_context
def status_channel(ctx: click.Context, channel: str) -> None:
    """State of a live CHANNEL, e.g. PJSIP/8001-00000004."""

    async def work(telephony: Telephony) -> dict[str, int | str]:
        return (await telephony.channel_state(fields.channel("channel", channel))).as_dict()

    emit(with_telephony(ctx, work))


@get_status.command("peer")
@click.argument("peer")
@click.pass_context
def status_peer(ctx: click.Context, peer: str) -> None:
    """Reachability of the PJSIP endpoint PEER."""

    async def work(telephony: Telephony) -> dict[str, int | str]:
        return (await telephony.peer_state(fields.endpoint("peer", peer))).as_dict()

    emit(with_telephony(ctx, work))


@main.group()
def send() -> None:
    """Send a message or a raw AMI command."""


@send.command("message")
@click.argument("operator")
@click.argument("phone")
@click.argument("text")
@click.option("--context", help="Dialplan context of the operator's hint.")
@click.pass_context
def send_message(ctx: click.Context, operator: str, phone: str, text: str, context: str | None) -> None:
    """Send TEXT as a SIP MESSAGE to OPERATOR's endpoint, from PHONE."""

    async def work(telephony: Telephony) -> dict[str, Any]:
        ctx_name = fields.context("context", context or telephony.config.general.default_context)
        state, sent = await telephony.send_message(
            fields.extension("operator", operator),
            fields.extension("phone", phone),
            fields.message_text("text", text),
            ctx_name,
        )
        return {**state.as_dict(), "sent": sent}

    emit(with_telephony(ctx, work))


@send.command("command")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def send_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Run an Asterisk CLI COMMAND through AMI and print its output."""
    line = " ".join(command)
    if any(char in line for char in "\r\n\0"):
        raise click.ClickException("the command may not contain CR, LF or NUL")

    async def work(telephony: Telephony) -> list[str]:
        return await telephony.ami.command(line)

    for output in with_telephony(ctx, work):
        click.echo(output)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
