"""deploy/: promtool accepts the Prometheus config and alert rules and passes their unit tests,
and the alerts and the Grafana dashboard only use metrics the code defines."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from core import exposition
from predictions import worker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
ALERT_RULES = [
    rule for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    for rule in group["rules"]
]  # fmt: skip
METRIC_NAME = re.compile(r"\b(?:modelport|process)_[a-z_]+")
# What Grafana replaces before sending a query to Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$version": ".*"}
PANEL_QUERIES = [
    (panel["title"], target["expr"]) for panel in DASHBOARD["panels"] for target in panel["targets"]
]
VARIABLE_QUERIES = [
    (variable["name"], variable["definition"])
    for variable in DASHBOARD["templating"]["list"]
    if variable["type"] == "query"
]
WORKER_ONLY = {"modelport_rq_queue_depth", "modelport_rq_workers", "modelport_jobs"}


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: scripts/setup-test installs it (Debian package prometheus), "
            "or run `apt-get install --no-install-recommends prometheus`."
        )
    return path


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
    ids=["config", "rules", "rule-tests"],
)
def test_promtool_accepts_deploy_files(promtool, args):
    *command, filename = args
    run_promtool(promtool, *command, str(DEPLOY / filename))


def test_dashboard_queries_parse(promtool, tmp_path):
    queries = []
    for _, query in PANEL_QUERIES:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        queries.append(query)
    # JSON is YAML: each query becomes a recording rule, which promtool parses.
    rules = [{"record": f"dashboard:query{n}", "expr": q} for n, q in enumerate(queries)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", str(path))


def test_every_panel_has_a_title_and_a_query():
    assert DASHBOARD["panels"]
    for panel in DASHBOARD["panels"]:
        assert panel.get("title"), panel
        assert panel.get("targets") and all(t.get("expr") for t in panel["targets"]), panel


def test_panel_titles_cover_traffic_latency_errors_rows_and_jobs():
    titles = " ".join(panel["title"].lower() for panel in DASHBOARD["panels"])
    for words in [("traffic", "requests"), ("latency",), ("error",), ("rows",), ("jobs",)]:
        assert any(word in titles for word in words), f"no panel title mentions {words}"


def test_dashboard_has_datasource_model_and_version_variables():
    variables = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["model"]["definition"].startswith("label_values(")
    assert variables["version"]["definition"].startswith("label_values(")
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def series_names(families) -> set[str]:
    """The series names a family exposes (counters drop `_total` from the family name)."""
    names = set()
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


@pytest.fixture
def defined_metrics() -> set[str]:
    """Every series name the web and worker endpoints serve, from the collectors themselves.

    QueueCollector reads Redis (REDIS_URL) and the database, and closes its connection (it runs
    in the metrics server's threads): the tests using it are transactional to survive that.
    """
    queue_families = series_names(worker.QueueCollector().collect())
    assert queue_families == WORKER_ONLY, "QueueCollector left families out: is Redis up?"
    process = exposition.ProcessTreeCollector(os.getpid, ("worker", "horse"))
    return series_names(REGISTRY.collect()) | series_names(process.collect()) | queue_families


def unknown_metrics(queries: list[tuple[str, str]], defined: set[str]) -> list:
    """(where, names) for each query that uses a metric name outside `defined`."""
    found = [(where, set(METRIC_NAME.findall(query)) - defined) for where, query in queries]
    return [(where, sorted(names)) for where, names in found if names]


@pytest.mark.django_db(transaction=True)
def test_dashboard_uses_only_defined_metrics(defined_metrics):
    unknown = unknown_metrics(PANEL_QUERIES + VARIABLE_QUERIES, defined_metrics)
    assert not unknown, f"metrics that the collectors do not define: {unknown}"


@pytest.mark.django_db(transaction=True)
def test_alerts_use_only_defined_metrics(defined_metrics):
    queries = [(rule["alert"], rule["expr"]) for rule in ALERT_RULES]
    unknown = unknown_metrics(queries, defined_metrics)
    assert not unknown, f"metrics that the collectors do not define: {unknown}"


def apt_packages(script: str, variable: str) -> set[str]:
    """The Debian packages a set-up script may install: what it adds to its package list."""
    text = (ROOT / "scripts" / script).read_text()
    return {
        name for names in re.findall(rf"{variable}\+=\(([^)]*)\)", text) for name in names.split()
    }


def test_running_installs_no_browser_and_no_prometheus_and_no_recommends():
    assert apt_packages("setup", "packages") == {
        "redis-server",
        "nginx",
        "python3.11",
        "python3.11-venv",
    }
    assert apt_packages("setup-test", "test_packages") == {"chromium", "prometheus"}
    installs = re.findall(r"apt-get install[^\n]*", (ROOT / "scripts" / "setup").read_text())
    assert installs and all("--no-install-recommends" in line for line in installs)
