"""The KV cache of continuous batching: `slots` x `max_len` positions per layer, allocated once, written per row.

A transformers `Cache` whose layers the model's attention calls as usual (`cache.update(k, v, layer_idx)`); the
engine sets `plan` before each forward: where each new key goes (row r's query column c to slot b, position l)
and which keys attention reads back (a contiguous view of decoding slots, or the gathered slots of a prefill).
transformers' own `StaticCache` writes every row at the same positions and its `PagedAttentionCache` needs the
continuous-batching attention kernels; per-row positions over a plain tensor let every model whose attention
takes a 4D mask (sdpa, eager) run unchanged, with the engine's mask excluding padding and other rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


@dataclass
class CachePlan:
    """Writes: new key of (row `src_row`, query column `src_col`) -> (slot `dst_slot`, position `dst_pos`).
    Reads: slots [lo, hi) when `gather` is None, else the listed slots; the first `kv_len` positions."""

    src_row: torch.Tensor
    src_col: torch.Tensor
    dst_slot: torch.Tensor
    dst_pos: torch.Tensor
    kv_len: int
    lo: int = 0
    hi: int = 0
    gather: torch.Tensor | None = None


class SlotLayer(CacheLayerMixin):
    is_sliding = False
    is_compileable = False

    def __init__(self, owner: SlotCache, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.owner = owner
        self.keys, self.values = keys, values
        self.device = keys.device
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None  # allocated up front, from the memory budget

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.owner.plan
        if p is None:
            raise RuntimeError("the slot cache was called without a plan (only the engine may run the model)")
        assert self.keys is not None and self.values is not None
        self.keys[p.dst_slot, :, p.dst_pos] = key_states[p.src_row, :, p.src_col]
        self.values[p.dst_slot, :, p.dst_pos] = value_states[p.src_row, :, p.src_col]
        if p.gather is None:
            return self.keys[p.lo : p.hi, :, : p.kv_len], self.values[p.lo : p.hi, :, : p.kv_len]
        return (
            self.keys.index_select(0, p.gather)[:, :, : p.kv_len],
            self.values.index_select(0, p.gather)[:, :, : p.kv_len],
        )

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        p = self.owner.plan
        return (p.kv_len if p is not None else query_length), 0

    def get_seq_length(self) -> int:
        p = self.owner.plan
        return 0 if p is None else p.kv_len

    def get_max_length(self) -> int:
        return self.owner.max_len


@dataclass(frozen=True)
class LayerShape:
    kv_heads: int
    head_dim: int


class SlotCache(Cache):
    def __init__(
        self, shapes: list[LayerShape], slots: int, max_len: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.slots, self.max_len = slots, max_len
        self.plan: CachePlan | None = None
        layers = []
        for s in shapes:
            k = torch.zeros(slots, s.kv_heads, max_len, s.head_dim, dtype=dtype, device=device)
            layers.append(SlotLayer(self, k, torch.zeros_like(k)))
        super().__init__(layers=layers)

    @staticmethod
    def nbytes(shapes: list[LayerShape], slots: int, max_len: int, dtype: torch.dtype) -> int:
        per = torch.empty((), dtype=dtype).element_size()
        return sum(2 * slots * max_len * s.kv_heads * s.head_dim * per for s in shapes)

    def save(self, slot: int, upto: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A copy of a slot's first `upto` positions in every layer (a paused row's state)."""
        out = []
        for layer in self.layers:
            assert layer.keys is not None and layer.values is not None
            out.append((layer.keys[slot, :, :upto].clone(), layer.values[slot, :, :upto].clone()))
        return out

    def restore(self, slot: int, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for layer, (k, v) in zip(self.layers, saved, strict=True):
            assert layer.keys is not None and layer.values is not None
            layer.keys[slot, :, : k.shape[1]] = k
            layer.values[slot, :, : v.shape[1]] = v

    def move(self, src: int, dst: int, upto: int, swap: bool) -> None:
        """Copy slot `src` to `dst` (its first `upto` positions), or exchange the two."""
        if upto <= 0:
            return
        for layer in self.layers:
            for t in (layer.keys, layer.values):
                assert t is not None
                if swap:
                    tmp = t[dst, :, :upto].clone()
                    t[dst, :, :upto] = t[src, :, :upto]
                    t[src, :, :upto] = tmp
                else:
                    t[dst, :, :upto] = t[src, :, :upto]
