"""The ``salara`` command line: run the service and the operator commands (SPEC §5).

Operator commands that need Asterisk open their own short AMI session with
the credentials of the config file; they do not need the service running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import click

import salara
from salara import config as config_module
from salara import fields
from salara.ami.client import AMIClient
from salara.api.security import tokens as auth
from salara.app import ami_settings, serve, setup_logging
from salara.config import Config
from salara.errors import ConfigError, SalaraError
from salara.outbox import Outbox, Status
from salara.service import Telephony
from salara.webhooks import send_test_post

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
    """Connect to AMI, run ``work(telephony)``, disconnect. Errors become CLI errors.

    Gives up at once when AMI refuses the login, and after ``timeout_s``
    seconds when it cannot be reached.
    """
    config = load_config(ctx)
    # A one-shot session: do not wait long for FullyBooted (needs read=system).
    settings = dataclasses.replace(ami_settings(config), boot_timeout_s=2.0)

    async def run() -> T:
        ami = AMIClient(settings)
        task = asyncio.create_task(ami.run())
        try:
            deadline = time.monotonic() + timeout_s
            while not ami.ready:
                refused = ami.last_error is not None and ami.last_error.startswith("AuthenticationError")
                if refused or time.monotonic() > deadline:
                    reason = ami.last_error or "timeout"
                    raise click.ClickException(f"cannot use AMI at {config.ami.host}:{config.ami.port}: {reason}")
                await asyncio.sleep(0.05)
            return await work(Telephony(ami, config))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # The one-shot session's reconnect warnings would only repeat the error shown.
    logging.getLogger("salara.ami").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(run())
    except SalaraError as exc:
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
    try:
        import uvloop  # installed with uvicorn[standard]; the fastest event loop here

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is optional
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            runner.run(serve(config))
        except ConfigError as exc:
            raise click.ClickException(f"config: {exc}") from None


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
            "asterisk_started": f"{status.get('CoreStartupDate')} {status.get('CoreStartupTime')}",
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


@send.command("post")
@click.argument("body", required=False)
@click.option("--url", help="Where to POST (default: [url] dest_url_event).")
@click.pass_context
def send_post(ctx: click.Context, body: str | None, url: str | None) -> None:
    """POST a test event to the CRM the way events are posted (signed if a secret is set)."""
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
            )
        )
    except TimeoutError:
        shown = config_module.mask_url(target)  # the URL may carry credentials
        raise click.ClickException(f"{shown}: no answer within {config.general.curlopt_timeout:g} s") from None
    except aiohttp.ClientError as exc:
        shown = config_module.mask_url(target)
        raise click.ClickException(f"{shown}: {type(exc).__name__}: {str(exc).replace(target, shown)}") from None
    click.echo(f"HTTP {status} {text[:500]}")


@main.group()
def events() -> None:
    """Call events waiting in the outbox (works while the service runs)."""


def _outbox(ctx: click.Context, *, readonly: bool) -> Outbox:
    """The outbox, opened beside a service that may be delivering from it.

    Never with the service's recovery (events in flight due again, trimming):
    that would send again what is in flight. ``readonly`` writes nothing at all.
    """
    config = load_config(ctx)
    path = Path(config.outbox.path)
    if not path.exists():
        raise click.ClickException(f"no outbox at {path}")
    return Outbox(path, max_rows=config.outbox.max_rows, recover=False, readonly=readonly)


@events.command("list")
@click.option("--failed", is_flag=True, help="Only events the CRM refused for good (410 Gone).")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def events_list(ctx: click.Context, failed: bool, limit: int) -> None:
    """List pending, retrying and failed events, oldest first."""
    with _outbox(ctx, readonly=True) as outbox:
        counts = outbox.counts()
        statuses: tuple[Status, ...] = ("gone",) if failed else ("blocked", "ready", "sending", "gone")
        rows = outbox.list_events(statuses, limit=limit)
    click.echo(
        f"pending {counts.pending}, retrying {counts.retrying}, sending {counts.sending}, "
        f"failed {counts.gone}, delivered (not pruned) {counts.delivered}"
    )
    for row in rows:
        last = f"HTTP {row.last_status}" if row.last_status else (row.last_error or "-")
        click.echo(
            f"{row.id}  {row.status:<7} call={row.call_key} attempts={row.attempts} last={last} "
            f"{row.body.decode(errors='replace')}"
        )


@events.command("retry")
@click.argument("ids", nargs=-1)
@click.pass_context
def events_retry(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Send failed events again (all, or only IDS), and retry waiting ones now."""
    with _outbox(ctx, readonly=False) as outbox:
        changed = outbox.retry(ids or None)
    click.echo(f"{changed} event(s) queued for delivery")


CLIENT_TOKEN_ENV = "SALARA_CLIENT_TOKEN"
"""Token (with the ``admin`` right) the CLI sends to the running service when tokens are configured."""


