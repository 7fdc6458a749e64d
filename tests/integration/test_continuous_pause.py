"""Pausing and resuming rows of the decoder engine (runtime/continuous/engine.py): a paused row's keys and values
leave its slot and come back into another one, nothing recomputed, and its text is still token-identical to
`generate` alone; rows that stay keep decoding meanwhile; a prefilling row is moved out of the way."""

from __future__ import annotations

from pathlib import Path

import torch
from tests.integration.test_continuous_generation import reference

from hf_provider.provider import Provider
from hf_provider.runtime import continuous
from hf_provider.runtime.tasks.genparams import GenParams
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.rows import RecordingRow


def test_paused_rows_resume_exactly_while_others_decode_and_prefill(tiny_models: dict[str, Path]) -> None:
    spec = ModelSpec(
        name="lm",
        source=str(tiny_models["decoder"]),
        device="cpu",
        tasks=["text-generation"],
        batching={"generation": "static", "max_batch_size": 3},
    )
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        p.load("lm")
        model = p.manager.entry("lm").model
        model.spec.batching.generation = "continuous"
        prepared = continuous.prepare(model)
        assert prepared is not None
        eng = prepared.build()
        assert eng is not None
        tok = model.tokenizer
        texts = [
            "the harbour was rebuilt after the storm",
            "Alice lives in Rome",
            "one two three",
            "blue river",
        ]
        rows = [RecordingRow() for _ in texts]
        gp = GenParams(max_new_tokens=14)
        with torch.inference_mode():
            a = eng.add(tok(texts[0])["input_ids"], gp, rows[0])
            b = eng.add(tok(texts[1])["input_ids"], gp, rows[1])
            for _ in range(3):
                eng.step()
            assert not eng.pause(12345) and eng.pause(a) and eng.paused == [a]
            c = eng.add(tok(texts[2])["input_ids"], gp, rows[2])
            d = eng.add(tok(texts[3])["input_ids"], gp, rows[3])  # fills the slot a left
            assert eng.free_slots == 0 and not eng.resume(a)  # no slot: it stays paused
            eng.step()
            assert eng.pause(b)
            assert eng.resume(a)  # back while c and d are prefilling or decoding
            eng.policy.check()
            while eng.busy:
                eng.step()
                eng.policy.check()
            assert eng.resume(b)
            while eng.busy:
                eng.step()
        assert {c, d} and not eng.rows
        for text, row in zip(texts, rows, strict=True):
            assert row.result == reference(model, text, 14)
