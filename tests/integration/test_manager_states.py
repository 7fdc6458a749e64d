"""Model states under concurrency: waiters on a failing load, loads during eviction, ad-hoc names."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from hf_provider.errors import ModelLoadError, ModelNotFound
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec


def _provider(*specs: ModelSpec) -> Provider:
    return Provider(list(specs), settings=load_settings({"metrics_enabled": False}))


def test_waiters_on_a_failing_load_get_its_error_without_loading_again(tmp_path, tiny_models):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    with _provider(ModelSpec(name="b", source=str(broken))) as p:
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def call() -> None:
            barrier.wait()
            try:
                p.run("b", "embeddings", "x")
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(errors) == 4 and all(isinstance(e, ModelLoadError) for e in errors)
        assert p.manager.entry("b").attempts < 4  # waiters reused the failed attempt's error


def test_request_during_unload_reloads_promptly(tiny_models):
    spec = ModelSpec(name="c", source=str(tiny_models["bert-cls"]), tasks=["text-classification"])
    with _provider(spec) as p:
        p.load("c")
        unloader = threading.Thread(target=p.unload, args=("c",))
        unloader.start()
        t0 = time.monotonic()
        out = p.run("c", "text-classification", "fine")
        unloader.join()
        assert out[0]["label"] in {"NEGATIVE", "POSITIVE"}
        assert time.monotonic() - t0 < 30  # not the 60 s load wait


def test_unresolvable_adhoc_name_is_not_remembered(tmp_path):
    with _provider() as p:
        with pytest.raises(ModelNotFound):
            p.run(str(tmp_path / "no-such-folder"), "embeddings", "x")
        with pytest.raises(ModelNotFound):
            p.run("not a valid name!", "embeddings", "x")
        assert p.manager.names() == []


def test_an_unloaded_model_is_freed_although_its_load_froze_the_heap(tiny_models):
    gc.unfreeze()
    settings = load_settings({"metrics_enabled": False, "memory": {"freeze_heap": True}})  # a library opts in
    try:
        with Provider([ModelSpec(name="m", source=str(tiny_models["bert-cls"]))], settings=settings) as p:
            p.run("m", "text-classification", "x")
            assert gc.get_freeze_count() > 0  # the load froze what was alive, the model included
            module = p.manager._entries["m"].model.module
            module.me = module  # a reference cycle: only the cyclic collector frees it
            ref = weakref.ref(module)
            del module
            assert p.unload("m")
            assert ref() is None
    finally:
        gc.unfreeze()
