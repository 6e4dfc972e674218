"""The command about the PostgreSQL store's database: ``db migrate``.

The SQLite store makes its own tables when it opens its file; a PostgreSQL
store (``[outbox] url``) is only opened once its database is migrated to this
salara's schema, by ``salara db migrate`` (run it on each upgrade, before
starting the new version; nodes may run it at once).
"""

from __future__ import annotations

import click

from salara.cli.common import load_config, main
from salara.store.interface import StoreError
from salara.store.migrate import migrate_url
from salara.store.opening import safe_name


@main.group("db")
def db() -> None:
    """The PostgreSQL store's database ([outbox] url)."""


@db.command("migrate")
@click.option("--url", default=None, help="The database (libpq's URI); default: [outbox] url of the config.")
@click.pass_context
def db_migrate(ctx: click.Context, url: str | None) -> None:
    """Apply the store's SQL migrations the database lacks (each in one transaction); exit 1 on failure."""
    target = url or load_config(ctx).outbox.url
    if not target:
        raise click.ClickException("no [outbox] url: the store is the SQLite file at [outbox] path, made on start")
    try:
        done, version = migrate_url(target)
    except StoreError as exc:
        raise click.ClickException(f"cannot migrate {safe_name(target)}: {exc}") from None
    for migration in done:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo(f"{safe_name(target)}: schema version {version}" + ("" if done else " (up to date)"))
