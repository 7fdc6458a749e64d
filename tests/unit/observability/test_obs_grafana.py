"""deploy/grafana/hfp-dashboard.json refers only to metrics the Observer exports, in valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hf_provider.observability.observer import Observer

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "hfp-dashboard.json"


def exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_every_metric_in_the_dashboard_is_exported() -> None:
    obs = Observer(home=None)
    obs.metrics.enable_gpu()  # GPU gauges exist only with a GPU; register them to check their names
    obs.model_loaded("m", "r", 1.0, 10)
    obs.model_unloaded("m", "idle")
    obs.model_loaded("m", "r", 1.0, 10)  # gauges dropped at unload come back with new values
    obs.request_done("m", "t", "r", "error", 0.01, 1, 1, "X")
    obs.batch_done("m", "t", 1, 1, 0.001, 0.001, 0.001, 0.001, 10)
    obs.queue_depth("m", 1)
    obs.in_flight_source = lambda: {"m": 1}  # read from the schedulers at scrape time
    obs.metrics.model_accounted_bytes.labels("m").set(1)
    for g in (obs.metrics.gpu_memory_used_bytes, obs.metrics.gpu_utilization_percent):
        assert g is not None
        g.labels("0").set(1)
    text = obs.render_metrics()[0].decode()
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    used = {name for e in exprs() for name in re.findall(r"\bhfp_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    obs.close()


NO_PROMTOOL = "promtool (Debian package prometheus) not installed"


@pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    lines = ["groups:", "- name: grafana", "  rules:"]
    for i, e in enumerate(exprs()):
        e = e.replace("$__rate_interval", "1m").replace("$model", ".*")
        lines += [f"  - record: grafana_query_{i}", f"    expr: {json.dumps(e)}"]
    rules = tmp_path / "rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
