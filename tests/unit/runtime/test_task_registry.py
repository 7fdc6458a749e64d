from __future__ import annotations

import pytest

from hf_provider.errors import TaskNotSupported
from hf_provider.runtime.tasks import HANDLERS, build_handler, supported_tasks
from hf_provider.spec import TASKS

EXPECTED = {
    "t5": ["embeddings", "text2text-generation", "translation", "summarization", "question-answering"],
    "decoder": ["embeddings", "text-generation"],
    "bert-cls": ["embeddings", "text-classification"],
    "bert-ner": ["embeddings", "token-classification"],
    "bert-mlm": ["embeddings", "fill-mask"],
    "bert-qa": ["embeddings", "question-answering"],
    "bert-rerank": ["embeddings", "text-classification", "rerank", "score"],
    "bert-nli": ["embeddings", "text-classification", "zero-shot-classification"],
    "minilm": ["embeddings", "rerank", "score"],  # rerank and score by cosine, when asked
    "whisper": ["automatic-speech-recognition"],  # a speech model: no text task claims it
}


def test_every_spec_task_has_a_handler() -> None:
    assert set(HANDLERS) == set(TASKS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_supported_tasks_follow_architecture(loaded, name: str) -> None:
    assert supported_tasks(loaded(name)) == EXPECTED[name]


def test_unsupported_task_names_reason_and_alternatives(loaded) -> None:
    with pytest.raises(TaskNotSupported) as e:
        build_handler("fill-mask", loaded("decoder"))
    assert e.value.supported == ["embeddings", "text-generation"]
    assert "ForMaskedLM" in str(e.value) and e.value.task == "fill-mask"
    with pytest.raises(TaskNotSupported, match="encoder-decoder"):
        build_handler("text-generation", loaded("t5"))
    with pytest.raises(TaskNotSupported, match="unknown task"):
        build_handler("dance", loaded("t5"))
