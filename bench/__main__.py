"""Run every benchmark, print one table and append it to ``bench/RESULTS.md``.

From the repository root, with the test PBX running (``python -m testpbx start``)::

    python -m bench            # full sizes, a few minutes; appends to bench/RESULTS.md
    python -m bench --quick    # tiny sizes (smoke test); not recorded unless --results is given

Benchmarks (each module also runs alone, ``python -m bench.<name> --help``):
ingest (AMI parse, events/s), api (compat extension-state requests, closed
loop), connections (a new connection per request and keep-alive, beside a
bare ASGI app on the same uvicorn, with wrk), openloop (latency at fixed
offered rates, from each request's due time), webhooks (delivery from the
outbox), stores (the same delivery from the PostgreSQL store against the
SQLite store, on a throwaway cluster), routing (FastAGI decisions), memory
(RSS while ingesting). api,
connections, openloop and routing need the real Asterisk and are
skipped when AMI does not answer; a benchmark whose feature is not built
reports "not built yet"; one that fails reports its error, and the others
still run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import connections, openloop
from bench.ami_stream import stream_chunks
from bench.table import Row
from bench.table import ms as _ms
from bench.table import yes as _yes

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Appended by `python -m bench` (see `bench/__main__.py`); newest last. Every figure is measured beside\n"
    "its baseline in the same run. Notes under a table explain the gaps.\n"
)


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does."""

    ingest_events: int
    ingest_rounds: int
    """Rounds of (a) then (c) in the ingest benchmark (its row: the median round)."""
    api_seconds: float
    api_rounds: int
    """Rounds of salara then the bare app in the HTTP benchmarks (each row their median)."""
    webhook_events: int
    routing_calls: int
    memory_events: int


FULL = Sizes(
    ingest_events=1_000_000,
    ingest_rounds=3,
    api_seconds=10.0,
    api_rounds=3,
    webhook_events=20_000,
    routing_calls=2000,
    memory_events=1_000_000,
)
QUICK = Sizes(
    ingest_events=2000,
    ingest_rounds=1,
    api_seconds=1.0,
    api_rounds=1,
    webhook_events=200,
    routing_calls=20,
    memory_events=2000,
)


# -- the benchmarks, as rows -------------------------------------------------------------------------------------


def bench_ingest(sizes: Sizes, notes: list[str]) -> list[Row]:
    """(a) plain parse and (c) full ingest path in turn, (b) protocol layer, (d) the same with lifecycle events."""
    from bench.ingest import alternating, full_path, median_baseline, median_round, protocol_parse

    n = sizes.ingest_events
    rounds = alternating(n, sizes.ingest_rounds)
    base_rate = median_baseline(rounds)
    proto_events, proto_s = protocol_parse(stream_chunks(n))
    proto_rate = proto_events / proto_s
    middle = median_round(rounds)
    met = middle.ratio >= 0.5 and middle.full_rate >= 20_000 and all(r.same_events for r in rounds)
    rows = [
        Row(
            f"AMI ingest (b) protocol layer, {n:,} events",
            f"{proto_rate:,.0f} events/s",
            f"(a) plain parse {base_rate:,.0f} events/s",
            f"{proto_rate / base_rate:.2f}",
            "≥ 1.0 × (a)",
            _yes(proto_rate >= base_rate and proto_events == n),
        ),
        Row(
            f"AMI ingest (c) full path, {n:,} events",
            f"{middle.full_rate:,.0f} events/s",
            f"(a) plain parse {middle.baseline_rate:,.0f} events/s",
            f"{middle.ratio:.2f}",
            "≥ 0.5 × (a) and ≥ 20,000 events/s",
            _yes(met),
        ),
    ]
    notes.append(
        f"Ingest (c): every event mode on all calls; {middle.stored:,} CRM events stored in the outbox."
        f" (a) and (c) in turn, {len(rounds)} rounds, ratios "
        + ", ".join(f"{r.ratio:.2f}" for r in rounds)
        + " (the row: the median round); (b) and (d) against the median (a)."
    )
    events, stored, seconds = full_path(stream_chunks(n), lifecycle=True)
    rate = events / seconds
    # (c) keeps the settings the target was set for; (d) is there to be watched.
    rows.append(
        Row(
            f"AMI ingest (d) full path, lifecycle events on, {n:,} events",
            f"{rate:,.0f} events/s",
            f"(a) plain parse {base_rate:,.0f} events/s",
            f"{rate / base_rate:.2f}",
            "—",
            "—",
        )
    )
    notes.append(
        f"Ingest (d): the same with payload = extended and lifecycle = yes; {stored:,} events stored"
        " (the SPEC §2 events and the call lifecycle events)."
    )
    return rows


