"""TESTING ONLY fault injection: chosen exception, phase, model and rate; rules replaced at run time; genuine
out-of-memory errors for chosen batch sizes."""

from __future__ import annotations

import pytest

from hf_provider import errors as E
from hf_provider.resilience.faults import FaultInjector
from hf_provider.settings import FaultRule, load_settings


def test_rule_matches_phase_and_model_only() -> None:
    inj = FaultInjector([FaultRule(phase="forward", model="lm", exception="KeyError")])
    inj.check("t5", "forward")
    inj.check("lm", "preprocess")
    with pytest.raises(KeyError):
        inj.check("lm", "forward")
    assert inj.injected == 1


def test_rate_is_drawn_per_call_with_a_seed() -> None:
    inj = FaultInjector([FaultRule(phase="parse", rate=0.25)], seed=3)
    fails = 0
    for _ in range(2000):
        try:
            inj.check("any", "parse")
        except RuntimeError:
            fails += 1
    assert 400 < fails < 600


def test_messages_vary_and_provider_errors_are_available() -> None:
    inj = FaultInjector([FaultRule(phase="load", exception="ModelLoadError")])
    messages = set()
    for _ in range(5):
        with pytest.raises(E.ModelLoadError) as info:
            inj.check("lm", "load")
        messages.add(info.value.message)
    assert len(messages) == 5
    inj.set([FaultRule(phase="load", message="fixed")])
    with pytest.raises(RuntimeError, match=r"^fixed$"):
        inj.check("lm", "load")
    inj.set([])
    inj.check("lm", "load")


def test_unknown_exception_names_are_refused_and_settings_validate() -> None:
    with pytest.raises(ValueError, match="is not one of"):
        FaultInjector([FaultRule(phase="forward", exception="SystemExit")])
    with pytest.raises(E.ConfigError, match="phase"):
        load_settings({"faults": {"rules": [{"phase": "nowhere"}]}})
    assert FaultInjector.from_settings(load_settings({}).faults) is None


def test_rules_and_out_of_memory_sizes_are_independent_kinds_of_one_injector() -> None:
    from hf_provider.memory.oom import is_oom

    inj = FaultInjector([FaultRule(phase="forward", model="lm", exception="KeyError")], batch_sizes=[8])
    inj.check_batch(7)  # a size not chosen, whatever the rules say
    with pytest.raises(RuntimeError) as info:  # torch.OutOfMemoryError is a RuntimeError too
        inj.check_batch(8)
    assert (
        is_oom(info.value) and inj.injected == 0
    )  # `injected` counts rule faults (the admin route's figure)
    assert FaultInjector.parse("8").rules() == []  # memory.fault_inject_oom alone sets no rule
    with pytest.raises(KeyError):
        inj.check("lm", "forward")
    assert inj.injected == 1
