"""deploy/prometheus/alerts.yml: every metric it reads is one hf-provider exports, and promtool (where installed,
Debian's `prometheus` package) accepts the rules and passes their unit tests (alerts_test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hf_provider.observability.metrics import Metrics

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def _exported() -> set[str]:
    m = Metrics()
    m.enable_gpu()
    names = set()
    for family in m.registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES)
    return names


def test_every_metric_in_the_rules_is_exported() -> None:
    doc = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in doc["groups"] for r in g["rules"]]
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    used = {n for e in exprs for n in re.findall(r"\bhfp[_:][a-z0-9_:]+", e)}
    unknown = used - _exported() - recorded
    assert not unknown, f"alerts.yml reads metrics hf-provider does not export: {sorted(unknown)}"
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert {"HfpErrorSLOFastBurn", "HfpLatencySLOFastBurn", "HfpBreakerOpen", "HfpWorkerRestarts"} <= alerts


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_checks_and_unit_tests_pass() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        ["promtool", "test", "rules", str(RULES.with_name("alerts_test.yml"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