def bench_api(sizes: Sizes, notes: list[str]) -> list[Row]:
    """Issue item 2: compat extension-state requests, 50 clients and 1 client, against raw AMI."""
    from bench.api import run

    result = run(duration_s=sizes.api_seconds)
    raw, loaded, single = result.raw, result.loaded, result.single
    baseline = f"raw AMI p50 {_ms(raw.p50_s)}, p99 {_ms(raw.p99_s)}"
    rows = [
        Row(
            f"API extension state, {result.clients} clients, {sizes.api_seconds:g} s",
            f"{loaded.rate:,.0f} req/s",
            f"raw AMI {raw.rate:,.0f} round trips/s (1 session, sequential)",
            f"{result.ratio:.3f}",
            "≥ 1,500 req/s",
            _yes(loaded.rate >= 1500 and not loaded.errors),
        ),
    ]
    for label, lat in ((f"{result.clients} clients", loaded), ("1 client", single)):
        gap = lat.p50_s - raw.p50_s
        rows.append(
            Row(
                f"API p50/p99, {label}",
                f"p50 {_ms(lat.p50_s)}, p99 {_ms(lat.p99_s)}",
                baseline,
                f"p50 within {gap * 1e3:.2f} ms",
                "p50 within 2 ms of raw",
                _yes(gap <= 0.002),
            )
        )
    notes.append(
        f"API: salara used {result.salara_cpu:.0%} of a core under {result.clients} clients, the load generator "
        f"{loaded.client_cpu:.0%}. With {result.clients} clients in a closed loop, Little's law puts the p50 near "
        f"clients / rate = {result.clients / loaded.rate * 1e3:.1f} ms (queueing at salara's throughput); "
        f"the 1-client row is what salara adds to one request. Answer: {result.answer}"
    )
    return rows


def bench_webhooks(sizes: Sizes, notes: list[str]) -> list[Row]:
    """Issue item 3, from ``bench/webhooks.py`` if it is there: ``run(events)`` -> (baseline, salara, ...)."""
    try:
        from bench import webhooks
    except ImportError as exc:
        print(f"webhook delivery: not built yet ({exc})")
        return [Row("Webhook delivery", "not built yet", target="≥ 2,000 deliveries/s and ≥ 0.5 × baseline")]
    run = getattr(webhooks, "run", None)
    if not callable(run):
        print("webhook delivery: not built yet (bench/webhooks.py has no run())")
        return [Row("Webhook delivery", "not built yet", target="≥ 2,000 deliveries/s and ≥ 0.5 × baseline")]
    outcome = run(sizes.webhook_events)
    if inspect.iscoroutine(outcome):
        import uvloop  # the loop salara serve runs on

        outcome = uvloop.run(outcome)
    base, ours = outcome[0], outcome[1]
    ratio = ours.per_s / base.per_s
    rows = [
        Row(
            f"Webhook delivery, {ours.events:,} events",
            f"{ours.per_s:,.0f} deliveries/s",
            f"same client, no outbox {base.per_s:,.0f}/s",
            f"{ratio:.2f}",
            "≥ 2,000/s and ≥ 0.5 × baseline",
            _yes(ours.per_s >= 2000 and ratio >= 0.5),
        ),
        Row(
            "Webhook event-to-POST latency",
            f"p50 {ours.p50_ms:.2f} ms, p99 {ours.p99_ms:.2f} ms",
            f"p50 {base.p50_ms:.2f} ms, p99 {base.p99_ms:.2f} ms",
            f"p50 {ours.p50_ms / base.p50_ms:.2f}" if base.p50_ms else "—",
        ),
    ]
    if len(outcome) > 2:
        notes.append(f"Webhooks: outbox adds {outcome[2]:,.0f} events/s.")
    return rows


