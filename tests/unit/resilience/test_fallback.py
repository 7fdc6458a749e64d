"""The fallback decision and chain walk (resilience/fallback.py) with fake models: no provider, no sleeps."""

from __future__ import annotations

import pytest

from hf_provider import errors as E
from hf_provider.resilience import fallback as F
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec, check_fallbacks


def test_reasons_switch_only_on_refusals_of_the_models_own_health() -> None:
    assert F.reason(E.CircuitOpen("open", model="a")) == "circuit_open"
    assert F.reason(E.Overloaded("busy", model="a")) == "overloaded"
    assert F.reason(E.ModelLoadError("bad weights", model="a")) == "load_failed"
    assert F.reason(E.QuantizationRejected("guard", model="a")) == "load_failed"
    assert F.reason(E.MemoryBudgetExceeded("too big", model="a")) == "load_failed"
    # Client errors (4xx) never switch, nor errors after the request was queued or the caller's own ends.
    for exc in (
        E.InvalidInput("bad"),
        E.TooManyItems("many"),
        E.TaskNotSupported("a", "summarization", ["embeddings"]),
        E.ModelNotFound("nope"),
        E.DeadlineExceeded("late"),
        E.Cancelled("gone"),
        E.OutOfMemory("oom"),
        E.ShuttingDown("bye"),
        RuntimeError("bug"),
    ):
        assert F.reason(exc) is None, exc


class Models:
    """Fake models: `refuse[name]` is raised by an attempt on it; attempts are recorded."""

    def __init__(self, refuse: dict[str, BaseException], tasks: dict[str, set[str]] | None = None) -> None:
        self.refuse = refuse
        self.tasks = tasks or {}
        self.open: set[str] = set()
        self.tried: list[str] = []
        self.refused: list[tuple[str, str]] = []

    def attempt(self, name: str) -> str:
        self.tried.append(name)
        if name in self.refuse:
            raise self.refuse[name]
        return f"req@{name}"

    def serve(self, model: str, fallbacks: list[str], task: str = "embeddings") -> F.Served:
        return F.serve(
            model,
            fallbacks,
            self.attempt,
            serves=lambda n: task in self.tasks.get(n, {task}),
            is_open=lambda n: n in self.open,
            on_refused=lambda n, e: self.refused.append((n, type(e).__name__)),
        )


def test_a_healthy_primary_serves_and_nothing_else_is_tried() -> None:
    m = Models({})
    assert m.serve("a", ["b"]) == ("req@a", "a", None)
    assert m.tried == ["a"] and m.refused == []


def test_an_open_primary_is_served_by_the_first_fallback_with_the_reason() -> None:
    m = Models({"a": E.CircuitOpen("open", model="a")})
    served = m.serve("a", ["b", "c"])
    assert served == ("req@b", "b", "circuit_open")
    assert m.tried == ["a", "b"]
    assert m.refused == [("a", "CircuitOpen")]  # the primary's refusal is still counted, for the primary


def test_a_client_error_never_falls_back() -> None:
    m = Models({"a": E.InvalidInput("bad", param="inputs")})
    with pytest.raises(E.InvalidInput):
        m.serve("a", ["b"])
    assert m.tried == ["a"]


def test_no_fallbacks_raise_the_primarys_refusal() -> None:
    m = Models({"a": E.Overloaded("busy", model="a")})
    with pytest.raises(E.Overloaded):
        m.serve("a", [])


def test_a_fallback_that_lacks_the_task_is_skipped() -> None:
    m = Models(
        {"a": E.ModelLoadError("broken", model="a")},
        tasks={"b": {"text-classification"}, "c": {"embeddings"}},
    )
    assert m.serve("a", ["b", "c"]) == ("req@c", "c", "load_failed")
    assert m.tried == ["a", "c"]


def test_a_fallback_whose_breaker_is_open_is_skipped() -> None:
    m = Models({"a": E.CircuitOpen("open", model="a")})
    m.open.add("b")
    assert m.serve("a", ["b", "c"]) == ("req@c", "c", "circuit_open")
    assert m.tried == ["a", "c"]


def test_a_fallback_refusing_too_passes_to_the_next_and_the_reason_stays_the_primarys() -> None:
    m = Models({"a": E.CircuitOpen("open", model="a"), "b": E.Overloaded("busy", model="b")})
    assert m.serve("a", ["b", "c"]) == ("req@c", "c", "circuit_open")
    assert m.refused == [("a", "CircuitOpen"), ("b", "Overloaded")]


def test_the_last_error_is_raised_when_no_fallback_can_serve() -> None:
    last = E.ModelLoadError("c is broken too", model="c")
    m = Models({"a": E.CircuitOpen("open", model="a"), "b": E.Overloaded("busy", model="b"), "c": last})
    with pytest.raises(E.ModelLoadError) as info:
        m.serve("a", ["b", "c"])
    assert info.value is last
    # Every fallback skipped: the primary's own refusal is raised.
    m = Models({"a": E.CircuitOpen("open", model="a")}, tasks={"b": {"summarization"}})
    m.open.add("c")
    with pytest.raises(E.CircuitOpen):
        m.serve("a", ["b", "c"])
    assert m.tried == ["a"]


def test_a_fallback_not_serving_the_task_after_all_is_skipped_and_its_client_error_raised_otherwise() -> None:
    m = Models({"a": E.CircuitOpen("open", model="a"), "b": E.TaskNotSupported("b", "embeddings", ["ner"])})
    assert m.serve("a", ["b", "c"]) == ("req@c", "c", "circuit_open")
    m = Models({"a": E.CircuitOpen("open", model="a"), "b": E.InvalidInput("too long", param="inputs")})
    with pytest.raises(E.InvalidInput):
        m.serve("a", ["b", "c"])
    assert m.tried == ["a", "b"]


def _spec(name: str, *fallbacks: str) -> ModelSpec:
    return ModelSpec(name=name, source=f"/models/{name}", fallbacks=list(fallbacks))


def test_configuration_checks_the_fallback_names() -> None:
    check_fallbacks([_spec("a", "b", "c"), _spec("b", "c"), _spec("c")])  # a chain without a cycle is fine
    with pytest.raises(ValueError, match=r"models\.a\.fallbacks: .*own fallback"):
        check_fallbacks([_spec("a", "a")])
    with pytest.raises(ValueError, match=r"models\.a\.fallbacks: \['zz'\] are not configured"):
        check_fallbacks([_spec("a", "zz"), _spec("b")])
    with pytest.raises(ValueError, match=r"cycle \(a -> b -> c -> a\)"):
        check_fallbacks([_spec("a", "b"), _spec("b", "c"), _spec("c", "a")])
    with pytest.raises(ValueError, match="listed twice"):
        check_fallbacks([_spec("a", "b", "b"), _spec("b")])
    with pytest.raises(E.ConfigError, match=r"models.*fallbacks.*not configured models"):
        load_settings({"models": [{"name": "a", "source": "/m/a", "fallbacks": ["b"]}]})
