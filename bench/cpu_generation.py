"""Continuous vs static batching for generation on the CPU, interleaved in one process (the `auto` mode's choice).

    python bench/cpu_generation.py [ROUNDS] [--model decoder|t5|t5-small]

Two Providers' worth of models in one Provider: the same model (a tiny GPT-2; or a tiny T5 / a T5 with t5-small
dimensions serving translation, for the encoder-decoder engine) loaded as `static` and as `continuous`
(batching.generation forced), measured in alternating rounds so that a busy machine slows both alike:
- staggered: 24 requests 20 ms apart, a quarter asking 32 new tokens and the rest 8 (tokens/s, short p50);
- burst: 8 requests of 16 new tokens arriving together (tokens/s).
Prints the medians and continuous / static per round.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_t5_small_random, build_tiny_models
from sentences import sentences

KIND = "decoder"
TASK = {"decoder": "text-generation", "t5": "translation", "t5-small": "translation"}

N = 24
PROMPTS = sentences(N, seed=3)
KINDS = [32 if i % 4 == 0 else 8 for i in range(N)]


def staggered(p: Provider, model: str) -> tuple[float, float]:
    lat, tok = [0.0] * N, [0] * N
    start = time.perf_counter()

    def client(i: int) -> None:
        time.sleep(max(0.0, start + i * 0.02 - time.perf_counter()))
        t0 = time.perf_counter()
        r = p.run(model, TASK[KIND], PROMPTS[i], {"max_new_tokens": KINDS[i]})
        lat[i], tok[i] = time.perf_counter() - t0, _tokens(p, model, r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    short = [x for x, k in zip(lat, KINDS, strict=True) if k == 8]
    return sum(tok) / (time.perf_counter() - start), statistics.median(short)


def burst(p: Provider, model: str, n: int = 8) -> float:
    res = [0] * n
    barrier = threading.Barrier(n + 1)

    def client(i: int) -> None:
        barrier.wait()
        res[i] = _tokens(p, model, p.run(model, TASK[KIND], PROMPTS[i], {"max_new_tokens": 16}))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(res) / (time.perf_counter() - t0)


def _tokens(p: Provider, model: str, r: dict) -> int:
    """Tokens generated: a decoder's answer counts them; a seq2seq answer's text is tokenized again (its end of
    sequence is not in the text: at most one token short)."""
    if "completion_tokens" in r:
        return int(r["completion_tokens"])
    text = next(iter(r.values()))
    return len(p.manager.entry(model).model.tokenizer(text, add_special_tokens=False)["input_ids"])


def main() -> None:
    global KIND
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--model" in sys.argv:
        KIND = sys.argv[sys.argv.index("--model") + 1]
        args = [a for a in args if a != KIND]
    rounds = int(args[0]) if args else 5
    models = Path(__file__).resolve().parent.parent / ".hfp" / "tiny-models"
    path = build_t5_small_random(models) if KIND == "t5-small" else build_tiny_models(models)[KIND]
    print(f"model: {KIND} ({TASK[KIND]})")
    specs = [
        ModelSpec(
            name=mode,
            source=str(path),
            device="cpu",
            tasks=[TASK[KIND]],
            batching={"generation": mode, "max_batch_size": 16},
        )
        for mode in ("static", "continuous")
    ]
    runs: dict[str, list[tuple[float, float, float]]] = {"static": [], "continuous": []}
    with Provider(specs, settings=load_settings({"metrics_enabled": False})) as p:
        for mode in runs:
            p.load(mode)
            staggered(p, mode), burst(p, mode)  # warm-up
        for _ in range(rounds):
            for mode in runs:
                runs[mode].append((*staggered(p, mode), burst(p, mode)))
    for mode, r in runs.items():
        tps, p50, bst = (statistics.median(x[i] for x in r) for i in range(3))
        print(
            f"{mode:>10}: staggered {tps:.0f} tokens/s, short p50 {p50 * 1000:.0f} ms; burst {bst:.0f} tokens/s"
        )
    per_round = [
        (round(c[0] / s[0], 2), round(c[1] / s[1], 2), round(c[2] / s[2], 2))
        for s, c in zip(runs["static"], runs["continuous"], strict=True)
    ]
    print("continuous / static per round (staggered tokens/s, short p50, burst tokens/s):", per_round)


if __name__ == "__main__":
    main()
