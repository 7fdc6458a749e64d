"""The decoding state of encoder-decoder rows, batched: what `seq2seq.Seq2SeqEngine` steps.

A `Group` holds, for its rows, each decoder layer's self-attention keys and values (left-padded to the longest
row, so every row's newest token is the last column), the cross-attention keys and values and the encoder's
output (right-padded to the longest source), and the two masks. Rows leave (`keep`), are taken out whole to be
paused (`take`) and come back (`merge`) without recomputing anything: only padding changes.

Why padding is exact: the padded positions are masked out of every attention, T5's relative position bias
depends on the distance between a query and a key only (left padding shifts both alike), and for models with
absolute decoder positions (BART, Marian) the engine gives each row its own position (seq2seq.py), so each row
computes what `generate` computes for its prompt alone, up to float rounding of differently shaped matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(eq=False)
class Group:
    rids: list[int]
    self_k: list[torch.Tensor]  # per layer [rows, heads, L, head_dim]
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor]  # per layer [rows, heads, S, head_dim]
    cross_v: list[torch.Tensor]
    enc: torch.Tensor  # [rows, S, d_model]
    enc_mask: torch.Tensor  # [rows, S] long
    dec_mask: torch.Tensor  # [rows, L] long

    def __len__(self) -> int:
        return len(self.rids)

    @property
    def positions(self) -> torch.Tensor:
        """[rows, 1]: each row's position for its next decoder token (its real tokens so far)."""
        return self.dec_mask.sum(dim=1, keepdim=True)

    def keep(self, indices: list[int]) -> Group:
        """The rows at `indices` (in that order), with padding no row needs any more trimmed."""
        idx = torch.tensor(indices, device=self.enc.device)

        def sel(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.index_select(0, idx) for t in ts]

        g = Group(
            [self.rids[i] for i in indices],
            sel(self.self_k),
            sel(self.self_v),
            sel(self.cross_k),
            sel(self.cross_v),
            self.enc.index_select(0, idx),
            self.enc_mask.index_select(0, idx),
            self.dec_mask.index_select(0, idx),
        )
        return g.trimmed()

    def take(self, rid: int) -> tuple[Group, Group | None]:
        """Row `rid` alone, and the group without it (None when it was the only row)."""
        i = self.rids.index(rid)
        rest = [j for j in range(len(self.rids)) if j != i]
        return self.keep([i]), (self.keep(rest) if rest else None)

    def trimmed(self) -> Group:
        left = int(self.dec_mask.any(dim=0).long().argmax())  # first column some row uses
        right = int(self.enc_mask.any(dim=0).long().cumsum(0).argmax()) + 1  # one past the last one
        if left == 0 and right == self.enc_mask.shape[1]:
            return self
        return Group(
            self.rids,
            [t[:, :, left:] for t in self.self_k],
            [t[:, :, left:] for t in self.self_v],
            [t[:, :, :right] for t in self.cross_k],
            [t[:, :, :right] for t in self.cross_v],
            self.enc[:, :right],
            self.enc_mask[:, :right],
            self.dec_mask[:, left:],
        )

    def appended(self, self_k: list[torch.Tensor], self_v: list[torch.Tensor]) -> Group:
        """After a decode step: the self-attention caches grown by the token each row just fed."""
        ones = self.dec_mask.new_ones((len(self.rids), 1))
        return Group(
            self.rids,
            self_k,
            self_v,
            self.cross_k,
            self.cross_v,
            self.enc,
            self.enc_mask,
            torch.cat([self.dec_mask, ones], dim=1),
        )


def _pad(t: torch.Tensor, dim: int, size: int, *, left: bool) -> torch.Tensor:
    missing = size - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    z = t.new_zeros(shape)
    return torch.cat([z, t] if left else [t, z], dim=dim)


def merge(groups: list[Group]) -> Group:
    """One group of all the rows of `groups`, in order: self caches left-padded, sources right-padded."""
    if len(groups) == 1:
        return groups[0]
    L = max(g.dec_mask.shape[1] for g in groups)
    S = max(g.enc_mask.shape[1] for g in groups)
    layers = range(len(groups[0].self_k))

    def cat(get: str, dim: int, size: int, left: bool) -> list[torch.Tensor]:
        return [torch.cat([_pad(getattr(g, get)[i], dim, size, left=left) for g in groups]) for i in layers]

    return Group(
        [r for g in groups for r in g.rids],
        cat("self_k", 2, L, True),
        cat("self_v", 2, L, True),
        cat("cross_k", 2, S, False),
        cat("cross_v", 2, S, False),
        torch.cat([_pad(g.enc, 1, S, left=False) for g in groups]),
        torch.cat([_pad(g.enc_mask, 1, S, left=False) for g in groups]),
        torch.cat([_pad(g.dec_mask, 1, L, left=True) for g in groups]),
    )
