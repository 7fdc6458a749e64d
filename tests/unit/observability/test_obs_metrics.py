"""Prometheus output for a known sequence of hook calls, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hf_provider.observability import queries
from hf_provider.observability.metrics import LATENCY_BUCKETS
from hf_provider.observability.observer import Observer

OK_LATENCIES = [0.0004, 0.002, 0.02, 0.3, 3.0]


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict[str, list], name: str, **labels: str) -> float:
    matches = [s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, found.get(name))
    return matches[0]


@pytest.fixture
def fed() -> Observer:
    obs = Observer(home=None, clock=lambda: 1_700_000_000.0)
    for lat in OK_LATENCIES:
        obs.request_done("a", "embed", "r1", "ok", lat, items=2, tokens=7)
    obs.request_done("a", "embed", "r1", "error", 0.05, items=1, tokens=0, error_type="OutOfMemory")
    obs.request_done("a", "embed", "r1", "error", 0.06, items=1, tokens=0, error_type="DeadlineExceeded")
    obs.request_done("a", "embed", "r1", "rejected", 0.0001, items=1, tokens=0, error_type="QueueFull")
    obs.request_done("b", "generate", None, "ok", 0.1, items=1, tokens=33)
    obs.batch_done("a", "embed", 4, 28, 0.001, 0.002, 0.01, 0.0005, peak_bytes=5000)
    obs.batch_done("a", "embed", 1, 7, 0.001, 0.002, 0.01, 0.0005, peak_bytes=3000)
    obs.in_flight_source = lambda: {"a": 2}  # the schedulers' own counts, the one source of truth
    obs.queue_depth("a", 5)
    obs.model_loaded("a", "r1", 1.5, 1234)
    obs.model_loaded("b", None, 0.3, 99)
    obs.model_unloaded("b", "evicted")
    yield obs
    obs.close()


def test_counts_histograms_and_error_labels(fed: Observer) -> None:
    body, content_type = fed.render_metrics()
    assert content_type.startswith("text/plain")
    found = samples(body.decode())
    req = "hfp_requests_total"
    assert value(found, req, model="a", task="embed", revision="r1", outcome="ok") == 5
    assert value(found, req, model="a", task="embed", revision="r1", outcome="error") == 2
    assert value(found, req, model="a", task="embed", revision="r1", outcome="rejected") == 1
    assert value(found, req, model="b", task="generate", revision="", outcome="ok") == 1
    # Latency histogram: ok and error requests, rejections excluded.
    lat = "hfp_request_latency_seconds"
    observed = [*OK_LATENCIES, 0.05, 0.06]
    for le in LATENCY_BUCKETS:
        want = sum(1 for v in observed if v <= le)
        assert value(found, f"{lat}_bucket", model="a", task="embed", le=repr(float(le))) == want, le
    assert value(found, f"{lat}_bucket", model="a", task="embed", le="+Inf") == 7
    assert value(found, f"{lat}_count", model="a", task="embed") == 7
    assert value(found, f"{lat}_sum", model="a", task="embed") == pytest.approx(sum(observed))
    # Errors by type.
    assert value(found, "hfp_errors_total", model="a", task="embed", type="OutOfMemory") == 1
    assert value(found, "hfp_errors_total", model="a", task="embed", type="DeadlineExceeded") == 1
    assert value(found, "hfp_errors_total", model="a", task="embed", type="QueueFull") == 1
    assert not [s for s in found["hfp_errors_total"] if s.labels["model"] == "b"]
    # Items and tokens.
    assert value(found, "hfp_items_total", model="a", task="embed") == 5 * 2 + 3
    assert value(found, "hfp_tokens_total", model="a", task="embed") == 35
    assert value(found, "hfp_tokens_total", model="b", task="generate") == 33
    # Batches and stages.
    assert value(found, "hfp_batch_size_count", model="a", task="embed") == 2
    assert value(found, "hfp_batch_size_sum", model="a", task="embed") == 5
    for stage in ("queue", "preprocess", "forward", "postprocess"):
        assert value(found, "hfp_stage_seconds_count", model="a", stage=stage) == 2
    assert value(found, "hfp_queue_wait_seconds_count", model="a") == 2
    assert value(found, "hfp_model_peak_working_bytes", model="a") == 5000
    # Gauges and lifecycle.
    assert value(found, "hfp_in_flight_requests", model="a") == 2
    assert value(found, "hfp_queue_depth", model="a") == 5
    assert value(found, "hfp_model_weight_bytes", model="a") == 1234
    assert value(found, "hfp_model_loads_total", model="a", revision="r1") == 1
    assert value(found, "hfp_model_loads_total", model="b", revision="") == 1
    assert value(found, "hfp_model_evictions_total", model="b", reason="evicted") == 1
    assert value(found, "hfp_model_load_seconds_count", model="a") == 1
    # An unloaded model's gauges are gone; its counters stay.
    assert not [s for s in found.get("hfp_model_weight_bytes", []) if s.labels["model"] == "b"]
    assert value(found, "hfp_model_info", model="a", revision="r1") == 1
    assert not [s for s in found.get("hfp_model_info", []) if s.labels["model"] == "b"]


def test_process_gauges_after_a_sample(fed: Observer) -> None:
    fed.sample()
    found = samples(fed.render_metrics()[0].decode())
    assert value(found, "hfp_process_resident_bytes") > 0
    assert value(found, "hfp_system_memory_total_bytes") > 0
    assert "hfp_process_cpu_percent" in found


def test_every_metric_is_hfp_prefixed_and_registries_are_separate(fed: Observer) -> None:
    names = {fam.name for fam in text_string_to_metric_families(fed.render_metrics()[0].decode())}
    assert names and all(n.startswith("hfp_") for n in names)
    other = Observer(home=None)
    assert b'model="a"' not in other.render_metrics()[0]
    other.close()


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_accepts_the_exposition(fed: Observer) -> None:
    fed.sample()
    body = fed.render_metrics()[0]
    proc = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    # Exit 0: parsed; lint findings (naming advice) are printed but only parse errors fail.
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_hooks_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    obs = Observer(home=None)
    obs.request_done("a", "embed", "r", "ok", "not a number", 1, 1)  # type: ignore[arg-type]
    obs.batch_done("a", "embed", 1, 1, None, 0, 0, 0)  # type: ignore[arg-type]
    obs.tokens_generated("a", "t", "x")  # type: ignore[arg-type]
    obs.queue_depth("a", object())  # type: ignore[arg-type]
    obs.model_loaded("a", None, "slow", 1)  # type: ignore[arg-type]
    obs.request_done("a", "embed", "r", "ok", 0.01, 1, 1)
    assert queries.stats(obs, "a", None, 60)["requests"] >= 1
    assert "observability hook" in caplog.text
    obs.close()


def test_disabled_observer_does_nothing() -> None:
    obs = Observer(home=None, metrics_enabled=False)
    obs.start()
    obs.request_done("a", "embed", "r", "ok", 0.01, 1, 1)
    obs.batch_done("a", "embed", 1, 1, 0.001, 0.001, 0.001, 0.001)
    assert b'model="a"' not in obs.render_metrics()[0]
    assert queries.stats(obs, None, None)["requests"] == 0
    obs.close()


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="rollup_retention_s"):
        Observer(home=None, raw_retention_s=100, rollup_retention_s=10)
    with pytest.raises(ValueError, match="sample_interval_s"):
        Observer(home=None, sample_interval_s=0)
