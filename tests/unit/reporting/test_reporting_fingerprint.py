"""Normalisation, classification and fingerprints: what varies between occurrences of one cause (ids, numbers,
addresses, paths, ports, names from the request) never splits a group; a different type, phase or model does."""

from __future__ import annotations

import random
import uuid

import pytest

from hf_provider import errors as E
from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.reports import classify, fingerprint, frames_of, normalise
from hf_provider.reporting.store import ErrorStore


def random_message(rng: random.Random) -> str:
    n = rng.randint(0, 10**9)
    return (
        f"request {uuid.UUID(int=rng.getrandbits(128))} failed at 0x{rng.getrandbits(48):x} "
        f"reading /var/tmp/run-{n}/shard_{n % 9}.bin from 10.0.{n % 255}.7:{rng.randint(1024, 65535)} "
        f"after {rng.random() * 100:.2f}s (commit {rng.getrandbits(160):040x}) for 'user-{n}'"
    )


def test_random_ids_digits_hex_uuid_paths_ports_give_one_fingerprint() -> None:
    rng = random.Random(7)
    prints = {
        fingerprint("internal", "RuntimeError", ["a:b"], "lm", "forward", random_message(rng))
        for _ in range(200)
    }
    assert len(prints) == 1
    assert "<uuid>" in normalise(random_message(rng)) and "<path>" in normalise(random_message(rng))


@pytest.mark.parametrize(
    "change",
    [
        {"error_class": "oom"},
        {"exc_type": "ValueError"},
        {"frames": ["a:c"]},
        {"model": "t5"},
        {"phase": "preprocess"},
        {"message": "a different problem altogether"},
    ],
)
def test_each_part_of_the_key_splits_groups(change: dict) -> None:
    base = dict(error_class="internal", exc_type="RuntimeError", frames=["a:b"], model="lm", phase="forward",
                message="it broke")  # fmt: skip
    assert fingerprint(**base) != fingerprint(**{**base, **change})


def _raise_here(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


def test_unknown_model_names_collapse_into_one_group() -> None:
    rep = Reporter(ErrorStore(None), names=lambda: ["lm", "t5"])
    for i in range(30):
        rep.report(
            _raise_here(E.ModelNotFound(f"no-such-model-{uuid.uuid4()}-{i}", ["lm", "t5"])), model=f"m{i}"
        )
    groups = rep.groups()
    assert len(groups) == 1
    g = groups[0]
    assert g["count"] == 30 and g["model"] == "-" and g["error_class"] == "bad_request" and g["phase"] == "-"


def test_frames_are_the_innermost_inside_the_package() -> None:
    from hf_provider.memory.oom import run_with_recovery

    def boom(items: list[int]) -> list[int]:
        raise KeyError("x")

    with pytest.raises(KeyError) as info:
        run_with_recovery([1], boom)
    frames = frames_of(info.value)
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
