"""Regression and anomaly detection: compare a model's current window with a baseline, pure functions only.

`detect` takes the figures of two windows (latencies, request and failure counts, durations) and returns the
findings a person should hear about: latency up, error rate up, throughput down, each with its figures and the
confidence of a one-sided test. `plan` picks the windows: after a revision change, the previous revision's last
hours against the new one's first window; otherwise the same hours of the previous days. The monitor
(observability/monitor.py) reads the history store and the version history and calls these.

The tests are hand-written (a few dozen lines of standard-library math) rather than scipy's: scipy is not a
dependency of the server, and importing scipy.stats costs about half a second and 40 MB in a process that
otherwise never needs it. They are the textbook ones:
- latency: Mann-Whitney U (rank-sum; normal approximation with tie correction) for a shift of the whole
  distribution, and a tail exceedance test for the slow requests alone (the shares of each window above the
  pooled p95, Fisher's exact test: Mood's median test moved to the tail); both are rank-based, so an
  outlier weighs no more than any other slow request. A finding also needs the p95 to have grown by
  `min_latency_change`: significance alone flags harmless shifts once windows hold thousands of requests.
- error rate: one-sided binomial tail of the current failures at the baseline's rate (Laplace-smoothed).
- throughput: one-sided Poisson lower tail of the current count at the baseline's rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hf_provider.observability import quantiles

KINDS = ("latency", "error_rate", "throughput")
DAY = 86400.0
MAX_SAMPLES = 4000  # per side: ranks cost n log n; a deterministic stride keeps the shape of larger windows


@dataclass(frozen=True)
class Window:
    """One model's figures over [start, end): latencies of answered requests, all requests, failed ones."""

    latencies_ms: Sequence[float]
    requests: int
    failed: int
    duration_s: float


@dataclass(frozen=True)
class DetectorConfig:
    alpha: float = 1e-4  # per test, after the Bonferroni factor of the latency pair
    min_samples: int = 50  # latencies (or requests) a window needs before it is judged
    min_latency_change: float = 0.10  # the p95 must grow by at least this share
    min_error_increase: float = 0.01  # absolute error-rate increase
    min_throughput_drop: float = 0.5  # share of the expected requests missing

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.min_samples < 5:
            raise ValueError(f"min_samples must be at least 5, got {self.min_samples}")


@dataclass(frozen=True)
class Finding:
    model: str
    kind: str
    revision: str | None  # the commit serving during the current window
    baseline: str  # what it was compared with, in words
    metric: str
    current: float
    baseline_value: float
    change: float  # relative change (+0.41: 41% worse; throughput: -0.6 is 60% fewer)
    confidence: float  # 1 - p of the one-sided test
    since: float  # when the current window (or the revision) started, epoch seconds
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """Which windows to compare. `baselines` are [start, end) spans whose samples are pooled."""

    current: tuple[float, float]
    baselines: tuple[tuple[float, float], ...]
    revision: str | None
    baseline_label: str
    since: float
    after_swap: bool


# -- window planning ------------------------------------------------------------------------------------------


def plan(
    now: float,
    window_s: float,
    serving: Sequence[tuple[float, str | None]],
    *,
    days: int = 7,
    after_swap_s: float = DAY,
) -> Plan:
    """`serving`: (ts, commit) of each event after which a commit served, oldest first. Within `after_swap_s` of
    the newest revision change, the new revision's first window is compared with the previous one's last
    `6 x window_s` (capped at its serving time); otherwise the last window with the same hours of `days` days."""
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    commit = serving[-1][1] if serving else None
    change = None
    for i in range(len(serving) - 1, 0, -1):
        if serving[i][1] != serving[i - 1][1]:
            change = i
            break
    if change is not None and now - serving[change][0] <= after_swap_s:
        ts, prev = serving[change][0], serving[change - 1][1]
        prev_start = serving[change - 1][0]
        base = (max(prev_start, ts - 6 * window_s), ts)
        return Plan(
            current=(ts, min(now, ts + window_s)),
            baselines=(base,) if base[1] > base[0] else (),
            revision=commit,
            baseline_label=f"revision {_short(prev)}",
            since=ts,
            after_swap=True,
        )
    start = now - window_s
    return Plan(
        current=(start, now),
        baselines=tuple((start - d * DAY, now - d * DAY) for d in range(1, days + 1)),
        revision=commit,
        baseline_label=f"the same hours of the previous {days} days",
        since=start,
        after_swap=False,
    )


