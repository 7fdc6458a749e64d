"""Per-row logits processing (runtime/tasks/rowlogits.py): OpenAI's penalty and bias arithmetic, per row of a
batch, and logprobs read from the scores sampled from."""

from __future__ import annotations

import math

import pytest
import torch

from hf_provider.errors import InvalidInput
from hf_provider.runtime.tasks import genparams
from hf_provider.runtime.tasks.rowlogits import LOGPROB_FLOOR, RowLogits, RowsProcessor, record_scores


def _gp(**kw: object) -> genparams.GenParams:
    return genparams.resolve(kw, 64, vocab=6)


def test_penalties_are_openais_additive_ones_over_the_generated_tokens() -> None:
    row = RowLogits(_gp(presence_penalty=0.5, frequency_penalty=0.25))
    scores = torch.zeros(6)
    assert torch.equal(row.process(scores), scores)  # nothing generated yet
    for t in (2, 2, 4):
        row.accept(t, 6)
    expected = torch.tensor([0, 0, -(0.5 + 2 * 0.25), 0, -(0.5 + 0.25), 0])
    torch.testing.assert_close(row.process(scores), expected)


def test_logit_bias_adds_to_the_named_tokens_only() -> None:
    row = RowLogits(_gp(logit_bias={"1": 100, "3": -100.0}))
    out = row.process(torch.ones(6))
    torch.testing.assert_close(out, torch.tensor([1.0, 101, 1, -99, 1, 1]))


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"logit_bias": {"6": 1}}, "logit_bias"),  # outside the vocabulary
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"1": True}}, "logit_bias"),
        ({"logit_bias": [1]}, "logit_bias"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": "1"}, "frequency_penalty"),
        ({"logprobs": 21}, "logprobs"),
        ({"logprobs": -1}, "logprobs"),
    ],
)
def test_bad_values_are_refused_by_name(params: dict, name: str) -> None:
    with pytest.raises(InvalidInput) as e:
        _gp(**params)
    assert e.value.param == name


def test_rows_of_one_batch_are_processed_apart() -> None:
    biased = RowLogits(_gp(logit_bias={"0": 5}))
    proc = RowsProcessor([None, biased], start=2)
    scores = torch.zeros(2, 6)
    out = proc(torch.tensor([[9, 9], [9, 9]]), scores)
    assert torch.equal(out[0], torch.zeros(6)) and out[1, 0] == 5 and torch.equal(scores, torch.zeros(2, 6))


def test_logprobs_are_read_from_the_scores_sampled_from_and_minus_inf_is_floored() -> None:
    row = RowLogits(_gp(logprobs=2))
    scores = torch.tensor([[2.0, 1.0, float("-inf"), 0.0, 0.0, 0.0]])
    record_scores([row], (scores, scores), torch.tensor([[0, 2]]))
    out = row.result(_Tok(), n=2, eos=set())
    lp = torch.log_softmax(scores[0], -1)
    assert out["logprobs"][0]["logprob"] == pytest.approx(lp[0].item())
    assert out["logprobs"][1]["logprob"] == LOGPROB_FLOOR and math.isfinite(out["logprob_sum"])
    assert [t["id"] for t in out["logprobs"][0]["top"]] == [0, 1]


def test_an_end_of_sequence_token_counts_in_the_sum_but_is_not_listed() -> None:
    row = RowLogits(_gp(logprobs=0))
    s = torch.zeros(1, 6)
    record_scores([row], (s, s, s), torch.tensor([[1, 5, 0]]))
    out = row.result(_Tok(), n=2, eos={5})  # the third step is padding after the row ended
    assert [e["id"] for e in out["logprobs"]] == [1] and out["scored_tokens"] == 2
    assert out["logprob_sum"] == pytest.approx(2 * math.log(1 / 6))


class _Tok:
    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(f"<{i}>" for i in ids)