def bench_stores(sizes: Sizes, notes: list[str]) -> list[Row]:
    """Issue 20: webhook delivery from the PostgreSQL store against the SQLite store, in the same run."""
    import uvloop  # the loop salara serve runs on

    from bench.stores import run

    sqlite, postgres = uvloop.run(run(sizes.webhook_events))
    notes.append(
        f"Stores: adds {postgres.adds_per_s:,.0f} events/s on PostgreSQL, {sqlite.adds_per_s:,.0f} on SQLite"
        " (batches of 50; the PostgreSQL cluster local, fsync off)."
    )
    return [
        Row(
            f"Webhook delivery, PostgreSQL store, {postgres.events:,} events",
            f"{postgres.per_s:,.0f} deliveries/s",
            f"SQLite store {sqlite.per_s:,.0f}/s",
            f"{postgres.per_s / sqlite.per_s:.2f}",
        )  # no target: the figure says what a shared store costs, beside the file's
    ]


def bench_slow_crm(sizes: Sizes, notes: list[str]) -> list[Row]:
    """Delivery to a slow, a small-backlog and a recovering CRM, against the best fixed concurrency."""
    from bench.slow_crm import run

    results = run(quick=sizes.ingest_events < FULL.ingest_events)
    rows = []
    targets = {
        "slow": ("≥ 500 events/s with the defaults", lambda ours, best: ours.per_s >= 500),
        "backlog": ("≥ 0.9 × best fixed", lambda ours, best: ours.per_s >= 0.9 * best.per_s),
        "recovering": ("drains, no retry storm", lambda ours, best: ours.requests <= best.requests),
    }
    titles = {
        "slow": "CRM answering in 200 ms",
        "backlog": "CRM with a listen backlog of 5 (4 workers)",
        "recovering": "CRM failing (503) for 2.5 s",
    }
    for kind, (ours, best, _) in results.items():
        target, met = targets[kind]
        rows.append(
            Row(
                f"Delivery, {titles[kind]}, {ours.delivered:,} events",
                f"{ours.per_s:,.0f}/s, peak in flight {ours.worker_peak}, {ours.requests:,} requests",
                f"best fixed ({best.label}) {best.per_s:,.0f}/s, peak {best.worker_peak}, {best.requests:,} requests",
                f"{ours.per_s / best.per_s:.2f}" if best.per_s else "—",
                target,
                _yes(met(ours, best)),
            )
        )
    notes.append(
        "Slow CRMs: every event in the outbox at the start, spread over 200-300 calls (one request per call "
        "at a time); salara's defaults (adaptive, ceiling 256) against fixed concurrencies in the same run."
    )
    return rows


def bench_routing(sizes: Sizes, notes: list[str]) -> list[Row]:
    """Issue item 4: FastAGI routing decisions, time added over the CRM's own answer time."""
    from bench.routing import run

    result = run(calls=sizes.routing_calls, warmup=min(20, sizes.routing_calls))
    sources = ", ".join(f"{k} {v}" for k, v in sorted(result.sources.items()))
    notes.append(f"Routing: decisions by source: {sources}; connect-to-close p50 {_ms(result.total_p50_s)}.")
    return [
        Row(
            f"Routing added time, {result.calls:,} calls",
            f"p50 {_ms(result.added_p50_s)}, p99 {_ms(result.added_p99_s)}",
            f"CRM's own answer p50 {_ms(result.crm_p50_s)}",
            "—",
            "p50 ≤ 5 ms",
            _yes(result.added_p50_s <= 0.005),
        )
    ]


def bench_memory(sizes: Sizes, notes: list[str]) -> list[Row]:
    """Issue item 5: RSS while ingesting, each path in a fresh process (``python -m bench.memory --json``)."""
    from bench.memory import MemoryResult

    n = sizes.memory_events
    rows = []
    for path, label in (("protocol", "protocol layer"), ("full", "full ingest path")):
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--events", str(n), "--path", path, "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        *messages, last = out.strip().splitlines()
        for message in messages:
            print(message)
        figures = json.loads(last)
        if figures is None:
            rows.append(Row(f"Memory, {label}", "not built yet", target="≤ 80 MB; second half ≤ +5 %"))
            continue
        result = MemoryResult(**figures)
        print(result.line(f"memory, {label}"))
        rows += [
            Row(
                f"Memory peak RSS, {label}, {n:,} events",
                f"{result.peak_mb:.1f} MB",
                f"RSS at start {result.start_kib * 1024 / 1e6:.1f} MB",
                f"{result.peak_kib / result.start_kib:.2f}",
                "≤ 80 MB",
                _yes(result.peak_mb <= 80),
            ),
            Row(
                f"Memory second-half growth, {label}",
                f"{result.second_half_growth:+.1%} (highest RSS {result.second_half_max_kib * 1024 / 1e6:.1f} MB)",
                f"first half's highest RSS {result.first_half_max_kib * 1024 / 1e6:.1f} MB",
                f"{result.second_half_max_kib / result.first_half_max_kib:.2f}",
                "≤ +5 %",
                _yes(result.second_half_growth <= 0.05),
            ),
        ]
    return rows


