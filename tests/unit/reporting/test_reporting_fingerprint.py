"""Fingerprints and classification: a group is the error's kind (class, code, phase, configured model and revision,
frames), never the message, so nothing a request sends (model names, parameter names, keys, ids) splits a group."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from hf_provider import errors as E
from hf_provider.memory.oom import run_with_recovery
from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.reports import classify, code_of, fingerprint, frames_of
from hf_provider.reporting.store import ErrorStore


def word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + "_", k=rng.randint(3, 16)))


def raised(exc: BaseException) -> BaseException:
    """`exc` raised through hf_provider code, so it carries package frames as a real failure does."""

    def run(items: list[int]) -> list[int]:
        raise exc

    try:
        run_with_recovery([1], run)
    except BaseException as e:
        return e
    raise AssertionError("run_with_recovery swallowed the error")


def test_three_causes_with_random_content_make_three_groups_of_thirty(tmp_path: Path) -> None:
    rng = random.Random(23)
    rep = Reporter(ErrorStore(tmp_path / "errors.db"), known_models=lambda: ["lm", "t5"])
    causes = ["model", "param", "key"] * 30
    rng.shuffle(causes)  # interleaved, as they arrive
    for cause in causes:
        if cause == "model":  # a client asking random model names
            name = word(rng)
            rep.report(raised(E.ModelNotFound(name, ["lm", "t5"])), model=name, phase="parse")
        elif cause == "param":  # unquoted: the former message normaliser kept these words, one group each
            rep.report(
                raised(E.InvalidInput(f"unknown parameter(s) {word(rng)}, {word(rng)} for task embeddings")),
                model="lm",
                phase="parse",
            )
        else:
            rep.report(raised(ValueError(f"no key {word(rng)} in {word(rng)}")), model="t5", phase="forward")
    groups = rep.groups()
    assert len(groups) == 3 and [g["count"] for g in groups] == [30, 30, 30]
    by_type = {g["exc_type"]: g for g in groups}
    assert (
        by_type["ModelNotFound"]["model"] == "-" and by_type["ModelNotFound"]["error_class"] == "bad_request"
    )
    assert by_type["InvalidInput"]["model"] == "lm" and by_type["ValueError"]["error_class"] == "internal"
    rep.close()


def test_the_latest_masked_message_is_shown_while_the_group_stays_one(tmp_path: Path) -> None:
    clock = [100.0]
    rep = Reporter(ErrorStore(tmp_path / "errors.db"), known_models=lambda: ["lm"], clock=lambda: clock[0])
    rep.report(E.InvalidInput("unknown parameter colour"), model="lm", phase="parse")
    clock[0] += 1
    rep.report(E.InvalidInput("unknown parameter api_key=abcdef123456"), model="lm", phase="parse")
    (g,) = rep.groups()
    assert g["count"] == 2 and g["message"] == "unknown parameter api_key=***"
    assert [s["message"] for s in g["samples"]] == [
        "unknown parameter api_key=***",
        "unknown parameter colour",
    ]
    rep.close()


@pytest.mark.parametrize(
    "change",
    [
        {"error_class": "oom"},
        {"code": "too_many_items"},
        {"frames": ["a:c"]},
        {"model": "t5"},
        {"phase": "load"},
    ],
)
def test_each_part_of_the_key_splits_groups(change: dict) -> None:
    base = dict(error_class="bad_request", code="invalid_input", frames=["a:b"], model="lm", phase="parse")
    assert fingerprint(**base) != fingerprint(**{**base, **change})


def test_the_code_is_a_provider_errors_code_else_the_type_name() -> None:
    class HTTPError(Exception):
        code = 404  # another library's `code`: not ours, and a request may choose it

    assert code_of(E.InvalidInput("x")) == "invalid_input"
    assert code_of(E.TooManyItems("x")) == "too_many_items"
    assert code_of(HTTPError()) == "HTTPError" and code_of(ValueError("x")) == "ValueError"


def test_codes_of_one_error_class_are_groups_of_their_own() -> None:
    rep = Reporter(ErrorStore(None), known_models=lambda: ["lm"])
    rep.report(E.InvalidInput("bad"), model="lm", phase="parse")
    rep.report(E.TooManyItems("bad"), model="lm", phase="parse")
    groups = rep.groups()
    assert len(groups) == 2 and {g["error_class"] for g in groups} == {"bad_request"}


def test_a_known_models_revisions_are_groups_of_their_own_an_unknown_models_are_not() -> None:
    rep = Reporter(ErrorStore(None), known_models=lambda: ["lm"])
    for revision in ("aaa", "bbb", "bbb"):  # primary and canary
        rep.report(RuntimeError("x"), model="lm", phase="forward", revision=revision)
    for i in range(3):
        rep.report(RuntimeError("x"), model=f"nope-{i}", phase="forward", revision=f"r{i}")
    groups = {(g["model"], g["revision"]): g["count"] for g in rep.groups()}
    assert groups == {("lm", "aaa"): 1, ("lm", "bbb"): 2, ("-", None): 3}


def test_without_known_models_names_are_kept_until_they_are_given() -> None:
    rep = Reporter(ErrorStore(None))
    rep.report(RuntimeError("x"), model="anything")
    assert [g["model"] for g in rep.groups()] == ["anything"]
    rep.known_models = lambda: ["lm"]  # the Provider assigns the manager's names after building both
    rep.report(RuntimeError("x"), model="other")
    assert {g["model"] for g in rep.groups()} == {"anything", "-"}


def test_a_failing_known_models_costs_the_report_never_the_request() -> None:
    def broken() -> list[str]:
        raise RuntimeError("manager closed")

    rep = Reporter(ErrorStore(None), known_models=broken)
    assert rep.report(RuntimeError("x"), model="lm") is None
    assert rep.groups() == []


def test_max_groups_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_groups must be at least 1"):
        Reporter(ErrorStore(None), max_groups=0)


def test_frames_are_the_innermost_inside_the_package() -> None:
    frames = frames_of(raised(KeyError("x")))
    assert frames and all(f.startswith("hf_provider.") for f in frames)
    assert frames[-1].startswith("hf_provider.memory.oom:")
    assert not any(ch.isdigit() for f in frames for ch in f.split(":")[1])  # no line numbers


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (E.OutOfMemory("x"), "oom"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
        (MemoryError(), "oom"),
        (RuntimeError("CUDA error: device-side assert triggered"), "device_fatal"),
        (E.ModelLoadError("x"), "load_failed"),
        (E.DeadlineExceeded("x"), "timeout"),
        (E.Overloaded("x"), "overloaded"),
        (E.InvalidInput("x"), "bad_request"),
        (E.TaskNotSupported("m", "t", []), "bad_request"),
        (ValueError("x"), "internal"),
    ],
)
def test_classify(exc: BaseException, cls: str) -> None:
    assert classify(exc) == cls


def test_classify_cache_corruption_through_the_chain_and_declared_classes() -> None:
    class SafetensorError(Exception):
        pass

    try:
        try:
            raise SafetensorError("header too large")
        except SafetensorError as inner:
            raise E.ModelLoadError("cannot load") from inner
    except E.ModelLoadError as e:
        assert classify(e) == "cache_corrupt"

    class CircuitOpen(E.Unavailable):
        error_class = "circuit_open"

    assert classify(CircuitOpen("open")) == "circuit_open"
