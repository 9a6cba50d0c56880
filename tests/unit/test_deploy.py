"""What ships in deploy/ agrees with the code: every metric a rule or dashboard panel uses is
one the services export, and the compose services' configuration loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.shared.config import load_config
from newswatch.shared.durations import parse_duration
from newswatch.supervisor import KILL_MARGIN

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_METRIC = re.compile(r"\b(newswatch_[a-z0-9_]+)\b")
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}


def exported() -> set[str]:
    """Every series name the three services can expose (labelled metrics included before use)."""
    names: set[str] = set()
    for metrics in (FetcherMetrics, MatcherMetrics, NotifierMetrics):
        registry = CollectorRegistry()
        metrics(registry)
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [target["expr"] for target in panel["targets"]]
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "newswatch.rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_metric_used_in_promql_is_exported(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in _METRIC.findall(expr)}
    assert used and not used - exported(), f"not exported by any service: {sorted(used - exported())}"


def test_the_dashboard_covers_the_pipeline() -> None:
    titles = " | ".join(
        p["title"]
        for p in json.loads((DEPLOY / "grafana/dashboards/newswatch-overview.json").read_text())["panels"]
    )
    for needed in (
        "Feed polls",
        "Items per second",
        "Matches per second",
        "Alerts per second",
        "latency",
        "lag",
        "Dead letters",
    ):
        assert needed in titles


def compose_services() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services: dict[str, Any] = document["services"]
    return services


def _substituted(value: str) -> str:
    """Compose's variable substitution with an empty environment: ``${X:-default}`` is the
    default, ``${X:?message}`` (a secret the operator writes in .env) a stand-in value."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", value)


@pytest.mark.parametrize("config_file", ["newswatch.yaml", "newswatch-demo.yaml"])
@pytest.mark.parametrize("service", ["fetcher", "matcher", "notifier"])
def test_compose_services_configuration_loads(service: str, config_file: str) -> None:
    environment = {
        key: _substituted(str(value)) for key, value in compose_services()[service]["environment"].items()
    }
    assert environment.pop("NEWSWATCH_CONFIG") == "/etc/newswatch/newswatch.yaml"
    environment.pop("NEWSWATCH_LOG_LEVEL")
    config = load_config(DEPLOY / "compose" / config_file, env=environment)
    assert config.kafka.bootstrap == "kafka:9092" and config.database_url is not None
    assert config.topics[0].id == "nk-ukraine"


@pytest.mark.parametrize("overlay", ["base", "overlays/prod"])
def test_kubernetes_environment_and_config_load(overlay: str) -> None:
    """The env literals of the base (and the prod overlay's merge) are settings the services know."""
    environment: dict[str, str] = {}
    for layer in ("base", overlay) if overlay != "base" else ("base",):
        kustomization = yaml.safe_load((DEPLOY / "k8s" / layer / "kustomization.yaml").read_text())
        for generator in kustomization.get("configMapGenerator", []):
            if generator["name"] == "newswatch-env":
                environment.update(line.split("=", 1) for line in generator["literals"])
    environment.pop("NEWSWATCH_LOG_LEVEL")
    environment["NEWSWATCH_DATABASE_URL"] = "postgresql://u@db/newswatch"  # from the Secret
    config = load_config(DEPLOY / "k8s" / "base" / "newswatch.yaml", env=environment)
    assert config.http.host == "0.0.0.0" and config.kafka.bootstrap
    assert config.kafka.partitions == (6 if overlay == "overlays/prod" else 3)


def test_platform_grace_periods_exceed_the_services_stop_grace() -> None:
    """The platform's SIGKILL must come after a service's own hard exit (stop_grace), or a
    stuck service dies without logging where it was stuck."""
    for name in ("fetcher", "matcher", "notifier"):
        service = compose_services()[name]
        grace = parse_duration(str(service["environment"]["NEWSWATCH_STOP_GRACE"]))
        assert parse_duration(str(service["stop_grace_period"])) >= grace + KILL_MARGIN, name
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "base" / "kustomization.yaml").read_text())
    literals = next(g for g in kustomization["configMapGenerator"] if g["name"] == "newswatch-env")[
        "literals"
    ]
    grace = parse_duration(dict(line.split("=", 1) for line in literals)["NEWSWATCH_STOP_GRACE"])
    for name in ("fetcher", "matcher", "notifier"):
        deployment = next(
            doc
            for doc in yaml.safe_load_all((DEPLOY / "k8s" / "base" / f"{name}.yaml").read_text())
            if doc and doc.get("kind") in ("Deployment", "StatefulSet")
        )
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + KILL_MARGIN


@pytest.mark.parametrize("overlay", ["base", "overlays/prod"])
def test_each_fetcher_pod_knows_its_index_and_the_replica_count(overlay: str) -> None:
    """The fetcher StatefulSet gives each pod its ordinal as fetcher.replica, and
    fetcher.replicas equals the StatefulSet's replicas (else feeds go unpolled or twice)."""
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "base" / "fetcher.yaml").read_text()))
    (statefulset,) = [d for d in docs if d and d["kind"] == "StatefulSet"]
    env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NEWSWATCH_FETCHER_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    replicas, count = statefulset["spec"]["replicas"], env["NEWSWATCH_FETCHER_REPLICAS"]["value"]
    if overlay != "base":
        kustomization = yaml.safe_load((DEPLOY / "k8s" / overlay / "kustomization.yaml").read_text())
        replicas = next(r["count"] for r in kustomization["replicas"] if r["name"] == "newswatch-fetcher")
        patch = next(p for p in kustomization["patches"] if p["target"].get("name") == "newswatch-fetcher")
        (operation,) = yaml.safe_load(patch["patch"])
        names = list(env)
        assert (
            operation["path"]
            == f"/spec/template/spec/containers/0/env/{names.index('NEWSWATCH_FETCHER_REPLICAS')}/value"
        )
        count = operation["value"]
    assert int(count) == replicas