Benchmark = Callable[[Sizes, list[str]], list[Row]]
BENCHMARKS: dict[str, tuple[Benchmark, bool]] = {
    "ingest": (bench_ingest, False),
    "api": (bench_api, True),
    "connections": (lambda sizes, notes: connections.rows(sizes.api_seconds, notes, sizes.api_rounds), True),
    "openloop": (lambda sizes, notes: openloop.rows(sizes.api_seconds / 2, notes, sizes.api_rounds), True),
    "webhooks": (bench_webhooks, False),
    "stores": (bench_stores, False),
    "slow_crm": (bench_slow_crm, False),
    "routing": (bench_routing, True),
    "memory": (bench_memory, False),
}
"""name -> (function, needs the real Asterisk)."""


# -- table and record --------------------------------------------------------------------------------------------

COLUMNS = ("benchmark", "figure", "baseline", "ratio", "target", "met?")


def render(rows: list[Row]) -> str:
    """The rows as a Markdown table, columns padded so it also reads well in a terminal."""
    cells = [list(COLUMNS)] + [[r.benchmark, r.figure, r.baseline, r.ratio, r.target, r.met] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def cpu_model() -> str:
    """The CPU model from ``/proc/cpuinfo`` (or the platform's processor string)."""
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(asterisk: str | None) -> dict[str, str]:
    """CPU model, cores, Python, Asterisk version, the git commit and the load average (others' work)."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "Python": platform.python_version(),
        "Asterisk": asterisk or "not reachable",
        "commit": commit,
        "load average at the end (1, 5 min)": "{:.2f}, {:.2f}".format(*os.getloadavg()[:2]),
    }


def record(path: Path, table: str, facts: dict[str, str], notes: list[str], label: str) -> None:
    """Append the table, with the date, ``facts`` and ``notes``, to the Markdown file at ``path``."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"\n## {when} — {label}\n\n" + "; ".join(f"{k}: {v}" for k, v in facts.items()) + "\n\n" + table + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    exists = path.exists()
    with path.open("a", encoding="utf-8") as out:
        if not exists:
            out.write(RESULTS_HEADER)
        out.write(text)


def main(argv: list[str] | None = None) -> list[Row]:
    """Command line; returns the rows (for tests)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test), not recorded by default")
    parser.add_argument("--results", type=Path, help=f"file to append to (default {RESULTS.relative_to(REPO)})")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--only", help=f"comma list of benchmarks to run (of {','.join(BENCHMARKS)})")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL

    from bench.api import asterisk_version

    asterisk = asterisk_version()
    rows: list[Row] = []
    notes: list[str] = []
    started = time.monotonic()
    for name in names:
        function, needs_asterisk = BENCHMARKS[name]
        print(f"== {name}", flush=True)
        if needs_asterisk and asterisk is None:
            print(f"{name}: skipped, Asterisk (AMI) not reachable; start it with python -m testpbx start")
            rows.append(Row(name, "skipped: Asterisk not reachable"))
            continue
        try:
            rows += function(sizes, notes)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"{name}: failed: {type(exc).__name__}: {exc}")
            rows.append(Row(name, f"error: {type(exc).__name__}: {str(exc)[:80]}"))
    table = render(rows)
    print(f"\n{table}\n\n(all benchmarks: {time.monotonic() - started:.0f} s)")
    for note in notes:
        print(f"- {note}")
    path = args.results or (None if args.quick or args.no_record else RESULTS)
    if path is not None and not args.no_record:
        facts = {"command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])}
        record(path, table, facts | machine_facts(asterisk), notes, "quick run" if args.quick else "full run")
        print(f"appended to {path}")
    return rows


if __name__ == "__main__":
    main()
