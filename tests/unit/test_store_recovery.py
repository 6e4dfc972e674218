"""A damaged outbox file at start: set aside (kept, named with the time), a fresh one started, said loudly."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path

import pytest

from salara.metrics import Metrics, Sources
from salara.store import schema
from salara.store.sqlite import Outbox

GARBAGE = b"this is not an SQLite file, it never was\n" * 200
ASIDE = re.compile(r"outbox\.db\.corrupt-\d{8}T\d{6}Z")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


def asides(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-"))


def test_a_file_that_is_not_a_database_is_set_aside_and_a_fresh_outbox_started(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path.write_bytes(GARBAGE)
    (path.parent / "outbox.db-wal").write_bytes(b"old wal")
    (path.parent / "outbox.db-shm").write_bytes(b"old shm")
    with caplog.at_level(logging.ERROR, logger="salara.store"), Outbox(path, max_rows=100) as outbox:
        assert outbox.recovered_from is not None
        aside = Path(outbox.recovered_from)
        assert aside.parent == path.parent and ASIDE.fullmatch(aside.name), aside
        assert aside.read_bytes() == GARBAGE
        assert Path(f"{aside}-wal").read_bytes() == b"old wal"
        assert Path(f"{aside}-shm").exists()  # the shared-memory index: SQLite rebuilds it anyway
        # The fresh outbox works.
        (event_id,) = outbox.add([("A", b'{"event":"Hangup"}')])
        assert [event.id for event in outbox.claim(10)] == [event_id]
    assert (path.stat().st_mode & 0o777) == 0o600
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(path) in errors[0].getMessage() and str(aside) in errors[0].getMessage()
    # Opened again: a healthy file with the fresh outbox's event, nothing more set aside.
    with Outbox(path, max_rows=100) as outbox:
        assert outbox.recovered_from is None
        assert [event.id for event in outbox.list_events()] == [event_id]
    assert asides(path) == [aside, Path(f"{aside}-shm"), Path(f"{aside}-wal")]


def test_a_file_with_a_damaged_schema_page_is_set_aside(path: Path) -> None:
    with Outbox(path, max_rows=100) as outbox:
        outbox.add([("A", b"{}")])
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # page 1 after the header: the schema's b-tree
    path.write_bytes(bytes(data))
    with Outbox(path, max_rows=100) as outbox:
        assert outbox.recovered_from is not None
        assert Path(outbox.recovered_from).read_bytes() == bytes(data)
        assert outbox.depth() == 0


def test_two_recoveries_in_the_same_second_keep_both_files(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_796_120_100.0)  # 2026-12-01T10:15:00Z
    path.write_bytes(b"first" * 100)
    with Outbox(path, max_rows=100) as outbox:
        first = outbox.recovered_from
    assert first is not None and first.endswith("outbox.db.corrupt-20261201T101500Z")
    path.write_bytes(b"second" * 100)
    with Outbox(path, max_rows=100) as outbox:
        second = outbox.recovered_from
    assert second is not None and second != first
    assert Path(first).read_bytes() == b"first" * 100
    assert Path(second).read_bytes() == b"second" * 100


@pytest.mark.parametrize("options", [{"recover": False}, {"readonly": True}], ids=["no-recover", "readonly"])
def test_the_command_line_never_moves_the_services_file(path: Path, options: dict[str, bool]) -> None:
    path.write_bytes(GARBAGE)
    with pytest.raises(sqlite3.DatabaseError):
        Outbox(path, max_rows=100, **options)
    assert path.read_bytes() == GARBAGE and asides(path) == []


def test_a_newer_schema_is_refused_not_set_aside(path: Path) -> None:
    with Outbox(path, max_rows=100):
        pass
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        Outbox(path, max_rows=100)
    assert asides(path) == []


def test_a_healthy_file_is_not_recovered_and_the_metric_counts_recoveries(path: Path) -> None:
    with Outbox(path, max_rows=100) as outbox:
        assert outbox.recovered_from is None
        assert "salara_outbox_recovered_total 0.0" in Metrics(Sources(outbox=outbox)).render().decode()
    path.write_bytes(GARBAGE)
    with Outbox(path, max_rows=100) as outbox:
        assert "salara_outbox_recovered_total 1.0" in Metrics(Sources(outbox=outbox)).render().decode()


@pytest.mark.parametrize("command", [["events", "list"], ["events", "retry"]])
def test_the_events_commands_say_the_file_is_damaged_and_leave_it(path: Path, command: list[str]) -> None:
    from click.testing import CliRunner

    from salara.cli import main

    path.write_bytes(GARBAGE)
    conf = path.parent / "salara.conf"
    conf.write_text(f"[outbox]\npath={path}\nmax_rows=1000\n")
    conf.chmod(0o600)
    result = CliRunner().invoke(main, ["-c", str(conf), *command])
    assert result.exit_code == 1, result.output
    assert f"cannot open the outbox {path}: file is not a database" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert path.read_bytes() == GARBAGE and asides(path) == []
