"""Iteration-level generation for encoder-decoder models (runtime/continuous/seq2seq.py) through the Provider,
on a tiny T5 and a tiny BART whose decoders depend on their history (testing.build_seq2seq_varied): greedy
outputs token-identical to `generate` one request at a time while rows of several tasks join, leave, pause and
resume; seeded sampling reproducible; batch-priority rows pause for interactive ones; per-task defaults."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import TINY_CACHE

from hf_provider.provider import Provider
from hf_provider.runtime.continuous import Seq2SeqEngine, check_seq2seq
from hf_provider.runtime.tasks.genparams import GenParams
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_seq2seq_varied
from hf_provider.testing.rows import RecordingRow

WORDS = [
    "the",
    "harbour",
    "was",
    "rebuilt",
    "after",
    "storm",
    "Alice",
    "lives",
    "in",
    "Rome",
    "weather",
    "great",
    "today",
    "one",
    "two",
    "three",
    "blue",
    "green",
]
TASKS = ("translation", "summarization", "text2text-generation")
T5_PREFIX = {"translation": "translate English to German: ", "summarization": "summarize: "}
OUT = {
    "translation": "translation_text",
    "summarization": "summary_text",
    "text2text-generation": "generated_text",
}


@pytest.fixture(scope="module")
def varied() -> dict[str, Path]:
    return build_seq2seq_varied(TINY_CACHE)


def _spec(path: Path, name: str = "s2s", **kw: Any) -> ModelSpec:
    batching = {"generation": "continuous", "max_batch_size": 6, **kw.pop("batching", {})}
    return ModelSpec(name=name, source=str(path), device="cpu", batching=batching, **kw)


def _provider(*specs: ModelSpec) -> Provider:
    return Provider(list(specs), settings=load_settings({"metrics_enabled": False}))


def reference(model: Any, text: str, max_new: int) -> str:
    """`generate` on the prompt alone (no padding), read the way the static path reads it."""
    tok = model.tokenizer
    ids = tok(text)["input_ids"]
    with torch.inference_mode():
        out = model.module.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=1,
        )
    seq = out[0, 1:].tolist()
    cut = next((i for i, t in enumerate(seq) if t in {tok.eos_token_id}), None)
    return tok.decode(seq if cut is None else seq[:cut], skip_special_tokens=True)


def _requests(n: int, seed: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    return [
        (TASKS[i % 3], " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 20))), rng.randrange(1, 20))
        for i in range(n)
    ]


@pytest.mark.parametrize(("kind", "cross_task"), [("t5-varied", True), ("t5-varied", False), ("bart", True)])
def test_mixed_tasks_with_staggered_arrivals_match_generate_token_for_token(
    varied: dict[str, Path], kind: str, cross_task: bool
) -> None:
    reqs = _requests(40 if kind == "t5-varied" and cross_task else 18, seed=1)
    spec = _spec(varied[kind], batching={"cross_task": cross_task})
    with _provider(spec) as p:
        p.load("s2s")
        sched = p.manager.entry("s2s").scheduler
        assert isinstance(sched.engine, Seq2SeqEngine)
        delays = random.Random(2)

        def run(r: tuple[str, str, int]) -> Any:
            time.sleep(delays.random() * 0.03)  # staggered arrivals: rows join a running batch
            return p.run("s2s", r[0], r[1], {"max_new_tokens": r[2]})

        with ThreadPoolExecutor(8) as ex:
            outs = list(ex.map(run, reqs))
        model = p.manager.entry("s2s").model
        prefix = T5_PREFIX if kind.startswith("t5") else {}
        for (task, text, n), out in zip(reqs, outs, strict=True):
            assert out[OUT[task]] == reference(model, prefix.get(task, "") + text, n)
            # each row answers as its own task does: text2text with its finish reason and token counts
            details = {"finish_reason", "prompt_tokens", "completion_tokens"}
            assert set(out) == ({OUT[task]} | details if task == "text2text-generation" else {OUT[task]})
        assert sched.engine.stats["decode_rows"] > sched.engine.stats["decode_steps"]  # rows shared steps
        assert not sched.engine.rows and sched.in_flight == 0


class _Handler:
    task = "text2text-generation"

    @staticmethod
    def result(row: dict[str, Any], out: str | None = None) -> dict[str, Any]:
        return row


def _engine(p: Provider) -> Seq2SeqEngine:
    e = p.manager.entry("s2s")
    return Seq2SeqEngine(e.model, slots=4)


def test_a_paused_row_resumes_where_it_stopped_and_a_cancelled_paused_row_leaves(
    varied: dict[str, Path],
) -> None:
    with _provider(_spec(varied["t5-varied"], batching={"generation": "static"})) as p:
        p.load("s2s")
        eng = _engine(p)
        model = eng.model
        texts = [
            "the harbour was rebuilt after storm",
            "Alice lives in Rome",
            "one two three blue green river",
        ]
        rows = [RecordingRow() for _ in texts]
        rids = [
            eng.add(
                model.tokenizer(t)["input_ids"],
                GenParams(max_new_tokens=12),
                r,
                handler=_Handler,
                out_key="x",
            )
            for t, r in zip(texts, rows, strict=True)
        ]
        with torch.inference_mode():
            for _ in range(3):
                eng.step()
            assert eng.pause(rids[0]) and not eng.pause(rids[0])  # twice: already paused
            assert eng.free_slots == 4 - 2 and eng.paused == [rids[0]]
            for _ in range(4):
                eng.step()  # the others go on without it
            assert eng.pause(rids[2]) and eng.resume(rids[0])
            rows[2].stop = "cancelled"  # a paused row whose request ends leaves at the next step
            while eng.busy:
                eng.step()
        assert rows[0].result["text"] == reference(model, texts[0], 12)
        assert rows[1].result["text"] == reference(model, texts[1], 12)
        assert rows[2].result is None and not eng.rows and not eng.groups


def test_absolute_positions_per_row_are_what_makes_bart_exact(varied: dict[str, Path]) -> None:
    with _provider(_spec(varied["bart"], batching={"generation": "static"})) as p:
        p.load("s2s")
        eng = _engine(p)
        assert check_seq2seq(eng) is None
        broken = _engine(p)
        broken._hook.remove()  # BART's decoder would compute one position for the whole batch
        assert "differ" in (check_seq2seq(broken) or "")


def test_seeded_sampling_gives_the_same_text_alone_and_in_a_crowd(varied: dict[str, Path]) -> None:
    params = {"max_new_tokens": 10, "do_sample": True, "temperature": 1.5, "seed": 7}
    with _provider(_spec(varied["t5-varied"])) as p:
        p.load("s2s")
        alone = p.run("s2s", "translation", "the harbour was rebuilt", params)
        with ThreadPoolExecutor(6) as ex:
            crowd = [ex.submit(p.run, "s2s", "summarization", w, {"max_new_tokens": 15}) for w in WORDS[:5]]
            again = p.run("s2s", "translation", "the harbour was rebuilt", params)
            [f.result() for f in crowd]
        assert alone == again


def test_batch_priority_rows_pause_for_interactive_ones_and_still_answer_exactly(
    varied: dict[str, Path],
) -> None:
    spec = _spec(
        varied["t5-varied"], task_priority={"summarization": "batch"}, batching={"max_batch_size": 4}
    )
    with _provider(spec) as p:
        p.load("s2s")
        sched = p.manager.entry("s2s").scheduler
        model = p.manager.entry("s2s").model
        bulk = [
            p.submit("s2s", "summarization", w + " harbour storm", {"max_new_tokens": 40}) for w in WORDS[:4]
        ]
        assert all(r.priority == 1 for r in bulk)  # the task's default priority
        deadline = time.monotonic() + 30
        while sched.engine.running < 4 and time.monotonic() < deadline:
            time.sleep(0.002)  # wait until the bulk rows hold every slot
        fast = p.run("s2s", "translation", "Alice lives in Rome", {"max_new_tokens": 6})
        overridden = p.submit(
            "s2s", "summarization", "one two", {"max_new_tokens": 3}, priority="interactive"
        )
        assert overridden.priority == 0  # X-Priority / priority= overrides the task's default
        results = [r.future.result(30) for r in bulk]
        overridden.future.result(30)
        assert sched.engine.stats["pauses"] >= 1
        assert fast == {
            "translation_text": reference(model, T5_PREFIX["translation"] + "Alice lives in Rome", 6)
        }
        for w, res in zip(WORDS[:4], results, strict=True):
            assert res == {
                "summary_text": reference(model, T5_PREFIX["summarization"] + w + " harbour storm", 40)
            }
        desc = {m["name"]: m for m in p.admin.describe()}["s2s"]
        assert desc["task_priority"] == {"summarization": "batch"} and desc["tasks_load"] == {}


def test_static_batches_mix_seq2seq_tasks_only_with_cross_task_on(varied: dict[str, Path]) -> None:
    for cross in (True, False):
        spec = _spec(varied["t5-varied"], batching={"generation": "static", "cross_task": cross})
        with _provider(spec) as p:
            p.load("s2s")
            sched = p.manager.entry("s2s").scheduler
            h = p.manager.entry("s2s").model.handlers
            a = sched.submit(
                h["translation"], *_parsed(h["translation"], "Alice lives"), single=False, priority=0
            )
            b = sched.submit(
                h["summarization"], *_parsed(h["summarization"], "Alice lives"), single=False, priority=0
            )
            assert (a.key == b.key) is cross
            ra, rb = a.future.result(30), b.future.result(30)
            model = p.manager.entry("s2s").model
            assert ra == [{"translation_text": reference(model, T5_PREFIX["translation"] + "Alice lives", 8)}]
            assert rb == [{"summary_text": reference(model, T5_PREFIX["summarization"] + "Alice lives", 8)}]


def _parsed(handler: Any, text: str) -> tuple[list[Any], dict[str, Any]]:
    items, params, _ = handler.parse([text], {"max_new_tokens": 8})
    return items, params


def test_a_row_paused_before_its_prefill_waits_for_it(varied: dict[str, Path]) -> None:
    with _provider(_spec(varied["t5-varied"], batching={"generation": "static"})) as p:
        p.load("s2s")
        eng = _engine(p)
        tok = eng.model.tokenizer
        rows = [RecordingRow(), RecordingRow()]
        a = eng.add(
            tok("Alice lives in Rome")["input_ids"],
            GenParams(max_new_tokens=6),
            rows[0],
            handler=_Handler,
            out_key="x",
        )
        b = eng.add(
            tok("blue river")["input_ids"],
            GenParams(max_new_tokens=6),
            rows[1],
            handler=_Handler,
            out_key="x",
        )
        assert eng.pause(b)
        with torch.inference_mode():
            while eng.busy:
                eng.step()
            assert rows[0].result is not None and rows[1].tokens == 0  # b computed nothing while paused
            assert eng.resume(b) and eng.busy
            while eng.busy:
                eng.step()
        assert rows[1].result["text"] == reference(eng.model, "blue river", 6) and a != b


def test_decoding_threads_are_measured_or_configured_and_outputs_stay_exact(varied: dict[str, Path]) -> None:
    from hf_provider.scheduling.threads import process_threads

    auto, one = _spec(varied["t5-varied"]), _spec(varied["t5-varied"], name="one", cpu_threads=1)
    with _provider(auto, one) as p:
        p.load("s2s")
        p.load("one")
        model = p.manager.entry("s2s").model
        choice = p.manager.entry("s2s").scheduler.cpu_threads
        # one request at a time: every step has one row, so the auto model's steps pair up (1 thread against
        # the process's count) until it decides; outputs are exact on either count
        for w in WORDS:
            text = f"{w} lives in Rome after the storm"
            want = {"translation_text": reference(model, T5_PREFIX["translation"] + text, 24)}
            assert p.run("s2s", "translation", text, {"max_new_tokens": 24}) == want
            assert p.run("one", "translation", text, {"max_new_tokens": 24}) == want
            if choice()["decoding"] is not None:
                break
        views = {m["name"]: m["cpu_threads"] for m in p.admin.describe()}
    default = process_threads()
    assert views["s2s"]["setting"] == "auto" and views["s2s"]["forward"] == default
    if default > 1:
        how = views["s2s"]["decoding_how"]
        assert views["s2s"]["decoding"] in (1, default) and how.startswith("measured")
    assert views["one"] == {"setting": 1, "forward": 1, "decoding": 1, "decoding_how": "configured"}


@pytest.mark.parametrize(
    ("shares", "with_translation"),
    [
        ({"translation": 3, "summarization": 1}, False),
        ({"translation": 3, "summarization": 1}, True),
        ({}, False),
    ],
    ids=["held", "joins-a-prefill", "no-shares"],
)
def test_a_smaller_shares_items_join_a_larger_shares_running_rows_late_and_together(
    varied: dict[str, Path], shares: dict[str, int], with_translation: bool
) -> None:
    """While a translation row (3 shares) decodes, summarization's items (1 share) wait to join: HOLD_STEPS steps,
    then all in one prefill; or sooner, in the prefill of as many translation items queued with them."""
    from hf_provider.scheduling.continuous import HOLD_STEPS

    spec = _spec(varied["t5-varied"], task_share=shares, batching={"max_batch_size": 8})  # room for 7 joiners
    with _provider(spec) as p:
        p.load("s2s")
        sched = p.manager.entry("s2s").scheduler
        eng, model = sched.engine, p.manager.entry("s2s").model
        prefills: list[tuple[int, list[str]]] = []  # (the engine's step count, the tasks prefilled)
        real = eng._prefill

        def prefill() -> int:
            prefills.append((eng.steps, [eng.rows[r].task for r in eng.new if not eng.rows[r].paused]))
            return real()

        eng._prefill = prefill  # type: ignore[method-assign]
        long = p.submit("s2s", "translation", "Alice lives in Rome", {"max_new_tokens": 60})
        deadline = time.monotonic() + 30

        def decoding() -> bool:  # translation's row joined two steps ago or more
            return any("translation" in tasks and eng.steps >= s + 2 for s, tasks in list(prefills))

        while not decoding() and time.monotonic() < deadline:
            time.sleep(0.001)
        texts = ["one two harbour", "blue green storm", "the harbour was rebuilt"]
        with sched.pending.cv:  # the loop decides nothing until both are queued
            pushed = eng.steps
            bulk = p.submit("s2s", "summarization", texts, {"max_new_tokens": 5})
            short = p.submit("s2s", "translation", texts, {"max_new_tokens": 4}) if with_translation else None
        results = bulk.future.result(30)
        joined = [(s, tasks) for s, tasks in prefills if "summarization" in tasks]
        started = next(s for s, tasks in prefills if "translation" in tasks)
        assert len(joined) == 1  # one prefill for the three rows
        (step, tasks) = joined[0]
        assert step < started + 59  # the translation row still ran when summarization joined
        waited = step - pushed
        if with_translation:
            assert tasks.count("translation") == 3 and waited <= 2  # joined the translation items' prefill
        elif shares:
            assert HOLD_STEPS - 1 <= waited <= HOLD_STEPS + 2  # held, but bounded
        else:
            assert waited <= 2  # without shares: the next step
        assert long.future.result(30) == {
            "translation_text": reference(model, T5_PREFIX["translation"] + "Alice lives in Rome", 60)
        }
        if short is not None:
            assert short.future.result(30) == [
                {"translation_text": reference(model, T5_PREFIX["translation"] + t, 4)} for t in texts
            ]
        assert results == [
            {"summary_text": reference(model, T5_PREFIX["summarization"] + t, 5)} for t in texts
        ]


def test_a_held_request_that_is_cancelled_or_times_out_is_settled_once_and_never_prefilled(
    varied: dict[str, Path],
) -> None:
    from hf_provider.errors import Cancelled, DeadlineExceeded

    spec = _spec(varied["t5-varied"], task_share={"translation": 3})
    with _provider(spec) as p:
        p.load("s2s")
        sched = p.manager.entry("s2s").scheduler
        eng, model = sched.engine, p.manager.entry("s2s").model
        prefilled: list[str] = []
        real = eng._prefill

        def prefill() -> int:
            prefilled.extend(eng.rows[r].task for r in eng.new if not eng.rows[r].paused)
            return real()

        eng._prefill = prefill  # type: ignore[method-assign]
        long = p.submit("s2s", "translation", "Alice lives in Rome", {"max_new_tokens": 60})
        deadline = time.monotonic() + 30
        while "translation" not in prefilled and time.monotonic() < deadline:
            time.sleep(0.001)
        with sched.pending.cv:  # both are queued, and held, before the loop decides again
            gone = p.submit("s2s", "summarization", "one two harbour", {"max_new_tokens": 5})
            late = p.submit("s2s", "summarization", "blue green storm", {"max_new_tokens": 5}, timeout=0.001)
            assert sched.pending.queue.task_counts() == {"summarization": 2}
            assert gone.cancel(sched.clock())
        with pytest.raises(Cancelled):
            gone.future.result(30)
        with pytest.raises(DeadlineExceeded):
            late.future.result(30)
        assert (gone.outcome, late.outcome) == ("cancelled", "timed_out")
        assert long.future.result(30) == {
            "translation_text": reference(model, T5_PREFIX["translation"] + "Alice lives in Rome", 60)
        }
        assert "summarization" not in prefilled  # neither ever took a row
        assert sched.in_flight == 0 and not sched.pending.queue.task_counts() and not eng.rows
