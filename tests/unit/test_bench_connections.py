"""Smoke tests of the HTTP benchmarks' parts that need no Asterisk: the bare app, wrk, the open-loop generator.

They assert that well-formed figures come out, never on speed.
"""

from __future__ import annotations

import math

from bench import bare, connections, openloop

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:5099/
  2 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   808.12us    1.02ms  22.49ms   94.38%
    Req/Sec    12.66k     1.50k   14.30k    80.00%
  Latency Distribution
     50%  612.00us
     75%  790.00us
     90%    1.07ms
     99%    2.32ms
  25189 requests in 1.00s, 3.89MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  25137.10
Transfer/sec:      3.88MB
"""


def test_wrk_output_is_read() -> None:
    count, seconds, p50, p99, errors = connections.parse_wrk(WRK_OUTPUT)
    assert (count, seconds, errors) == (25189, 1.0, 12)
    assert math.isclose(p50, 612e-6) and math.isclose(p99, 2.32e-3)


def test_the_bare_app_answers_the_compat_json() -> None:
    assert bare.ANSWER == b'{"result":0,"text":"Idle"}'
    with connections.BareServer() as server:
        single = connections.one_client(server.port, 0.2)
        keep = connections.wrk(server.port, server.pid, clients=2, threads=1, duration_s=1, close=False)
        close = connections.wrk(server.port, server.pid, clients=2, threads=1, duration_s=1, close=True)
    assert single.count > 0 and single.errors == 0 and 0 < single.p50_s <= single.p99_s
    for load in (keep, close):
        assert load.latencies.count > 0 and load.latencies.errors == 0
        assert 0 < load.latencies.p50_s <= load.latencies.p99_s
        assert load.server_cpu > 0 and load.generator_cpu > 0 and load.cpu_per_request_s > 0
        assert load.command.startswith("wrk -t1 -c2 -d1s --latency")
    assert "'Connection: close'" in close.command and "Connection" not in keep.command


def test_open_loop_answers_every_request_it_offers() -> None:
    with connections.BareServer() as server:
        figures = openloop.open_loop(server.port, 200, 0.5, connections=4)
    assert figures.sent == figures.answered == 100 and figures.errors == 0
    assert 0 < figures.p50_s <= figures.p99_s <= figures.p999_s <= figures.max_s
    assert figures.achieved > 0 and figures.generator_cpu > 0 and figures.send_late_p99_s >= 0
    assert "200/s offered" in figures.line("bare")


def test_poisson_schedule_keeps_the_rate() -> None:
    times = openloop._schedule(1000.0, 5000, 0.0, poisson=True)
    assert times == sorted(times) and 4.5 < times[-1] < 5.5
    assert openloop._schedule(100.0, 3, 1.0, poisson=False) == [1.0, 1.01, 1.02]
