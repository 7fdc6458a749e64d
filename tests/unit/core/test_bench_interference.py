"""bench/interference.py's non-timing parts: its statistics, verdicts, table, and the hfp.toml it generates."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))

import _interference_config  # noqa: E402
import interference  # noqa: E402
from _interference_table import LatencyRow, Target, ThroughputRow, pct, render  # noqa: E402
from hf_provider.settings import load_settings  # noqa: E402


def test_pct_is_nearest_rank_and_empty_is_nan() -> None:
    assert math.isnan(pct([], 0.5))
    values = [float(i) for i in range(1, 101)]  # 1..100
    assert pct(values, 0.5) == 50.0
    assert pct(values, 0.99) == 99.0
    assert pct(list(reversed(values)), 0.99) == 99.0  # order of arrival does not matter
    assert pct([3.0], 0.99) == 3.0


def _row(target: Target, alone: list[list[float]], loaded: list[list[float]]) -> LatencyRow:
    return LatencyRow("k", "label", "t5", target, alone=alone, loaded=loaded, flood_rate=[10.0] * len(loaded))


def test_summary_takes_medians_over_rounds_and_max_over_all() -> None:
    row = _row(Target(), [[0.01] * 10, [0.02] * 10, [0.03] * 10], [[0.1] * 10, [0.2] * 9 + [5.0], [0.3] * 10])
    s = row.summary()
    assert s["alone_p50"] == pytest.approx(0.02)
    assert s["loaded_p50"] == pytest.approx(0.2)
    assert s["ratio_p50"] == pytest.approx(10.0)
    assert s["loaded_p99"] == pytest.approx(0.3)  # the 5 s outlier is one round's p99, not the median's
    assert s["loaded_max"] == 5.0


@pytest.mark.parametrize(
    ("target", "loaded", "verdict"),
    [
        (Target(p50_ratio=1.3, p99_ratio=1.5), [[0.012] * 100], "PASS"),
        (Target(p50_ratio=1.3, p99_ratio=1.5), [[0.014] * 100], "FAIL"),  # p50 1.4x
        (Target(p50_ratio=1.3, p99_ratio=1.5), [[0.012] * 98 + [0.02] * 2], "FAIL"),  # p99 2x
        (Target(p99_s=3.0), [[2.9] * 100], "PASS"),
        (Target(p99_s=3.0), [[3.1] * 100], "FAIL"),
        (Target(), [[1.0] * 100], "info"),
    ],
)
def test_verdict_against_targets(target: Target, loaded: list[list[float]], verdict: str) -> None:
    assert _row(target, [[0.01] * 100], loaded).verdict() == verdict


def test_failed_requests_override_the_verdict() -> None:
    row = _row(Target(p99_s=3.0), [[0.01]], [[0.01]])
    row.errors = 2
    assert row.verdict() == "ERR (2 failed)"


def test_throughput_ratio_of_medians_and_per_round() -> None:
    t = ThroughputRow(
        "x", "mixed", "t5", "off", Target(throughput_ratio=1.1), [100.0, 120.0, 90.0], [100.0] * 3
    )
    assert t.ratio() == pytest.approx(1.0)
    assert t.per_round() == [1.0, 1.2, 0.9]
    assert t.verdict() == "FAIL"
    t.rates[:] = [115.0, 120.0, 111.0]
    assert t.verdict() == "PASS"


def test_render_escapes_pipes_and_prints_every_row() -> None:
    lat = _row(Target(p99_s=3.0), [[0.01]], [[0.02]])
    lat.label = "a | b"
    tp = ThroughputRow("x", "mixed", "t5", "off", Target(), [2.0], [1.0])
    out = render([lat], [tp]).splitlines()
    row = next(line for line in out if line.startswith("| a"))
    assert row.startswith("| a \\| b | t5 |")
    assert len(re.findall(r"(?<!\\)\|", row)) == 9  # the header's 8 cells; the label's own pipe escaped
    assert any(line.startswith("| mixed | t5 | 2.0 | off | 1.0 | 2.00x [2.0]") for line in out)


def test_generated_config_is_what_the_server_loads(tmp_path: Path) -> None:
    args = argparse.Namespace(generation="static", yield_to_interactive="when-full", max_batch_size=8)
    configs = _interference_config.model_configs(args)
    path = _interference_config.write_config(tmp_path, tmp_path / "t5", tmp_path / "minilm", configs, "cpu")
    settings = load_settings(path)
    specs = {m.name: m for m in settings.models}
    assert set(specs) == {"t5", "t5-share", "t5-xt-off", "minilm"}
    assert specs["t5"].batching.generation == "static"
    assert specs["t5"].batching.yield_to_interactive == "when-full"
    assert specs["t5"].batching.max_batch_size == 8
    assert specs["t5"].batching.cross_task is True
    assert specs["t5-xt-off"].batching.cross_task is False
    assert specs["t5-share"].task_share == {"translation": 3, "summarization": 1}
    assert specs["t5"].task_share == {}
    assert specs["minilm"].tasks == ["embeddings"]
    assert "task_share=" in _interference_config.legend(configs).splitlines()[1]


def test_requests_name_their_priority_and_route() -> None:
    path, body, headers = interference.Req("t5", "summarization", 32, "batch").http(3)
    assert path == "/v1/tasks/summarization"
    assert body["parameters"] == {"max_new_tokens": 32}
    assert headers == {"X-Priority": "batch"}
    path, body, headers = interference.Req("minilm", "embeddings").http(0)
    assert path == "/v1/embeddings" and body["input"] == interference.TEXTS[0]
    assert headers == {"X-Priority": "interactive"}  # sent even when interactive: no config default applies
