"""Which rows the next step computes, and where each row's KV cache lives (pure: integers in, integers out).

The KV cache is `slots` fixed rows of `max_len` positions each (runtime/continuous/cache.py). Rows that are
decoding always occupy physical slots [0, n_decode), so a decode step reads one contiguous view of the cache
instead of gathering rows; prefilling rows sit in free slots above. Keeping that layout costs a slot copy when a
decoding row leaves (the last one moves into its hole) or finishes its prompt (it swaps into slot n_decode); the
policy emits these moves and the engine applies them before the next forward, in order.

A step is every decoding row (one token each) plus prompt chunks of waiting rows within `prefill_chunk` tokens,
oldest first: a long prompt is prefilled over several steps while the running rows keep decoding (vLLM's chunked
prefill with a per-step token budget; nano-vllm alternates whole prefills and decodes instead, which stalls
decodes behind a long prompt). A row joins at the next step when a slot is free and leaves, freeing its slot at
once, when it ends for any reason. Lengths are bucketed (`bucket`) so attention shapes stay few.

While rows are decoding, new prompts may wait up to `prefill_wait_s` (on the injected clock) to share one prefill
forward, unless `prefill_rows` of them or a chunk's worth of tokens are ready: a forward pass of a small model on a
GPU costs about the same for one prompt or eight (it is bound by kernel launches), so prefilling each arrival at
its own step would nearly double the cost of the steps while requests stream in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

WAITING, PREFILL, DECODE = "waiting", "prefill", "decode"


def bucket(n: int, step: int, cap: int) -> int:
    """`n` rounded up to a multiple of `step`, at most `cap` (and at least `n`)."""
    return max(n, min(cap, -(-n // step) * step))


def prompt_bucket(n: int, cap: int) -> int:
    """Padded width of a prompt chunk of `n` tokens: the next power of two from 8, at most `cap`."""
    width = 8
    while width < n:
        width *= 2
    return max(n, min(width, cap))


@dataclass(slots=True)
class RowState:
    prompt_len: int
    total_len: int  # prompt + new tokens it may generate: what its slot must hold
    added_at: float
    phase: str = WAITING
    slot: int = -1
    length: int = 0  # positions of its slot written so far
    admitted_at: float | None = None  # when it got a slot


@dataclass(slots=True)
class Chunk:
    row: Hashable
    slot: int
    start: int  # first position written
    length: int  # prompt tokens in this chunk
    last: bool  # the chunk ends the prompt: its logits give the row's first token


@dataclass(slots=True)
class StepPlan:
    #: (src, dst, upto): copy slot src's first `upto` positions to slot dst; ("swap" when `swap`).
    moves: list[tuple[int, int, int, bool]] = field(default_factory=list)
    decode: list[tuple[Hashable, int]] = field(default_factory=list)  # (row, position fed); slot = index
    decode_kv: int = 0  # bucketed key length of the decode forward
    prefill: list[Chunk] = field(default_factory=list)
    prefill_kv: int = 0  # bucketed key length of the prefill forward
    prefill_width: int = 0  # bucketed query length of the prefill forward (chunks are left-padded to it)

    @property
    def empty(self) -> bool:
        return not self.decode and not self.prefill


class SlotPolicy:
    """Rows, slots and the plan of each step. Not thread-safe: one engine thread owns it."""

    def __init__(
        self,
        slots: int,
        max_len: int,
        prefill_chunk: int,
        *,
        clock: Callable[[], float],
        kv_step: int = 32,
        prefill_wait_s: float = 0.0,
        prefill_rows: int = 8,
    ) -> None:
        if slots < 1 or max_len < 2 or prefill_chunk < 1 or kv_step < 1:
            raise ValueError("slots >= 1, max_len >= 2, prefill_chunk >= 1 and kv_step >= 1 are required")
        self.slots = slots
        self.max_len = max_len
        self.prefill_chunk = prefill_chunk
        self.kv_step = kv_step
        self.clock = clock
        self.prefill_wait_s = prefill_wait_s
        self.prefill_rows = prefill_rows
        self.rows: dict[Hashable, RowState] = {}
        self._waiting: deque[Hashable] = deque()
        self._prefilling: list[Hashable] = []  # admission order
        self._owner: list[Hashable | None] = [None] * slots  # physical slot -> row
        self.n_decode = 0
        self._moves: list[tuple[int, int, int, bool]] = []

    # rows ---------------------------------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        """Slots not promised to a row (waiting rows count: each will take one)."""
        return self.slots - len(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: Hashable, prompt_len: int, total_len: int) -> None:
        if row in self.rows:
            raise ValueError(f"row {row!r} is already scheduled")
        if prompt_len < 1 or total_len < prompt_len or total_len > self.max_len:
            raise ValueError(
                f"a row needs 1 <= prompt ({prompt_len}) <= prompt + new tokens ({total_len}) <= the slot "
                f"length ({self.max_len})"
            )
        self.rows[row] = RowState(prompt_len, total_len, self.clock())
        self._waiting.append(row)

    def remove(self, row: Hashable) -> None:
        """The row ended (finished, cancelled, failed): its slot is free for the next step."""
        st = self.rows.pop(row, None)
        if st is None:
            return
        if st.phase == WAITING:
            self._waiting.remove(row)
            return
        self._owner[st.slot] = None
        if st.phase == PREFILL:
            self._prefilling.remove(row)
            return
        last = self.n_decode - 1
        if st.slot != last:  # fill the hole with the last decoding row: decoding rows stay in [0, n_decode)
            moved = self._owner[last]
            assert moved is not None
            mst = self.rows[moved]
            self._moves.append((last, st.slot, mst.length, False))
            self._owner[st.slot], self._owner[last] = moved, None
            mst.slot = st.slot
        self.n_decode -= 1

    def take_moves(self) -> list[tuple[int, int, int, bool]]:
        """The moves not yet handed to a step (the engine applies them at once before pausing a row)."""
        moves, self._moves = self._moves, []
        return moves

    def restore(
        self, row: Hashable, length: int, total_len: int
    ) -> tuple[int, list[tuple[int, int, int, bool]]]:
        """A paused row comes back decoding with `length` positions written: its slot (the next decode slot),
        and the moves to apply before its saved keys are written there. ValueError when no slot is free."""
        if row in self.rows or None not in self._owner:
            raise ValueError("no free slot to resume the row in")
        target = self.n_decode
        moves: list[tuple[int, int, int, bool]] = []
        other = self._owner[target]
        if other is not None:  # a prefilling row sits where the decode region grows: it moves to a free slot
            free = self._owner.index(None)
            ost = self.rows[other]
            moves.append((target, free, ost.length, False))
            self._owner[free], ost.slot = other, free
        st = RowState(length, total_len, self.clock(), phase=DECODE, slot=target, length=length)
        st.admitted_at = st.added_at
        self.rows[row] = st
        self._owner[target] = row
        self.n_decode += 1
        return target, moves

    def phase(self, row: Hashable) -> str:
        return self.rows[row].phase

    def slot(self, row: Hashable) -> int:
        return self.rows[row].slot

    # steps --------------------------------------------------------------------------------------------------
    def plan(self) -> StepPlan:
        """The next step: moves to apply first, every decoding row, and prompt chunks within the budget."""
        now = self.clock()
        while self._waiting and None in self._owner:
            row = self._waiting.popleft()
            st = self.rows[row]
            st.slot = self._owner.index(None)  # every slot below n_decode is taken, so this is above it
            self._owner[st.slot] = row
            st.phase, st.admitted_at = PREFILL, now
            self._prefilling.append(row)
        plan = StepPlan(moves=self._moves)
        self._moves = []
        for s in range(self.n_decode):
            row = self._owner[s]
            assert row is not None
            plan.decode.append((row, self.rows[row].length))
        if plan.decode:
            plan.decode_kv = bucket(max(p for _, p in plan.decode) + 1, self.kv_step, self.max_len)
        budget = 0 if self._hold_prefill(now) else self.prefill_chunk
        for row in self._prefilling:
            if budget <= 0:
                break
            st = self.rows[row]
            n = min(st.prompt_len - st.length, budget)
            budget -= n
            plan.prefill.append(Chunk(row, st.slot, st.length, n, st.length + n == st.prompt_len))
        if plan.prefill:
            plan.prefill_kv = bucket(
                max(c.start + c.length for c in plan.prefill), self.kv_step, self.max_len
            )
            plan.prefill_width = prompt_bucket(max(c.length for c in plan.prefill), self.prefill_chunk)
        return plan

    def _hold_prefill(self, now: float) -> bool:
        """Whether new prompts wait for company this step (never a prompt already started, never when idle)."""
        if not self.prefill_wait_s or not self.n_decode or not self._prefilling:
            return False
        rows = [self.rows[r] for r in self._prefilling]
        if any(st.length for st in rows) or len(rows) >= self.prefill_rows:
            return False
        if sum(st.prompt_len for st in rows) >= self.prefill_chunk:
            return False
        return now - min(st.added_at for st in rows) < self.prefill_wait_s

    def advance(self, plan: StepPlan) -> None:
        """The plan ran: positions advance; rows whose prompt is complete start decoding (next step)."""
        for row, _ in plan.decode:
            if row in self.rows:
                self.rows[row].length += 1
        for c in plan.prefill:
            st = self.rows.get(c.row)
            if st is None or st.phase != PREFILL:
                continue
            st.length += c.length
            if st.length == st.prompt_len:
                self._to_decode(c.row, st)

    def _to_decode(self, row: Hashable, st: RowState) -> None:
        target = self.n_decode
        if st.slot != target:
            other = self._owner[target]
            upto = max(st.length, self.rows[other].length if other is not None else 0)
            self._moves.append((st.slot, target, upto, True))
            self._owner[st.slot], self._owner[target] = other, row
            if other is not None:
                self.rows[other].slot = st.slot
            st.slot = target
        self._prefilling.remove(row)
        st.phase = DECODE
        self.n_decode += 1

    def waited(self, row: Hashable) -> float | None:
        """Seconds the row waited for a slot (None while it still waits)."""
        st = self.rows[row]
        return None if st.admitted_at is None else st.admitted_at - st.added_at

    def check(self) -> None:
        """Raise AssertionError if the layout invariants do not hold (tests call it after every step)."""
        for s, row in enumerate(self._owner):
            if row is not None:
                st = self.rows[row]
                assert st.slot == s, (row, s, st.slot)
                assert (st.phase == DECODE) == (s < self.n_decode), (row, s, st.phase, self.n_decode)
                assert st.length <= st.total_len
        assert sum(1 for st in self.rows.values() if st.phase == DECODE) == self.n_decode
        assert all(self.rows[r].phase == WAITING for r in self._waiting)
