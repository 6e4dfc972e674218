"""The commands that show, check or change the config file: ``show config``, ``check``, ``route``, ``token``.

Changes are saved to the config file (``-c``, which must exist), or to the
file it includes that holds the section; the running service picks them up
by itself.
"""

from __future__ import annotations

import click

from salara import config as config_module
from salara.api.security import tokens as auth
from salara.cli.common import config_file, find_config, load_config, main, show
from salara.crm.signing import new_secret
from salara.errors import ConfigError


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


@main.command("check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the config file and every file it includes; exit 1 on any problem.

    Lists each problem as FILE:LINE: [section] key: why. Unknown sections and
    keys, which salara serve only warns about, count as problems here.
    Prints "ok" when there is none.
    """
    path = find_config(ctx.obj["config_path"])
    if path is None:
        raise click.ClickException("no config file to check: give one with -c")
    problems = config_module.check(path)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        ctx.exit(1)
    click.echo("ok")


@main.group()
def route() -> None:
    """Show or change the [route] table (saved to the config file; the service picks it up)."""


@route.command("show")
@click.pass_context
def route_show(ctx: click.Context) -> None:
    """Print the [route] table (caller:called)."""
    for caller, called in load_config(ctx).routes.items():
        click.echo(f"{caller}:{called}")


@route.command("set")
@click.argument("caller")
@click.argument("called")
@click.pass_context
def route_set(ctx: click.Context, caller: str, called: str) -> None:
    """Route calls from CALLER to CALLED when the CRM gives no answer."""
    path = config_file(ctx)
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
    path = config_file(ctx)
    if caller not in load_config(ctx).routes:
        raise click.ClickException(f"{caller} is not in the [route] table")
    try:
        config_module.save_route(path, caller, None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{caller} removed from {path}")


show.add_command(route_show, "routes")


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
    path = config_file(ctx)
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
    path = config_file(ctx)
    if name not in load_config(ctx).tokens:
        raise click.ClickException(f"no token {name}")
    try:
        config_module.save_token(path, name, None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {name} revoked in {path}")


@main.group()
def webhook() -> None:
    """Event endpoints: ``[webhook NAME]`` sections and their secrets."""


@webhook.command("secret")
def webhook_secret() -> None:
    """Print a new whsec_ secret for a webhook's `secret` (or `[url] webhook_secret`).

    To rotate without losing a request: set `secret = NEW OLD` (both sign every
    request), let the CRM switch to NEW, then set `secret = NEW`.
    """
    click.echo(new_secret())
