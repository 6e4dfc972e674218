"""The commands about call events and tracked calls: ``events``, ``show tracked``, ``forget``.

``events`` opens the store (the outbox file, or the PostgreSQL database) beside the running service;
``show tracked`` and ``forget`` ask the running service over its API.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from salara.cli.common import load_config, main, show
from salara.logsafe import escape
from salara.store.interface import Store, StoreError
from salara.store.opening import open_store, safe_name
from salara.store.records import Status


@main.group()
def events() -> None:
    """Call events waiting in the outbox (works while the service runs)."""


def _outbox(ctx: click.Context, *, readonly: bool) -> Store:
    """The store (``[outbox]``), opened beside a service that may be delivering from it.

    Never with the service's recovery (events in flight due again, trimming,
    a damaged file set aside): that would send again what is in flight.
    ``readonly`` writes nothing at all. Raises :class:`click.ClickException`
    when there is no SQLite file or the store cannot be opened (damaged,
    locked, newer; a database unreachable or not migrated).
    """
    config = load_config(ctx)
    section = config.outbox
    if section.url:
        where = safe_name(section.url)
    else:
        where = section.path
        if not Path(section.path).exists():
            raise click.ClickException(f"no outbox at {section.path}")
    try:
        return open_store(section, recover=False, readonly=readonly)
    except StoreError as exc:
        hint = "" if section.url else " (salara serve sets a damaged file aside when it starts)"
        raise click.ClickException(f"cannot open the outbox {where}: {exc}{hint}") from None


ENDPOINT_HELP = "Only deliveries to this endpoint: default ([url] dest_url_event) or a [webhook NAME]."


@events.command("list")
@click.option("--failed", is_flag=True, help="Only dead events (their retry schedule ended, or 410 Gone).")
@click.option("--endpoint", default=None, help=ENDPOINT_HELP)
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def events_list(ctx: click.Context, failed: bool, endpoint: str | None, limit: int) -> None:
    """List pending, retrying and dead deliveries, oldest first (control characters shown escaped)."""
    with _outbox(ctx, readonly=True) as outbox:
        counts = outbox.counts(endpoint)
        statuses: tuple[Status, ...] = ("dead",) if failed else ("blocked", "ready", "sending", "dead")
        rows = outbox.list_events(statuses, limit=limit, endpoint=endpoint)
    click.echo(
        f"pending {counts.pending}, retrying {counts.retrying}, sending {counts.sending}, "
        f"dead {counts.dead}, delivered (not pruned) {counts.delivered}"
    )
    for row in rows:
        # The call key (AMI's), the CRM's answer and the body (AMI's values) come from outside: one line each.
        last = row.last_error or (f"HTTP {row.last_status}" if row.last_status else "-")
        click.echo(
            f"{escape(row.id)}  {row.status:<7} endpoint={escape(row.endpoint)} call={escape(row.call_key)}"
            f" attempts={row.attempts} last={escape(last)} {escape(row.body.decode(errors='replace'))}"
        )


@events.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--endpoint", default=None, help=ENDPOINT_HELP)
@click.pass_context
def events_retry(ctx: click.Context, ids: tuple[str, ...], endpoint: str | None) -> None:
    """Send dead events again (all, or only IDS), and retry waiting ones now. Their ids stay the same."""
    with _outbox(ctx, readonly=False) as outbox:
        changed = outbox.retry(ids or None, endpoint=endpoint)
    click.echo(f"{changed} event(s) queued for delivery")


@events.command("replay")
@click.option("--since", "since", required=True, type=click.DateTime(), help="Events stored since (UTC).")
@click.option("--endpoint", default="default", show_default=True, help=ENDPOINT_HELP)
@click.pass_context
def events_replay(ctx: click.Context, since: datetime.datetime, endpoint: str) -> None:
    """Send every event stored since a time to an endpoint again, delivered ones too, in per-call order."""
    at = since.replace(tzinfo=datetime.UTC) if since.tzinfo is None else since
    with _outbox(ctx, readonly=False) as outbox:
        changed = outbox.retry(endpoint=endpoint, since=at.timestamp(), delivered=True)
    click.echo(f"{changed} event(s) queued for delivery to {escape(endpoint)}")


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