# -- detection ------------------------------------------------------------------------------------------------


def detect(
    model: str,
    current: Window,
    baseline: Window,
    plan_: Plan,
    config: DetectorConfig | None = None,
) -> list[Finding]:
    cfg = config or DetectorConfig()
    out = []
    for check in (_latency, _error_rate, _throughput):
        f = check(model, current, baseline, plan_, cfg)
        if f is not None:
            out.append(f)
    return out


def _latency(model: str, cur: Window, base: Window, p: Plan, cfg: DetectorConfig) -> Finding | None:
    if len(cur.latencies_ms) < cfg.min_samples or len(base.latencies_ms) < cfg.min_samples:
        return None
    c = sorted(_thin(cur.latencies_ms))
    b = sorted(_thin(base.latencies_ms))
    c95, b95 = quantiles.exact(c, 0.95), quantiles.exact(b, 0.95)
    c90, b90 = quantiles.exact(c, 0.90), quantiles.exact(b, 0.90)
    assert c95 is not None and b95 is not None and c90 is not None and b90 is not None
    if b95 <= 0 or b90 <= 0:
        return None
    # The p90 as well as the p95: a window's p95 rests on its few slowest requests, and one outlier more or less
    # moves it by 10% in a window of 150; the p90 moves with a real regression and far less with chance.
    if max(c95 / b95, c90 / b90) < 1 + cfg.min_latency_change:
        return None
    p_tail = exceedance_greater(c, b, 0.95)
    p_shift = mann_whitney_greater(c, b)
    pv = min(1.0, 2 * min(p_tail, p_shift))  # Bonferroni over the two latency tests
    if pv >= cfg.alpha:
        return None
    change = c95 / b95 - 1
    return _finding(
        model, "latency", "p95_ms", c95, b95, change, pv, p,
        f"p95 {_pct(change)} ({b95:.1f} -> {c95:.1f} ms; p90 {_pct(c90 / b90 - 1)})",
    )  # fmt: skip


def _error_rate(model: str, cur: Window, base: Window, p: Plan, cfg: DetectorConfig) -> Finding | None:
    if cur.requests < cfg.min_samples or base.requests < cfg.min_samples:
        return None
    rate = cur.failed / cur.requests
    p0 = (base.failed + 1) / (base.requests + 2)
    if rate < p0 + cfg.min_error_increase:
        return None
    pv = binomial_sf(cur.failed, cur.requests, p0)
    if pv >= cfg.alpha:
        return None
    return _finding(
        model, "error_rate", "error_rate", rate, p0, rate / p0 - 1, pv, p,
        f"error rate {rate:.2%} (was {p0:.2%})",
    )  # fmt: skip


def _throughput(model: str, cur: Window, base: Window, p: Plan, cfg: DetectorConfig) -> Finding | None:
    if base.requests < cfg.min_samples or cur.duration_s <= 0 or base.duration_s <= 0:
        return None
    expected = base.requests / base.duration_s * cur.duration_s
    if expected < cfg.min_samples or cur.requests > expected * (1 - cfg.min_throughput_drop):
        return None
    pv = poisson_cdf(cur.requests, expected)
    if pv >= cfg.alpha:
        return None
    now_rate, was = cur.requests / cur.duration_s, base.requests / base.duration_s
    return _finding(
        model, "throughput", "requests_per_s", now_rate, was, now_rate / was - 1, pv, p,
        f"throughput {_pct(now_rate / was - 1)} ({was:.2f} -> {now_rate:.2f} req/s)",
    )  # fmt: skip


