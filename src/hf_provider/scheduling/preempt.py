"""Which continuous-batching rows step aside, and for whom (pure: the loop applies the decision).

Between two steps the loop (scheduling/continuous.py) describes its rows and queue and applies what `decide`
returns: rows to pause (the engine keeps their state), paused rows to resume, and how many queued items to take.

- Priority. A batch-priority row is *effective* batch until it has waited `aging_s` in all (queued before it
  joined, and paused since); after that it counts as interactive (so bulk work is delayed, never starved). Time
  spent running is service, not waiting: a long bulk row that runs for seconds still steps aside. With `always`
  (the CPU default, where a step's cost grows with its rows), while any interactive row runs or waits, batch rows
  are paused and only urgent items are taken: interactive rows step as fast as alone. With `when-full` (a GPU,
  where a step costs about the same for 1 row or 32), batch rows are paused only to give a waiting interactive
  item a slot.
- Fair share (when the model sets `task_share`; otherwise tasks only take free slots in fair order, queue.py).
  Within one priority class, when every slot is taken and a task with items waiting holds fewer rows
  than its share of the slots (scheduling/share.py) while another holds more, one row of the most over-share task
  is paused per step, newest first (the one that has done the least work).
- Joining late (also only with `task_share`). A new row's prefill stalls every running row for one step, and on
  a CPU one prefill of a few rows costs far less than a few prefills of one. So while rows of a task with a
  larger share run or join, queued items of a smaller-share task (in the same or a less urgent class) wait to
  join: until a prefill runs anyway (other items are taken: as many join it), or at most `hold_steps` steps in a
  row, then together. TGI's router coalesces every request's joins this way (`max_waiting_tokens`); here it is
  kept to the work the operator ranked lower, so the larger share's rows step as if alone.
- Resuming. Paused rows come back before queued items take free slots (they are older), interactive first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hf_provider.scheduling.share import FairShare


@dataclass(frozen=True, slots=True)
class RowView:
    rid: int
    task: str
    priority: int  # 0 interactive, 1 batch: as submitted
    submitted: float
    waited: float = 0.0  # seconds it has waited so far: queued before it joined, and paused

    def effective(self, aging_s: float) -> int:
        return 0 if self.priority == 0 or self.waited >= aging_s else 1


@dataclass(frozen=True, slots=True)
class Hold:
    """The (priority class, task) queues that wait this step: a task whose share is smaller than that of a
    running row or a queued item (it joins now) of the same or a more urgent class, unless `released` (it has
    waited `hold_steps` already). A rule, not a list: an item queued after the decision, before the loop takes
    items, waits by it too. Empty (falsy) without shares."""

    # per class: the largest share among the running rows and queued items of that class or a more urgent one
    top: tuple[int, ...] = ()
    share: FairShare | None = None
    released: frozenset[tuple[int, str]] = frozenset()

    def __bool__(self) -> bool:
        return self.share is not None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or self.share is None:
            return False
        c, task = key
        return (
            isinstance(c, int)
            and c < len(self.top)
            and self.share.share(task) < self.top[c]
            and key not in self.released
        )


@dataclass
class Decision:
    pause: list[int] = field(default_factory=list)
    resume: list[int] = field(default_factory=list)
    take: int = 0  # queued items to take into free slots
    urgent_only: bool = False  # take interactive (or aged) items only
    hold: Hold = field(default_factory=Hold)  # the queues that wait this step


def decide(
    running: list[RowView],
    paused: list[RowView],
    queued: Mapping[tuple[int, str], int],
    *,
    slots: int,
    always: bool,
    share: FairShare,
    aging_s: float,
    max_paused: int | None = None,
    by_share: bool = True,
    held: Mapping[tuple[int, str], int] | None = None,
    hold_steps: int = 0,
) -> Decision:
    """`queued`: items waiting per (priority class, task); `slots`: rows the engine can run at once; `held`: how
    many steps in a row each queue has been held so far (the loop counts them)."""
    max_paused = slots if max_paused is None else max_paused
    d = Decision()
    eff = {r.rid: r.effective(aging_s) for r in (*running, *paused)}
    waiting_urgent = sum(n for (c, _), n in queued.items() if c == 0)
    interactive_running = sum(1 for r in running if eff[r.rid] == 0)
    room_to_pause = max(0, max_paused - len(paused))
    batch_rows = sorted((r for r in running if eff[r.rid] == 1), key=lambda r: -r.submitted)  # newest first
    free = slots - len(running)

    if always and (interactive_running or waiting_urgent):
        d.pause = [r.rid for r in batch_rows[:room_to_pause]]
        d.urgent_only = True
    elif waiting_urgent > free:
        d.pause = [r.rid for r in batch_rows[: min(waiting_urgent - free, room_to_pause)]]
    free += len(d.pause)
    left = [r for r in running if r.rid not in d.pause]

    if by_share and hold_steps > 0:
        d.hold = _late_joiners(left, queued, share, eff, held or {}, hold_steps)
        queued = {k: n for k, n in queued.items() if k not in d.hold}

    if by_share and not d.pause and free <= 0 and room_to_pause:
        victim = _over_share(left, queued, slots, share, eff)
        if victim is not None:
            d.pause.append(victim)
            free += 1

    # Resume: interactive (or aged) paused rows first, oldest first; batch ones only while nothing urgent runs.
    candidates = sorted(paused, key=lambda r: (eff[r.rid], r.submitted))
    for r in candidates:
        if free <= 0:
            break
        if d.urgent_only and eff[r.rid] == 1:
            continue
        d.resume.append(r.rid)
        free -= 1
    d.take = max(0, free)
    return d


def _late_joiners(
    running: list[RowView],
    queued: Mapping[tuple[int, str], int],
    share: FairShare,
    eff: Mapping[int, int],
    held: Mapping[tuple[int, str], int],
    hold_steps: int,
) -> Hold:
    """Larger shares that run, or are queued (they join now), make smaller ones of the same or a less urgent
    class wait."""
    top: list[int] = []
    for cls in (0, 1):
        shares = [share.share(r.task) for r in running if eff[r.rid] == cls]
        shares += [share.share(t) for (c, t), n in queued.items() if c == cls and n]
        top.append(max([*top, *shares], default=0))
    return Hold(tuple(top), share, frozenset(k for k, n in held.items() if n >= hold_steps))


def _over_share(
    running: list[RowView],
    queued: Mapping[tuple[int, str], int],
    slots: int,
    share: FairShare,
    eff: Mapping[int, int],
) -> int | None:
    """A row to pause so that an under-share task with items waiting gets a slot, or None."""
    for cls in (0, 1):
        rows = [r for r in running if eff[r.rid] == cls]
        waiting = {t for (c, t), n in queued.items() if c == cls and n}
        if not rows or not waiting:
            continue
        held: dict[str, list[RowView]] = {}
        for r in rows:
            held.setdefault(r.task, []).append(r)
        fair = share.fair_slots(len(rows), [*held, *waiting])
        starved = [t for t in waiting if len(held.get(t, [])) + 1 <= fair[t]]
        over = [t for t in held if len(held[t]) > fair[t]]
        if starved and over:
            worst = max(over, key=lambda t: len(held[t]) - fair[t])
            return max(held[worst], key=lambda r: r.submitted).rid
    return None
