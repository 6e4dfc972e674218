"""Smoke tests of the benchmark suite (bench/) that need no Asterisk: figures are produced, never speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import memory
from bench.__main__ import Row, machine_facts, main, record, render
from bench.ami_stream import build_stream, chunks

EVENTS = 2000


@pytest.mark.parametrize("path", sorted(memory.PATHS))
def test_memory_samples_rss(path: str) -> None:
    result = memory.PATHS[path](chunks(build_stream(EVENTS)), EVENTS)
    assert result is not None, f"the {path} ingest path is built"
    assert result.events == EVENTS
    assert result.start_kib > 0 and result.half_kib > 0 and result.end_kib > 0
    assert result.peak_kib >= max(result.start_kib, result.half_kib, result.end_kib)
    assert result.peak_mb > 0
    assert isinstance(result.second_half_growth, float)
    assert "second half" in result.line(path)


def test_memory_command_line_ends_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    memory.main(["--events", str(EVENTS), "--path", "full", "--json"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["events"] == EVENTS and figures["peak_kib"] > 0


def test_table_and_results_file(tmp_path: Path) -> None:
    rows = [
        Row("a bench", "1,000 events/s", "base 500 events/s", "2.00", "≥ 1.0 × base", "yes"),
        Row("b", "not built yet"),
    ]
    table = render(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark") and "met?" in lines[0]
    assert len(lines) == 2 + len(rows)
    assert len({len(line) for line in lines}) == 1  # padded columns
    facts = machine_facts("22.0.0")
    assert facts["cores"] and facts["Python"] and facts["CPU"] and facts["Asterisk"] == "22.0.0"
    path = tmp_path / "RESULTS.md"
    record(path, table, facts, ["a note"], "test run")
    record(path, table, facts, [], "test run")
    text = path.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("# Benchmark results") == 1 and text.count("— test run") == 2
    assert "1,000 events/s" in text and "- a note" in text and "Python: " in text


def test_quick_run_of_ingest_and_memory_records_figures(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    rows = main(["--quick", "--only", "ingest,memory", "--results", str(path)])
    figures = {row.benchmark.split(",")[0]: row for row in rows}
    assert figures["AMI ingest (b) protocol layer"].figure.endswith("events/s")
    assert figures["AMI ingest (c) full path"].figure.endswith("events/s")
    assert figures["AMI ingest (d) full path"].figure.endswith("events/s")
    assert figures["AMI ingest (c) full path"].target.startswith("≥ 0.5 × (a)")
    peaks = [row for row in rows if row.benchmark.startswith("Memory peak RSS")]
    growths = [row for row in rows if row.benchmark.startswith("Memory second-half growth")]
    assert len(peaks) == len(growths) == 2  # protocol layer and full path
    assert all(row.figure.endswith("MB") for row in peaks)
    assert all(row.figure.split(" ")[0].endswith("%") for row in growths)
    assert not any(row.figure.startswith("error") for row in rows)
    text = path.read_text()
    assert "quick run" in text and "AMI ingest (b) protocol layer" in text
