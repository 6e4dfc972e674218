"""What every ``salara`` command shares: the ``main`` group, the config, AMI sessions, output.

The command groups add their commands to :data:`main` (and to :data:`show`)
from their modules: :mod:`salara.cli.pbx`, :mod:`salara.cli.admin`,
:mod:`salara.cli.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import click

import salara
from salara import config as config_module
from salara.ami.client import AMIClient
from salara.app import serve
from salara.config import Config
from salara.control import CallControl
from salara.errors import ConfigError, SalaraError
from salara.logformat import setup_logging
from salara.sites import ami_settings
from salara.supervision import PartFailed

T = TypeVar("T")

DEFAULT_CONFIG_PATHS = (Path("/etc/salara/salara.conf"), Path("/etc/asterisk/salara.conf"))


def find_config(given: str | None) -> Path | None:
    """The config file to read: ``-c``/``SALARA_CONFIG``, else the first default that exists."""
    if given:
        return Path(given)
    return next((path for path in DEFAULT_CONFIG_PATHS if path.is_file()), None)


def load_config(ctx: click.Context) -> Config:
    """The config of ``-c``/``SALARA_CONFIG`` or the defaults; errors become CLI errors."""
    try:
        return config_module.load(find_config(ctx.obj["config_path"]))
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


@contextlib.contextmanager
def held_records() -> Iterator[list[logging.LogRecord]]:
    """Hold what is logged inside (loading the config, before the log format is known) in a list.

    The records are not shown meanwhile; the caller hands them on once the
    real handlers are set up.
    """
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    root = logging.getLogger()
    hold = Hold(logging.WARNING)
    root.addHandler(hold)
    try:
        yield held
    finally:
        root.removeHandler(hold)


def emit(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=None if isinstance(data, dict) else 2))


def with_control(ctx: click.Context, work: Callable[[CallControl], Awaitable[T]], timeout_s: float = 10) -> T:
    """Connect to AMI, run ``work(control)``, disconnect. Errors become CLI errors.

    Gives up at once when AMI refuses the login, and after ``timeout_s``
    seconds when it cannot be reached.
    """
    config = load_config(ctx)
    # A one-shot session: do not wait long for FullyBooted (needs read=system).
    settings = dataclasses.replace(ami_settings(config.ami), boot_timeout_s=2.0)

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
            return await work(CallControl.over(ami, config))
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


def config_file(ctx: click.Context) -> Path:
    """The config file commands change: ``-c``/``SALARA_CONFIG`` or the first default, which must exist."""
    path = find_config(ctx.obj["config_path"])
    if path is None or not path.is_file():
        raise click.ClickException("no config file to change: give one with -c")
    return path


@main.command("serve")
@click.pass_context
def serve_command(ctx: click.Context) -> None:
    """Run the service: HTTP API, AMI client, FastAGI (until SIGINT/SIGTERM; SIGHUP reloads the config)."""
    with held_records() as held:  # what loading logs, logged once the format is known
        try:
            config = load_config(ctx)
        except click.ClickException:
            for record in held:  # no format to wait for: shown as before, then the error
                if logging.lastResort is not None:
                    logging.lastResort.handle(record)
            raise
    setup_logging(config.event.verbose, config.general.log_format)
    for record in held:
        logging.getLogger(record.name).handle(record)
    as_json = config.general.log_format == "json"
    try:
        import uvloop  # installed with uvicorn[standard]; the fastest event loop here

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is optional
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            runner.run(serve(config))
        except (ConfigError, PartFailed) as exc:
            reason = f"config: {exc}" if isinstance(exc, ConfigError) else f"stopped: {exc}"
            if not as_json:
                raise click.ClickException(reason) from None
            logging.getLogger("salara").critical("%s", reason)  # every line JSON, this one too
            ctx.exit(1)


@main.group()
def show() -> None:
    """Show information, configuration or routes."""
