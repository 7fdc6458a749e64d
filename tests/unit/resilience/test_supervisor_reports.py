"""Internal failures of background work become error reports through the supervisor's exception listeners."""

from __future__ import annotations

from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.store import ErrorStore
from hf_provider.resilience.supervisor import Supervisor


def test_background_failures_are_reported_once_per_cause() -> None:
    sv = Supervisor()
    rep = Reporter(ErrorStore(None), known_models=lambda: ["lm"])

    def broken(component: str, exc: BaseException) -> None:
        raise RuntimeError("listener bug")

    sv.on_exception(broken)  # a broken listener neither hides the error nor stops the others
    sv.on_exception(rep.internal_failure)
    for i in range(3):
        with sv.guard("post/lm"):
            raise RuntimeError(f"bookkeeping failed at slot {i} (0x{i + 4096:x})")
    with sv.guard("keepalive"):
        raise KeyError("gone")
    groups = {g["model"]: g for g in rep.groups()}
    assert groups["lm"]["count"] == 3 and groups["lm"]["phase"] == "background"
    assert groups["-"]["exc_type"] == "KeyError" and groups["-"]["error_class"] == "internal"
    assert sv.errors == {"post/lm": 3, "keepalive": 1}