def _finding(
    model: str,
    kind: str,
    metric: str,
    current: float,
    base: float,
    change: float,
    pv: float,
    p: Plan,
    what: str,
) -> Finding:
    confidence = 1.0 - pv
    if p.after_swap:
        # A local folder has no commit: the change is still known by its time.
        what_went_live = f"revision {_short(p.revision)}" if p.revision else "the new revision"
        where = f"since {what_went_live} went live (compared with {p.baseline_label})"
    else:
        where = f"compared with {p.baseline_label}"
    return Finding(
        model=model,
        kind=kind,
        revision=p.revision,
        baseline=p.baseline_label,
        metric=metric,
        current=round(current, 6),
        baseline_value=round(base, 6),
        change=round(change, 4),
        confidence=confidence,
        since=p.since,
        message=f"{model}: {what} {where}, {_conf(confidence)} confidence",
    )


# -- statistics -----------------------------------------------------------------------------------------------


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value that x tends to be larger than y (normal approximation, tie-corrected, continuity)."""
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        return 1.0
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    rank_x = 0.0
    ties = 0.0
    i, n = 0, n1 + n2
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg = (i + j) / 2 + 1  # ranks are 1-based
        t = j - i + 1
        ties += t**3 - t
        rank_x += avg * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_x - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    return normal_sf((u - mean - 0.5) / math.sqrt(var))


def exceedance_greater(x: Sequence[float], y: Sequence[float], q: float) -> float:
    """One-sided p-value that more of x than of y lies above the pooled q-quantile (Mood's median test moved to
    the tail, with Fisher's exact test). The threshold comes from both samples, so a baseline whose own quantile
    came out low by chance does not make the current window look slow."""
    pooled = sorted([*x, *y])
    t = quantiles.exact(pooled, q)
    if t is None:
        return 1.0
    kx, ky = sum(1 for v in x if v > t), sum(1 for v in y if v > t)
    return hypergeom_sf(kx, len(x) + len(y), kx + ky, len(x))


def hypergeom_sf(k: int, total: int, marked: int, drawn: int) -> float:
    """P(X >= k), X ~ Hypergeometric: `drawn` of `total` items of which `marked` are marked (Fisher's exact
    one-sided test; exact because a tail holds a handful of requests, where a normal approximation flatters)."""
    hi = min(marked, drawn)
    if k <= max(0, drawn - (total - marked)):
        return 1.0
    if k > hi:
        return 0.0

    def lcomb(n: int, r: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)

    base = lcomb(total, drawn)
    return min(
        1.0,
        sum(math.exp(lcomb(marked, i) + lcomb(total - marked, drawn - i) - base) for i in range(k, hi + 1)),
    )


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact; n is at most a window's requests)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        total += term
        if i > n * p and term < total * 1e-16:
            break  # past the mode the terms only shrink
    return min(1.0, total)


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam)."""
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    ll = math.log(lam)
    return min(1.0, sum(math.exp(i * ll - lam - math.lgamma(i + 1)) for i in range(k + 1)))


# -- helpers --------------------------------------------------------------------------------------------------


def _thin(values: Sequence[float]) -> Sequence[float]:
    if len(values) <= MAX_SAMPLES:
        return values
    step = len(values) / MAX_SAMPLES
    return [values[int(i * step)] for i in range(MAX_SAMPLES)]


def _short(commit: str | None) -> str:
    return (commit or "unknown")[:7]


def _pct(change: float) -> str:
    return f"{change:+.0%}"


def _conf(c: float) -> str:
    for level in (0.999, 0.99, 0.95):
        if c >= level:
            return f"{level:.1%}".replace(".0%", "%")
    return f"{c:.0%}"
