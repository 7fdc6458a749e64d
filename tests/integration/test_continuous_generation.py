"""Continuous batching (runtime/continuous, scheduling/continuous.py) forced on for a tiny fp32 GPT-2 on CPU,
through the Provider: outputs token-identical to `generate` one prompt at a time while requests join, leave and
are cancelled mid-run; seeded sampling reproducible; slots freed; failures contained; the memory accounted."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hf_provider.provider import Provider
from hf_provider.runtime.continuous.cache import SlotCache
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

TEXT = (
    "the harbour was rebuilt after storm Alice lives in Rome weather great today said one two three four five "
    "six seven blue green river mountain quickly slowly über naïve 日本 café"
)
WORDS = TEXT.split()
SLOTS = 6


def spec(path: Path, mode: str = "continuous", **batching: Any) -> ModelSpec:
    return ModelSpec(
        name="lm",
        source=str(path),
        device="cpu",
        tasks=["text-generation"],
        batching={"generation": mode, "max_batch_size": SLOTS, **batching},
    )


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path]):
    with Provider([spec(tiny_models["decoder"])], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("lm")
        yield p


def reference(model: Any, prompt: str, max_new: int) -> dict[str, Any]:
    """`generate` on the prompt alone (no padding), read the way the static path reads it."""
    tok = model.tokenizer
    ids = tok(prompt)["input_ids"]
    with torch.inference_mode():
        out = model.module.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=1,
            pad_token_id=tok.pad_token_id,
        )
    seq = out[0, len(ids) :].tolist()
    cut = next((i for i, t in enumerate(seq) if t == tok.eos_token_id), None)
    return {
        "generated_text": tok.decode(seq if cut is None else seq[:cut], skip_special_tokens=True),
        "finish_reason": "length" if cut is None else "stop",
        "prompt_tokens": len(ids),
        "completion_tokens": len(seq) if cut is None else cut + 1,
    }


def prompts(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Prompts of 1 to 30 words, a few of 130+ tokens (prefilled in several chunks), 1 to 24 new tokens."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.randrange(60, 90) if i % 25 == 3 else rng.randrange(1, 30)
        out.append((" ".join(rng.choice(WORDS) for _ in range(words)), rng.randrange(1, 25)))
    return out


def idle(p: Provider) -> None:
    """Wait (bounded) until nothing is in flight, then check every slot is free again."""
    sched = p.manager.get("lm").scheduler
    done = threading.Event()
    for _ in range(500):
        if sched.in_flight == 0 and not sched.engine.busy:
            break
        done.wait(0.01)
    assert sched.in_flight == 0 and sched.pending.running_items == 0
    assert sched.engine.free_slots == SLOTS and sched.engine.rows == {}
    sched.engine.policy.check()


def test_200_prompts_token_identical_to_generate_while_rows_join_leave_and_are_cancelled(
    served, tiny_models: dict[str, Path]
) -> None:
    p = served
    sched = p.manager.get("lm").scheduler
    assert sched.engine is not None and sched.engine.slots == SLOTS
    model = p.manager.get("lm").model
    work = prompts(200)
    expected = [reference(model, text, n) for text, n in work]
    # Rows that end early on a stop string (this random model never says end-of-sequence), compared with the
    # static path run one request at a time.
    stops: dict[int, dict[str, Any]] = {}
    with Provider(
        [spec(tiny_models["decoder"], "static")], settings=load_settings({"metrics_enabled": False})
    ) as static:
        for i in range(5, len(work), 10):
            text = expected[i]["generated_text"]
            if len(text) >= 6:
                params = {"max_new_tokens": work[i][1], "stop": [text[3:5]]}
                stops[i] = {"params": params, "want": static.run("lm", "text-generation", work[i][0], params)}
    assert sum(s["want"]["finish_reason"] == "stop" for s in stops.values()) >= 5
    assert sum(len(model.tokenizer(t)["input_ids"]) > 128 for t, _ in work) >= 4  # chunked prefills

    def one(i: int) -> Any:
        text, n = work[i]
        params = {"max_new_tokens": n}
        if i % 10 == 7:  # cancelled mid-run: the stream is closed after its first delta
            stream = p.stream("lm", "text-generation", text, {"max_new_tokens": 100})
            first = next(iter(stream))
            stream.close()
            return ("cancelled", first)
        if i in stops:
            return ("stop", p.run("lm", "text-generation", text, stops[i]["params"]))
        if i % 10 == 4:  # a request of two prompts: two rows that may run apart
            j = (i + 1) % len(work)
            both = p.run("lm", "text-generation", [text, work[j][0]], params)
            return ("pair", both)
        if i % 3 == 0:  # streamed: deltas concatenate to the text
            deltas = list(p.stream("lm", "text-generation", text, params))
            return ("stream", "".join(deltas))
        return ("run", p.run("lm", "text-generation", text, params))

    steps_before = sched.batches
    with ThreadPoolExecutor(16) as pool:  # more clients than slots: rows wait, join and leave all the time
        got = list(pool.map(one, range(len(work))))
    idle(p)
    assert sched.batches - steps_before > 200
    assert max(sched.last_batch_sizes) == SLOTS
    checked = 0
    for i, (kind, value) in enumerate(got):
        if kind == "cancelled":
            assert isinstance(value, str)
            continue
        if kind == "pair":
            j = (i + 1) % len(work)
            assert value[0] == expected[i], i
            assert value[1] == reference(model, work[j][0], work[i][1]), i
        elif kind == "stop":
            assert value == stops[i]["want"], i
        elif kind == "stream":
            assert value == expected[i]["generated_text"], i
        else:
            assert value == expected[i], i
        checked += 1
    assert checked >= 170


def test_seeded_sampling_is_reproducible_alone_or_in_a_crowd(served) -> None:
    p = served
    params = {"max_new_tokens": 16, "temperature": 1.3, "top_k": 40, "top_p": 0.9, "seed": 1234}
    alone = p.run("lm", "text-generation", "Alice lives in", params)
    others = [("Hello", {"max_new_tokens": 20, "temperature": 0.7, "seed": i}) for i in range(8)]
    with ThreadPoolExecutor(9) as pool:
        futs = [pool.submit(p.run, "lm", "text-generation", t, q) for t, q in others]
        crowd = pool.submit(p.run, "lm", "text-generation", "Alice lives in", params)
        [f.result() for f in futs]
    assert crowd.result() == alone
    other_seed = p.run("lm", "text-generation", "Alice lives in", {**params, "seed": 99})
    assert other_seed["generated_text"] != alone["generated_text"]
    greedy = p.run("lm", "text-generation", "Alice lives in", {"max_new_tokens": 16})
    assert greedy == reference(p.manager.get("lm").model, "Alice lives in", 16)
    idle(p)


def test_stop_strings_match_the_static_path(served, tiny_models: dict[str, Path]) -> None:
    p = served
    full = p.run("lm", "text-generation", "Hello", {"max_new_tokens": 12})["generated_text"]
    stop = full[4:6]
    params = {"max_new_tokens": 12, "stop": [stop, "zzzz"]}
    res = p.run("lm", "text-generation", "Hello", params)
    streamed = "".join(p.stream("lm", "text-generation", "Hello", params))
    with Provider(
        [spec(tiny_models["decoder"], "static")], settings=load_settings({"metrics_enabled": False})
    ) as static:
        assert static.manager.get("lm").scheduler.engine is None
        assert res == static.run("lm", "text-generation", "Hello", params)
    assert res["finish_reason"] == "stop" and res["generated_text"] == full[: full.find(stop)]
    assert streamed == res["generated_text"]


def test_a_failing_step_fails_its_rows_with_the_real_error_and_serving_goes_on(served) -> None:
    p = served
    engine = p.manager.get("lm").scheduler.engine
    real = engine._run
    calls = {"n": 0}

    def broken(*a: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("device fell over")
        return real(*a)

    engine._run = broken
    try:
        with pytest.raises(RuntimeError, match="device fell over"):
            p.run("lm", "text-generation", "Hello", {"max_new_tokens": 5})
    finally:
        del engine._run
    idle(p)
    assert p.run("lm", "text-generation", "Hello", {"max_new_tokens": 5}) == reference(
        p.manager.get("lm").model, "Hello", 5
    )


def test_the_kv_cache_is_accounted_and_sized_to_the_budget(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["decoder"]
    with Provider([spec(path)], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("lm")
        e = p.manager.get("lm")
        kv = e.scheduler.engine.cache
        per_slot = SlotCache.nbytes(_shapes(kv), 1, kv.max_len, torch.float32)
        # The slots and one scratch row (padding rows of bucketed decode steps write there).
        assert e.accounted_bytes == e.model.weight_bytes + e.working_bytes + per_slot * (SLOTS + 1)
        room_for_two = e.model.weight_bytes + e.working_bytes + 3 * per_slot + per_slot // 2
    settings = load_settings({"metrics_enabled": False, "memory": {"host_budget": room_for_two}})
    with Provider([spec(path)], settings=settings) as p:
        p.load("lm")
        e = p.manager.get("lm")
        assert e.scheduler.engine.slots == 2
        assert p.manager.accountant.used("host") <= room_for_two
        texts = [f"word {i}" for i in range(5)]
        with ThreadPoolExecutor(5) as pool:
            res = list(pool.map(lambda t: p.run("lm", "text-generation", t, {"max_new_tokens": 6}), texts))
        assert [r for r in res] == [reference(e.model, t, 6) for t in texts]


def _shapes(cache: SlotCache) -> list[Any]:
    from hf_provider.runtime.continuous.cache import LayerShape

    return [LayerShape(int(layer.keys.shape[1]), int(layer.keys.shape[3])) for layer in cache.layers]


def test_auto_on_cpu_is_static_for_decoders_and_continuous_for_encoder_decoders(
    tiny_models: dict[str, Path],
) -> None:
    def t5(name: str, tasks: list[str], mode: str) -> ModelSpec:
        return ModelSpec(
            name=name, source=str(tiny_models["t5"]), device="cpu", tasks=tasks, batching={"generation": mode}
        )

    with Provider(
        [
            spec(tiny_models["decoder"], "auto"),
            t5("one", ["text2text-generation"], "auto"),
            t5("many", ["translation", "summarization"], "auto"),
            t5("off", ["translation", "summarization"], "static"),
        ],
        settings=load_settings({"metrics_enabled": False}),
    ) as p:
        for name in ("lm", "one", "many", "off"):
            p.load(name)
        assert p.manager.get("lm").scheduler.engine is None
        assert type(p.manager.get("one").scheduler.engine).__name__ == "Seq2SeqEngine"
        assert type(p.manager.get("many").scheduler.engine).__name__ == "Seq2SeqEngine"
        assert p.manager.get("off").scheduler.engine is None
        assert "generated_text" in p.run("one", "text2text-generation", "hello", {"max_new_tokens": 3})
        assert "summary_text" in p.run("many", "summarization", "hello", {"max_new_tokens": 3})


def test_bucketed_decode_steps_change_no_token(served) -> None:
    """The padded steps CUDA graphs replay (graphs.py), run eagerly on the CPU: padding rows, the scratch row and
    the in-step mask leave every row's tokens as `generate` makes them."""
    from hf_provider.runtime.continuous.graphs import DecodeGraphs

    p = served
    engine = p.manager.get("lm").scheduler.engine
    model = p.manager.get("lm").model
    graphs = DecodeGraphs(engine, capture=False)
    assert graphs.prepare() == len(graphs.buckets()) == 8  # rows 1, 2, 4, 6 x keys 128, 256
    work = prompts(40, seed=5)
    engine.graphs = graphs
    try:
        with ThreadPoolExecutor(9) as pool:
            got = list(
                pool.map(lambda w: p.run("lm", "text-generation", w[0], {"max_new_tokens": w[1]}), work)
            )
    finally:
        engine.graphs = None
    assert got == [reference(model, text, n) for text, n in work]
    assert {k for k, s in graphs.steps.items() if s is not None} == set(graphs.buckets())
    idle(p)


