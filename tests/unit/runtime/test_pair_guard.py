"""optimize's accuracy guard on the pair tasks: cross-encoder and NLI heads are judged as classification (a
one-label head through its sigmoid), cosine rerank and score as embeddings; a perturbed head is refused."""

from __future__ import annotations

import pytest
import torch

from hf_provider.optimize import guard


@pytest.mark.parametrize(
    ("name", "task", "family"),
    [
        ("bert-rerank", "rerank", "classification"),
        ("bert-rerank", "score", "classification"),
        ("bert-nli", "zero-shot-classification", "classification"),
        ("minilm", "rerank", "embeddings"),
        ("minilm", "score", "embeddings"),
    ],
)
def test_eager_passes_its_own_guard(handler, name: str, task: str, family: str) -> None:
    h = handler(name, task)
    assert guard.family(h) == family
    verdict = guard.check(h, guard.reference(h))
    assert verdict.accepted, verdict


def test_a_one_label_head_is_judged_by_its_sigmoid() -> None:
    mask = torch.ones(3, 4, dtype=torch.long)
    batch = {"inputs": {"attention_mask": mask}}
    logits = torch.tensor([[2.0], [-1.0], [0.1]])
    (probs,) = guard._probabilities(batch, logits)
    assert probs.shape == (3, 2)
    assert probs[:, 1].tolist() == pytest.approx(torch.sigmoid(logits[:, 0]).tolist())
    moved = guard._probabilities(batch, logits + torch.tensor([[0.0], [0.0], [-0.3]]))
    verdict = guard.judge("classification", [probs], moved)
    assert not verdict.accepted  # 0.1 -> -0.2 flips the top class of the third row
