"""Process-wide state belongs to the server: a Provider used as a library leaves the host program's garbage
collector and log record factory as they were; the server's entry point freezes the heap after each load and
masks every log record (create_app, which `hfp serve` and a Ray replica both go through)."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hf_provider.provider import Provider
from hf_provider.server.app import create_app
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

TASK = "text-classification"

# A host program: its gc and logging state before importing hf_provider, then after a load and a request.
_SCRIPT = """
import gc, json, logging, sys
gc.freeze()  # the host's own choice: not ours to thaw
state = lambda: [gc.isenabled(), gc.get_freeze_count(), id(logging.getLogRecordFactory())]
before = state()
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
spec = ModelSpec(name="m", source=sys.argv[1], tasks=["text-classification"])
with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
    p.run("m", "text-classification", "a fine day")
    served = state()
    p.unload("m")
    unloaded = state()
print(json.dumps({"before": before, "served": served, "unloaded": unloaded, "closed": state()}))
"""


def test_a_library_provider_leaves_gc_and_the_log_record_factory_as_the_host_program_set_them(
    tiny_models: dict[str, Path],
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tiny_models["bert-cls"])],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    enabled, frozen, factory = seen["before"]
    assert frozen > 0  # the host froze its heap before importing hf_provider
    for when in ("served", "unloaded", "closed"):  # the unload collects without thawing the host's heap
        now = seen[when]
        assert (now[0], now[2]) == (enabled, factory), when
        # nothing thawed (0) and nothing more frozen (a load's freeze adds ~400k objects); frozen objects freed by
        # reference counting leave the permanent generation by themselves, and CPython 3.12 collections add a few
        assert 0.9 * frozen < now[1] < frozen + 10_000, (when, now[1], frozen)


@pytest.fixture
def host_state() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    gc.unfreeze()
    yield
    logging.setLogRecordFactory(factory)
    gc.unfreeze()


@pytest.mark.usefixtures("host_state")
@pytest.mark.parametrize("freeze_heap", [None, False])
def test_the_server_masks_every_log_record_and_freezes_the_heap_unless_told_not_to(
    tiny_models: dict[str, Path], freeze_heap: bool | None
) -> None:
    settings = load_settings({"metrics_enabled": False, "memory": {"freeze_heap": freeze_heap}})
    with Provider(
        [ModelSpec(name="m", source=str(tiny_models["bert-cls"]), tasks=[TASK])], settings=settings
    ) as p:
        create_app(p, load_on_start=False)  # what `hfp serve` and a Ray replica call
        assert getattr(logging.getLogRecordFactory(), "hfp_redacting", False)
        p.run("m", TASK, "a fine day")
        assert frozen_by_us() is (freeze_heap is None)
        assert p.unload("m")
        assert frozen_by_us() is (freeze_heap is None)  # refrozen after the unload's collection


def frozen_by_us() -> bool:
    """A freeze here holds everything alive (~400k objects with torch imported); CPython 3.12's own collections
    leave a few hundred in the permanent generation without anyone freezing."""
    return gc.get_freeze_count() > 50_000
