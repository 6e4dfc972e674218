"""The commands that talk to Asterisk (``show info``, ``get status``, ``send``) and ``send post``.

Each opens its own short AMI session (:func:`~salara.cli.common.with_control`)
with the credentials of the config file; the service need not run.
``send post`` posts a test event to the CRM the way events are posted.
What Asterisk or the CRM answers is printed through
:func:`~salara.logsafe.escape`: no control character reaches the terminal raw.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import click

import salara
from salara import config as config_module
from salara import fields
from salara.api.compat.answers import channel_answer, extension_answer, peer_answer
from salara.cli.common import emit, load_config, main, show, with_control
from salara.control import CallControl
from salara.crm.testpost import send_test_post
from salara.logsafe import escape


@show.command("info")
@click.pass_context
def show_info(ctx: click.Context) -> None:
    """Print salara's version, addresses and the Asterisk it talks to."""
    config = load_config(ctx)

    async def work(control: CallControl) -> dict[str, Any]:
        settings = await control.pbx.action("CoreSettings")
        status = await control.pbx.action("CoreStatus")
        return {
            "asterisk_version": settings.get("AsteriskVersion"),
            "asterisk_started": f"{status.get('CoreStartupDate')} {status.get('CoreStartupTime')}",
            "active_calls": status.get("CoreCurrentCalls"),
        }

    info: dict[str, Any] = {
        "salara_version": salara.__version__,
        "config": str(config.path) if config.path else None,
        "api": f"http://{config.url.rest_server}",
        "ami": f"{config.ami.host}:{config.ami.port}",
    }
    info.update(with_control(ctx, work))
    emit(info)


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

    async def work(control: CallControl) -> dict[str, int | str]:
        ctx_name = fields.context("context", context or control.config.general.default_context)
        state = await control.pbx.extension_state(fields.extension("exten", exten), ctx_name)
        return extension_answer(state).as_dict()

    emit(with_control(ctx, work))


@get_status.command("channel")
@click.argument("channel")
@click.pass_context
def status_channel(ctx: click.Context, channel: str) -> None:
    """State of a live CHANNEL, e.g. PJSIP/8001-00000004."""

    async def work(control: CallControl) -> dict[str, int | str]:
        return (await channel_answer(control, fields.channel("channel", channel))).as_dict()

    emit(with_control(ctx, work))


@get_status.command("peer")
@click.argument("peer")
@click.pass_context
def status_peer(ctx: click.Context, peer: str) -> None:
    """Reachability of the PJSIP endpoint PEER."""

    async def work(control: CallControl) -> dict[str, int | str]:
        return (await peer_answer(control, fields.endpoint("peer", peer))).as_dict()

    emit(with_control(ctx, work))


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

    async def work(control: CallControl) -> dict[str, Any]:
        ctx_name = fields.context("context", context or control.config.general.default_context)
        state, refused = await control.send_message(
            fields.extension("operator", operator),
            fields.extension("phone", phone),
            fields.message_text("text", text),
            ctx_name,
        )
        return {**extension_answer(state).as_dict(), "sent": refused is None}

    emit(with_control(ctx, work))


@send.command("command")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def send_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Run an Asterisk CLI COMMAND through AMI and print its output (control characters shown escaped)."""
    line = " ".join(command)
    if any(char in line for char in "\r\n\0"):
        raise click.ClickException("the command may not contain CR, LF or NUL")

    async def work(control: CallControl) -> list[str]:
        return await control.pbx.command(line)

    for output in with_control(ctx, work):
        click.echo(escape(output))


@send.command("post")
@click.argument("body", required=False)
@click.option("--url", help="Where to POST (default: [url] dest_url_event).")
@click.pass_context
def send_post(ctx: click.Context, body: str | None, url: str | None) -> None:
    """POST a test event to the CRM the way events are posted (signed if a secret is set; never to salara's API)."""
    config = load_config(ctx)
    target = url or config.url.dest_url_event
    if not target:
        raise click.ClickException("no URL: set [url] dest_url_event or give --url")
    payload = (body or '{"event":"Test","chan":"","caller":"","exten":"","state":"UP"}').encode()
    try:
        json.loads(payload)
    except ValueError as exc:
        raise click.ClickException(f"BODY is not JSON: {exc}") from None
    try:
        status, text = asyncio.run(
            send_test_post(
                target,
                payload,
                secret=config.url.webhook_secret,
                timeout_s=config.general.curlopt_timeout,
                tls_verify=config.url.tls_verify,
                api_listen=config.url.rest_server,
            )
        )
    except TimeoutError:
        shown = config_module.mask_url(target)  # the URL may carry credentials
        raise click.ClickException(f"{shown}: no answer within {config.general.curlopt_timeout:g} s") from None
    except aiohttp.ClientError as exc:
        shown = config_module.mask_url(target)
        raise click.ClickException(
            f"{shown}: {type(exc).__name__}: {escape(str(exc).replace(target, shown))}"
        ) from None
    click.echo(f"HTTP {status} {escape(text[:500])}")
