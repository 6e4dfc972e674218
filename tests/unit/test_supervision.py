"""Supervision: a long-lived part that raises or stops ends the service, named in the log, with a non-zero exit."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from salara.cli import main
from salara.events.resync import Resynchronizer
from salara.supervision import PartFailed, supervise


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_part_that_raises_stops_the_others_and_is_named(caplog: pytest.LogCaptureFixture) -> None:
    cancelled: list[str] = []

    async def watched() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            cancelled.append("watched")
            raise

    async def broken() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("disk on fire")

    with pytest.raises(PartFailed) as raised:
        await supervise({"watched": watched, "delivery": broken, "http": forever}, main="http")
    assert raised.value.part == "delivery"
    assert "RuntimeError: disk on fire" in str(raised.value)
    assert cancelled == ["watched"]
    assert any(r.levelno == logging.CRITICAL and "'delivery' failed" in r.getMessage() for r in caplog.records)


async def test_a_part_that_returns_early_is_a_failure_too() -> None:
    async def done() -> None:
        return None

    with pytest.raises(PartFailed, match="resync stopped unexpectedly"):
        await supervise({"resync": done, "http": forever}, main="http")


async def test_the_main_part_returning_is_a_clean_stop() -> None:
    async def http() -> None:
        await asyncio.sleep(0.01)

    await supervise({"ami": forever, "http": http}, main="http")  # returns: no PartFailed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_salara_serve_exits_non_zero_naming_the_part_that_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: Resynchronizer) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("resync broke")

    monkeypatch.setattr(Resynchronizer, "run", broken)
    conf = tmp_path / "salara.conf"
    conf.write_text(
        "[url]\n"
        f"rest_server = 127.0.0.1:{free_port()}\n"
        "[agi]\n"
        f"listen = 127.0.0.1:{free_port()}\n"
        "[ami]\n"
        "port = 1\n"  # nothing listens: the AMI part keeps retrying, it does not fail
        "[outbox]\n"
        f"path = {tmp_path / 'outbox.db'}\n"
    )
    conf.chmod(0o600)
    environ = {"SALARA_CONFIG": str(conf)}
    result = CliRunner().invoke(main, ["serve"], env=environ)
    assert result.exit_code == 1, result.output
    assert "stopped: resync failed: RuntimeError: resync broke" in result.output
    assert any("salara part 'resync' failed" in r.getMessage() for r in caplog.records)
