"""Models built from the same tokenizer files share one tokenizer, its lock and its fast encoder (a swap's
candidate builds none); a change to any tokenizer or config file gives a model its own."""

from __future__ import annotations

import gc
import json
import logging
import shutil
from pathlib import Path

import pytest

from hf_provider.runtime import shared_tokenizers
from hf_provider.runtime.loader import load_model
from hf_provider.spec import ModelSpec


def _copy(src: Path, dst: Path, readme: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "README.md").write_text(readme)  # another revision: same tokenizer, other bytes elsewhere
    return dst


def _load(path: Path):
    return load_model(ModelSpec(name=path.name, source=str(path), device="cpu"))


@pytest.mark.parametrize("name", ["bert-cls", "minilm"])
def test_two_revisions_with_the_same_tokenizer_files_share_it(
    name: str, tiny_models: dict[str, Path], minilm_path: Path, tmp_path: Path
) -> None:
    src = minilm_path if name == "minilm" else tiny_models[name]
    a = _load(_copy(src, tmp_path / "a", "one"))
    b_dir = tmp_path / "b"
    # a Hub snapshot: real folders, its files links to content-addressed blobs (same bytes, same resolved file)
    for f in (tmp_path / "a").rglob("*"):
        if f.is_file() and f.name != "README.md":
            link = b_dir / f.relative_to(tmp_path / "a")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f)
    (b_dir / "README.md").write_text("two")
    b = _load(b_dir)
    assert b.tokenizer is a.tokenizer and b.tokenizer_lock is a.tokenizer_lock
    assert b.fast_encoder is a.fast_encoder
    assert a.tokenizer(["same words"])["input_ids"] == b.tokenizer(["same words"])["input_ids"]


def test_a_changed_tokenizer_or_config_file_gets_its_own_tokenizer(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    a = _load(_copy(tiny_models["bert-cls"], tmp_path / "a", "one"))
    c_dir = _copy(tiny_models["bert-cls"], tmp_path / "c", "one")
    cfg = c_dir / "tokenizer_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_max_length": 77}))
    c = _load(c_dir)
    assert c.tokenizer is not a.tokenizer and c.tokenizer_lock is not a.tokenizer_lock
    assert c.tokenizer.model_max_length == 77 != a.tokenizer.model_max_length


def test_a_tokenizer_is_forgotten_with_the_last_model_that_uses_it(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    path = _copy(tiny_models["bert-cls"], tmp_path / "a", "one")
    key = shared_tokenizers.files_key(path, "auto-tokenizer/remote-code=False")
    m = _load(path)
    assert shared_tokenizers._by_key.get(key) is m.tokenizer
    del m
    gc.collect()
    assert shared_tokenizers._by_key.get(key) is None


def test_a_folder_that_cannot_be_read_is_not_shared(tmp_path: Path) -> None:
    assert shared_tokenizers.files_key(tmp_path / "missing", "k") == ("k", ())
    built = []
    assert shared_tokenizers.shared(None, lambda: built.append(1) or object()) is not None
    assert shared_tokenizers.shared(None, lambda: built.append(1) or object()) is not None
    assert len(built) == 2


@pytest.mark.parametrize("name", ["bert-cls", "minilm", "t5"])
def test_the_fast_encoder_gives_what_the_tokenizer_gives_one_text_or_many(name: str, loaded) -> None:
    # One text goes through `encode`, several through `encode_batch` (runtime/tasks/encoding.py): both must match
    # the transformers call, special tokens, type ids and offsets included.
    m = loaded(name)
    enc = m.fast_encoder
    assert enc is not None
    texts = ["Hello world.", "A longer sentence, with punctuation; and more words!", "a"]
    ref = m.tokenizer(texts, truncation=False, return_offsets_mapping=True)
    many = enc.encode(texts, offsets=True)
    for i, text in enumerate(texts):
        (one,) = enc.encode([text], offsets=True)
        assert one == many[i]
        assert one["input_ids"] == ref["input_ids"][i]
        assert one["offset_mapping"] == [tuple(o) for o in ref["offset_mapping"][i]]


def test_the_sentence_transformers_swap_passes_other_folders_through(
    minilm_path: Path, tmp_path: Path
) -> None:
    # Only the build the loader started (its folder) takes the shared tokenizer; any other call goes to the real
    # AutoProcessor, so a SentenceTransformer built elsewhere meanwhile never gets another model's tokenizer.
    from sentence_transformers.base.modules import transformer as st_transformer

    real = st_transformer.AutoProcessor
    key = shared_tokenizers.files_key(minilm_path, "k")
    with shared_tokenizers.sentence_transformer_processor(key, minilm_path):
        shim = st_transformer.AutoProcessor
        assert shim is not real
        mine = shim.from_pretrained(str(minilm_path))
        assert shim.from_pretrained(str(minilm_path)) is mine
        other = _copy(minilm_path, tmp_path / "other", "x")
        assert shim.from_pretrained(str(other)) is not mine
    assert st_transformer.AutoProcessor is real


def _handover_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == shared_tokenizers.__name__ and "own tokenizer" in r.message
    ]


def test_a_hand_over_that_does_not_apply_is_logged_once_per_process(
    minilm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(shared_tokenizers, "_told_no_handover", False)
    caplog.set_level(logging.INFO, logger=shared_tokenizers.__name__)
    _load(_copy(minilm_path, tmp_path / "a", "one"))
    assert _handover_logs(caplog) == []  # this sentence-transformers takes the hand-over: nothing to say
    # another sentence-transformers version, where the module we swap a name in has moved
    monkeypatch.setattr(shared_tokenizers, "_transformer_module", lambda: None)
    b = _load(_copy(minilm_path, tmp_path / "b", "two"))
    c = _load(_copy(minilm_path, tmp_path / "c", "three"))
    assert b.tokenizer is not c.tokenizer  # each built its own: the hand-over did not apply
    (record,) = _handover_logs(caplog)
    assert record.levelno == logging.WARNING and "has no sentence_transformers.base" in record.message


def test_a_build_that_never_asks_for_its_folder_is_logged_once(
    minilm_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # e.g. a checkpoint whose Transformer module lives in a subfolder: the shim passes the call through
    monkeypatch.setattr(shared_tokenizers, "_told_no_handover", False)
    caplog.set_level(logging.INFO, logger=shared_tokenizers.__name__)
    key = shared_tokenizers.files_key(minilm_path, "k")
    for _ in range(2):
        with shared_tokenizers.sentence_transformer_processor(key, minilm_path):
            pass
    (record,) = _handover_logs(caplog)
    assert "did not ask" in record.message
