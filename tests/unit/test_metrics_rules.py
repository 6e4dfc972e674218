"""The Grafana dashboard and the Prometheus alert rules use only metrics salara exports.

Their PromQL expressions are read (strings, label matchers, ranges and label
lists set aside; what is left that is not a function or a keyword is a
metric name), and every name must be on ``/metrics`` of an app built as
``salara serve`` builds it, every part present. ``promtool check rules``
runs on the rules and ``promtool check metrics`` on that scrape, with the
promtool on PATH or in .venv/bin (``docs/prometheus/promtool.sh`` puts it
there from Debian's package; in CI, ``CI=true``, the test runs it first);
elsewhere without promtool that test is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from salara import config as config_module
from salara.agi.server import AGIServer
from salara.api.app import create_app
from salara.app import Services

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "docs" / "prometheus" / "salara-alerts.yml"
DASHBOARD = REPO / "docs" / "grafana" / "salara.json"
PROMTOOL_SCRIPT = REPO / "docs" / "prometheus" / "promtool.sh"
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"})
KEYWORDS |= {"offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="b c",y=~"$i"}[5m])) / on (i) b_total > 0.95 and c'))
    ['a_bucket', 'b_total', 'c']
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group().lower() in KEYWORDS:
            continue  # a function, an aggregation, a keyword
        names.add(match.group())
    return names


def test_metric_names_are_read_off_promql() -> None:
    expr = 'sum by (le) (rate(a_bucket{x="b c",y=~"$i"}[5m])) / on (i) b_total > 0.95 and c offset 1h'
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert metric_names("histogram_quantile(0.95, sum by (instance, le) (rate(d_bucket[5m]))) > 1e3") == {"d_bucket"}
    assert metric_names("absent(salara_build_info)") == {"salara_build_info"}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        values = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
        if values:
            found.append(values.group(1))  # the metric whose label values are listed
    return found


def promtool() -> str | None:
    local = Path(sys.executable).with_name("promtool")
    return shutil.which("promtool") or (str(local) if local.exists() else None)


def require_promtool() -> str:
    """promtool, which scripts/setup.sh installs (docs/prometheus/promtool.sh): missing, the test fails."""
    tool = promtool()
    assert tool is not None, f"no promtool: run {PROMTOOL_SCRIPT.relative_to(REPO)} (scripts/setup.sh does)"
    return tool


@pytest.fixture
async def scrape(tmp_path: Path) -> AsyncIterator[str]:
    """``GET /metrics`` of an app over every part, as ``salara serve`` wires them (AMI never connects)."""
    environ = {
        "SALARA_URL_DEST_URL_EVENT": "http://127.0.0.1:9/events",
        "SALARA_URL_DEST_URL": "http://127.0.0.1:9/lookup",
        "SALARA_OUTBOX_PATH": str(tmp_path / "outbox.db"),
    }
    services = Services.build(config_module.load(None, environ=environ))
    services.metrics.sources.agi = AGIServer(services.router.handle, "127.0.0.1", 0)
    app = create_app(services.control, hub=services.hub, metrics=services.metrics)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://salara") as http:
            response = await http.get("/metrics")
            assert response.status_code == 200
            yield response.text
    finally:
        await services.close()


def exported(scrape: str) -> set[str]:
    """Every series name the scrape has or declares (a histogram's _bucket, _count, _sum; a counter's _total)."""
    names = set()
    for family in text_string_to_metric_families(scrape):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_the_alert_rules_cover_what_an_operator_is_paged_for() -> None:
    found = rules()
    assert {"SalaraAmiDown", "SalaraOutboxGrowing", "SalaraEventsLost", "SalaraCrmLookupsFailing"} <= {
        rule["alert"] for rule in found
    }
    for rule in found:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_rules_and_the_dashboard_use_only_metrics_on_the_scrape(scrape: str) -> None:
    have = exported(scrape)
    used = {name: where for where, expr in [*((r["alert"], r["expr"]) for r in rules())] for name in metric_names(expr)}
    used |= {name: "dashboard" for expr in dashboard_expressions() for name in metric_names(expr)}
    assert len(used) > 30
    missing = {name: where for name, where in used.items() if name not in have}
    assert missing == {}
    for name in ("salara_build_info", "process_cpu_seconds_total", "salara_outbox_oldest_pending_age_seconds"):
        assert name in have, name
    for name in ("salara_webhook_delivery_seconds_bucket", "salara_crm_lookup_seconds_bucket"):
        assert name in {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}, name
    for name in ("salara_crm_breaker_open", "salara_fastagi_sessions"):
        assert name in used and name in have, name


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_promtool_checks_the_rules_and_the_scrape(scrape: str) -> None:
    tool = require_promtool()
    rules_check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert rules_check.returncode == 0, rules_check.stdout + rules_check.stderr
    metrics_check = subprocess.run([tool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60)
    assert metrics_check.returncode == 0, metrics_check.stdout + metrics_check.stderr
