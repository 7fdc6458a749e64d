"""CPU threads per model (scheduling/threads.py): a thread's count stays its own, and `auto` keeps one thread for
decoding steps only where it is not clearly slower, measured step against step at the same rows."""

from __future__ import annotations

import threading

import pytest
import torch

from hf_provider.scheduling.threads import StepThreads, ThreadSetting, process_threads, use_threads


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_a_threads_count_is_its_own_and_later_threads_keep_the_process_count():
    default = process_threads()
    other = default + 1

    def set_and_read():
        use_threads(other)
        return torch.get_num_threads()

    assert _in_thread(set_and_read) == other
    # torch.set_num_threads alone would leave `other` as the count new threads start from
    assert _in_thread(torch.get_num_threads) == default
    assert torch.get_num_threads() == default


def test_a_setting_is_applied_again_on_a_restarted_thread_and_only_when_it_changes():
    applied = []
    s = ThreadSetting(apply=lambda n: applied.append((threading.get_ident(), n)))
    s.ensure(1)
    s.ensure(1)
    assert len(applied) == 1
    _in_thread(lambda: s.ensure(1))  # a supervised loop restarted on a new thread
    assert len(applied) == 2 and applied[0][0] != applied[1][0]
    s.ensure(2)
    assert applied[-1][1] == 2


def _run(st: StepThreads, cost, rows=lambda i: 4, steps=200):
    """Runs `steps` decoding steps; `cost(threads)` is a step's time. Returns the counts the steps ran on."""
    ran = []
    for i in range(steps):
        n = st.before(rows(i))
        ran.append(n)
        st.after(rows(i), cost(n))
    return ran


def test_a_configured_count_is_used_for_every_step_and_never_measured():
    applied = []
    st = StepThreads(3, default=2, apply=applied.append)
    assert set(_run(st, lambda n: 1.0, steps=30)) == {3}
    assert st.choice.threads == 3 and st.choice.how == "configured" and st.choice.ratios == []
    assert applied == [3]


@pytest.mark.parametrize("device,default", [("cuda", 8), ("cpu", 1)])
def test_nothing_is_measured_off_the_cpu_or_with_one_thread(device, default):
    applied = []
    st = StepThreads("auto", device=device, default=default, apply=applied.append)
    assert set(_run(st, lambda n: 1.0, steps=20)) == {default}
    assert st.choice.how == "process count"
    assert applied == [] and not st.touched  # the thread is left as torch started it


def test_auto_keeps_one_thread_when_it_is_about_as_fast():
    st = StepThreads("auto", default=2, apply=lambda n: None)
    ran = _run(st, lambda n: 1.05 if n == 1 else 1.0)
    assert ran[: StepThreads.WARM_STEPS] == [2] * StepThreads.WARM_STEPS  # warm-up steps are not timed
    assert st.choice.threads == 1
    assert len(st.choice.ratios) == StepThreads.PAIRS
    assert st.choice.ratios == pytest.approx([1.05] * StepThreads.PAIRS)
    assert ran[-50:] == [1] * 50  # decided: every later step on one thread
    assert "1.05x" in st.choice.how


def test_auto_keeps_the_process_count_when_one_thread_is_clearly_slower():
    st = StepThreads("auto", default=2, apply=lambda n: None)
    ran = _run(st, lambda n: 1.6 if n == 1 else 1.0)
    assert st.choice.threads == 2 and ran[-50:] == [2] * 50
    assert st.choice.ratios == pytest.approx([1.6] * StepThreads.PAIRS)


def test_pairs_alternate_which_count_goes_first():
    st = StepThreads("auto", default=2, apply=lambda n: None)
    ran = _run(st, lambda n: 1.0, steps=StepThreads.WARM_STEPS + 2 * StepThreads.PAIRS)
    pairs = ran[StepThreads.WARM_STEPS :]
    firsts = pairs[0::2]
    assert firsts[:4] == [2, 1, 2, 1]
    assert all(a != b for a, b in zip(pairs[0::2], pairs[1::2], strict=True))


def test_steps_of_different_rows_are_never_compared():
    # rows change every step: no pair forms, and after GIVE_UP_STEPS the process count is kept
    st = StepThreads("auto", default=2, apply=lambda n: None)
    ran = _run(st, lambda n: 0.1 if n == 1 else 1.0, rows=lambda i: i, steps=StepThreads.GIVE_UP_STEPS + 10)
    assert st.choice.ratios == []
    assert st.choice.threads == 2 and "too few" in st.choice.how and not st.measuring
    assert set(ran) == {2}


def test_a_pair_spans_only_steps_of_the_same_rows():
    st = StepThreads("auto", default=2, apply=lambda n: None)
    rows = [4] * StepThreads.WARM_STEPS + [4, 5, 5, 6]  # (4 on 2) then 5 on 2, 5 on 1: one pair, at 5 rows
    costs = {1: 3.0, 2: 2.0}
    for r in rows:
        n = st.before(r)
        st.after(r, costs[n] * r)
    assert st.choice.ratios == pytest.approx([1.5])


def test_it_measures_again_and_follows_a_change_in_the_machines_load():
    st = StepThreads("auto", default=2, apply=lambda n: None)
    load = {"busy": False}

    def cost(n):  # idle: two threads win; busy (cores taken by others): one thread wins
        return (1.0 if n == 1 else 3.0) if load["busy"] else (1.6 if n == 1 else 1.0)

    _run(st, cost, steps=StepThreads.WARM_STEPS + 2 * StepThreads.PAIRS)
    assert st.choice.threads == 2 and st.choice.measures == 1 and not st.measuring
    load["busy"] = True
    ran = _run(st, cost, steps=StepThreads.RECHECK_STEPS - 1)
    assert set(ran) == {2}  # no measuring between two measurements
    ran = _run(st, cost, steps=1 + 2 * StepThreads.PAIRS)
    assert st.choice.threads == 1 and st.choice.measures == 2
    assert ran[1:3] == [2, 1]  # a re-measurement has no warm-up steps
    assert "0.33x" in st.choice.how