def _service(ctx: click.Context, method: str, path: str) -> Any:
    """Ask the running service over its API (loopback): its JSON answer.

    Raises :class:`click.ClickException` when it does not answer within 5 s,
    refuses the token, or answers another error.
    """
    config = load_config(ctx)
    listen = config.url.rest_server
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    context: ssl.SSLContext | None = None
    if config.api.tls_cert:
        # Our own certificate is the trust anchor; the name may not be the loopback address.
        context = ssl.create_default_context(cafile=config.api.tls_cert)
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    scheme = "https" if config.api.tls_cert else "http"
    url = f"{scheme}://{host}:{listen.port}{path}"
    token = os.environ.get(CLIENT_TOKEN_ENV)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    # Straight to our own port: never through a proxy named in the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url, method=method, headers=headers), timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (401, 403):
            raise click.ClickException(
                f"salara refused ({exc.code}): set {CLIENT_TOKEN_ENV} to a token with the admin right"
            ) from None
        if exc.code == 404 and method == "DELETE":
            raise click.ClickException("no such tracked call") from None
        raise click.ClickException(f"salara answered HTTP {exc.code} at {url}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        raise click.ClickException(f"salara is not answering at {url}: {exc}") from None
    return json.loads(body)


@show.command("tracked")
@click.pass_context
def show_tracked(ctx: click.Context) -> None:
    """Calls the running service tracks for events."""
    for call in _service(ctx, "GET", "/v1/tracked-calls"):
        click.echo(
            f"{call['linkedid']}  {call['source']:<8} caller={call['caller']} exten={call['exten']} "
            f"channels={call['channels']}"
        )


@main.command("forget")
@click.argument("linkedid")
@click.pass_context
def forget(ctx: click.Context, linkedid: str) -> None:
    """Stop tracking the call LINKEDID in the running service."""
    _service(ctx, "DELETE", f"/v1/tracked-calls/{quote(linkedid, safe='')}")
    click.echo(f"{linkedid} forgotten")


@main.group()
def token() -> None:
    """API tokens: create (shown once, only its hash is stored), list, revoke."""


def _csv(value: str) -> str:
    return ",".join(part.strip() for part in value.split(",") if part.strip())


@token.command("create")
@click.argument("name")
@click.option("--rights", required=True, help="Comma list of call, message, state, admin.")
@click.option("--contexts", default="", help="Dialplan contexts calls/messages may use (default: default_context).")
@click.option(
    "--destinations",
    default="",
    help="Numbers calls may dial and messages may reach: ^regex (whole number), prefixes, or 'any'.",
)
@click.option("--rate", default="10/60", show_default=True, help="Calls+messages per seconds, or 'off'.")
@click.option("--replace", is_flag=True, help="Replace an existing token of that name (the old one stops working).")
@click.pass_context
def token_create(
    ctx: click.Context, name: str, rights: str, contexts: str, destinations: str, rate: str, replace: bool
) -> None:
    """Mint a token NAME and store its hash in the config file; the token is printed once.

    The running service picks it up within a second. Example:
    salara token create crm --rights call,message,state --destinations '^[0-9]{3,4}$'
    """
    path = _config_file(ctx)
    existing = load_config(ctx).tokens
    if name in existing and not replace:
        raise click.ClickException(f"token {name} exists: revoke it, or give --replace")
    wanted = {part.strip() for part in rights.split(",") if part.strip()}
    if wanted & {"call", "message"} and not destinations.strip():
        raise click.ClickException(
            "calls and messages need --destinations: for example '^[0-9]{3,4}$' (internal numbers), "
            "a prefix such as 8495, or 'any'"
        )
    secret = auth.new_token()
    values = {
        "hash": auth.hash_token(secret),
        "rights": _csv(rights),
        "contexts": _csv(contexts),
        "destinations": destinations.strip(),
        "rate": rate.strip(),
    }
    try:
        config_module.save_token(path, name, values)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {name} saved to {path} (only its hash); it is shown this once:", err=True)
    click.echo(secret)
    click.echo('send it as "Authorization: Bearer <token>" or "X-API-Key: <token>"', err=True)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List tokens: name, rights, contexts, destinations, rate (never the token)."""
    config = load_config(ctx)
    if not config.tokens:
        click.echo("no tokens: only clients on loopback are served")
    for name, entry in config.tokens.items():
        click.echo(
            f"{name}  rights={','.join(entry.rights) or '-'} "
            f"contexts={','.join(entry.contexts) or config.general.default_context} "
            f"destinations={' '.join(entry.destinations) or '-'} rate={entry.rate or 'off'}"
        )


@token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Remove token NAME from the config file (the running service drops it within a second)."""
    path = _config_file(ctx)
    if name not in load_config(ctx).tokens:
        raise click.ClickException(f"no token {name}")
    try:
        config_module.save_token(path, name, None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {name} revoked in {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
