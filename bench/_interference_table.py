"""The arithmetic and the table of bench/interference.py, apart from its HTTP so a unit test can check them.

Per phase the bench keeps the probe's latencies; per scenario it reports the median over rounds of each round's
p50 and p99 (alone and under load), the worst latency of all rounds, and ratios of those medians. A target is
judged on those figures: ratios to alone for latency targets, absolute seconds for the starvation bound, and
the ratio of two medians of items/s for throughput.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (no interpolation: p99 of 50 samples is the largest but none)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass(frozen=True)
class Target:
    """Acceptance bounds of one row; None means not judged."""

    p50_ratio: float | None = None
    p99_ratio: float | None = None
    p99_s: float | None = None
    throughput_ratio: float | None = None

    def describe(self) -> str:
        parts = []
        if self.p50_ratio is not None:
            parts.append(f"p50<={self.p50_ratio:g}x")
        if self.p99_ratio is not None:
            parts.append(f"p99<={self.p99_ratio:g}x")
        if self.p99_s is not None:
            parts.append(f"p99<={self.p99_s:g}s")
        if self.throughput_ratio is not None:
            parts.append(f">={self.throughput_ratio:g}x")
        return ", ".join(parts) or "-"


@dataclass
class LatencyRow:
    """One scenario's rounds: probe latencies (seconds) per phase, and the flood's items/s while probed."""

    key: str
    label: str
    config: str
    target: Target = field(default_factory=Target)
    alone: list[list[float]] = field(default_factory=list)
    loaded: list[list[float]] = field(default_factory=list)
    flood_rate: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, float]:
        out = {}
        for name, rounds in (("alone", self.alone), ("loaded", self.loaded)):
            out[f"{name}_p50"] = median([pct(r, 0.5) for r in rounds])
            out[f"{name}_p99"] = median([pct(r, 0.99) for r in rounds])
            out[f"{name}_max"] = max((max(r) for r in rounds if r), default=math.nan)
        out["ratio_p50"] = out["loaded_p50"] / out["alone_p50"]
        out["ratio_p99"] = out["loaded_p99"] / out["alone_p99"]
        out["flood_rate"] = median(self.flood_rate)
        return out

    def verdict(self) -> str:
        t, s = self.target, self.summary()
        if self.errors:
            return f"ERR ({self.errors} failed)"
        checks = [
            (t.p50_ratio, s["ratio_p50"]),
            (t.p99_ratio, s["ratio_p99"]),
            (t.p99_s, s["loaded_p99"]),
        ]
        judged = [(bound, value) for bound, value in checks if bound is not None]
        if not judged:
            return "info"
        return "PASS" if all(value <= bound for bound, value in judged) else "FAIL"


@dataclass
class ThroughputRow:
    """items/s of one workload per round, against a reference workload measured in the same rounds."""

    key: str
    label: str
    config: str
    reference: str
    target: Target = field(default_factory=Target)
    rates: list[float] = field(default_factory=list)
    reference_rates: list[float] = field(default_factory=list)
    errors: int = 0

    def ratio(self) -> float:
        return median(self.rates) / median(self.reference_rates)

    def per_round(self) -> list[float]:
        return [round(a / b, 2) for a, b in zip(self.rates, self.reference_rates, strict=True)]

    def verdict(self) -> str:
        if self.errors:
            return f"ERR ({self.errors} failed)"
        if self.target.throughput_ratio is None:
            return "info"
        return "PASS" if self.ratio() >= self.target.throughput_ratio else "FAIL"


def _ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x * 1000:.0f}" if x >= 0.1 else f"{x * 1000:.1f}"


def cell(text: str) -> str:
    return text.replace("|", "\\|")  # a label's own '|' would split its markdown cell


def render(latency: list[LatencyRow], throughput: list[ThroughputRow]) -> str:
    """Markdown tables in the layout of issue 24's, plus the model, the target and PASS/FAIL."""
    lines = [
        "| scenario | model | alone p50 / p99 ms | under load p50 / p99 / max ms | ratio p50 / p99 "
        "| flood items/s | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in latency:
        s = row.summary()
        lines.append(
            f"| {cell(row.label)} | {row.config} | {_ms(s['alone_p50'])} / {_ms(s['alone_p99'])} "
            f"| {_ms(s['loaded_p50'])} / {_ms(s['loaded_p99'])} / {_ms(s['loaded_max'])} "
            f"| {s['ratio_p50']:.2f}x / {s['ratio_p99']:.2f}x | {s['flood_rate']:.1f} "
            f"| {row.target.describe()} | {row.verdict()} |"
        )
    if throughput:
        lines += [
            "",
            "| throughput | model | items/s | against | its items/s | ratio (per round) | target | result |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in throughput:
            lines.append(
                f"| {cell(t.label)} | {t.config} | {median(t.rates):.1f} | {t.reference} "
                f"| {median(t.reference_rates):.1f} | {t.ratio():.2f}x {t.per_round()} "
                f"| {t.target.describe()} | {t.verdict()} |"
            )
    return "\n".join(lines)