def test_a_request_longer_than_a_slot_is_refused_with_400(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hf_provider.errors import InvalidInput
    from hf_provider.runtime import continuous

    monkeypatch.setattr(continuous, "MAX_SLOT_LEN", 64)  # as a long-context model's slots are capped
    with Provider([spec(tiny_models["decoder"])], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("lm")
        assert p.manager.get("lm").scheduler.engine.max_len == 64
        with pytest.raises(InvalidInput, match="continuous-batching slot"):
            p.run("lm", "text-generation", "Hello", {"max_new_tokens": 100})
        assert p.run("lm", "text-generation", "Hello", {"max_new_tokens": 5}) == reference(
            p.manager.get("lm").model, "Hello", 5
        )


def test_another_task_of_the_model_runs_beside_the_engine(tiny_models: dict[str, Path]) -> None:
    """A decoder also serving embeddings: those requests run through the stage runner on the engine's thread,
    between steps, with the same results as on static batching."""
    both = ["text-generation", "embeddings"]
    settings = load_settings({"metrics_enabled": False})
    texts = ["a cat", "a kitten sat on the mat"]
    with Provider(
        [spec(tiny_models["decoder"], "static").model_copy(update={"tasks": both})], settings=settings
    ) as p:
        want = p.run("lm", "embeddings", texts)
    with Provider([spec(tiny_models["decoder"]).model_copy(update={"tasks": both})], settings=settings) as p:
        p.load("lm")
        assert p.manager.get("lm").scheduler.engine is not None
        with ThreadPoolExecutor(3) as pool:
            gen = pool.submit(p.run, "lm", "text-generation", "Hello", {"max_new_tokens": 20})
            got = [pool.submit(p.run, "lm", "embeddings", texts) for _ in range(2)]
            assert gen.result() == reference(p.manager.get("lm").model, "Hello", 20)
            for g in got:
                assert np.allclose(np.asarray(g.result()), np.asarray(want), atol=1e-5)
