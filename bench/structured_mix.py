"""Constrained and free requests in one batch (CPU): generated tokens per second of a 50/50 mix of json_schema
requests and free ones, against free requests alone, in alternating rounds of the same run (closed-loop clients,
so the batch stays full); the free rows' tokens are checked identical with and without constrained rows beside
them. Also prints the cold compile time of a typical schema.

    flock /tmp/hfp-bench.lock python bench/structured_mix.py [--rounds 3] [--clients 16] [--seconds 6]

Model: a random GPT-2 (hidden 256, 4 layers, 512 positions) with the tiny 1000-token BPE of hf_provider.testing,
served by the Provider with static batching (the CPU default) and with the continuous engine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 4},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 10}, "zip": {"type": "integer"}},
            "required": ["city"],
        },
    },
    "required": ["name", "age", "tags", "address"],
}


LENGTHS: dict[str, list[int]] = {"free": [], "constrained": []}


def round_(p: Any, n: int, mixed: bool, tokens: int) -> tuple[float, list[str]]:
    """Submit n requests at once (half constrained when mixed); generated tokens per second, free texts."""
    # greedy and unseeded: one set of decoding parameters, so the static path batches them all together
    free = {"max_new_tokens": tokens, "temperature": 0}
    con = {**free, "grammar": {"type": "json_schema", "schema": SCHEMA}}
    t0 = time.perf_counter()
    reqs = []
    for i in range(n):
        params = con if mixed and i % 2 else free
        req = p.submit(
            "lm",
            "text-generation",
            f"request {i} says",
            params,
            deadline=time.monotonic() + 3600,
        )
        reqs.append((params is free, req))
    outs = [(is_free, r.future.result(300)) for is_free, r in reqs]
    dt = time.perf_counter() - t0
    made = sum(o["completion_tokens"] for _, o in outs)
    return made / dt, [o["generated_text"] for is_free, o in outs if is_free]


def steady(p: Any, clients: int, mixed: bool, tokens: int, seconds: float) -> float:
    """Generated tokens per second with `clients` closed-loop clients for `seconds` (half of them constrained
    when mixed). More clients than rows a batch keep the queue from running dry, so a row that ends sooner (a
    closed JSON) is replaced at the next step and what is measured is the steps, not the clients' turnaround."""
    free = {"max_new_tokens": tokens, "temperature": 0}
    con = {**free, "grammar": {"type": "json_schema", "schema": SCHEMA}}
    made = [0] * clients
    end = time.monotonic() + seconds

    def client(k: int) -> None:
        params = con if mixed and k % 2 else free
        i = 0
        while time.monotonic() < end:
            req = p.submit(
                "lm", "text-generation", f"client {k} request {i}", params, deadline=time.monotonic() + 3600
            )
            out = req.future.result(300)
            made[k] += out["completion_tokens"]
            LENGTHS["constrained" if params is con else "free"].append(out["completion_tokens"])
            i += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(made) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()

    import torch

    from hf_provider.provider import Provider
    from hf_provider.runtime.constrained import GrammarCache, spec_from_param
    from hf_provider.settings import load_settings
    from hf_provider.spec import ModelSpec
    from hf_provider.testing.models import build_sized_gpt2

    torch.manual_seed(0)
    path = build_sized_gpt2(Path(tempfile.gettempdir()) / "hfp-bench-models", 256, 4, positions=512)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    spec = spec_from_param({"type": "json_schema", "schema": SCHEMA})
    assert spec is not None
    cold = []
    for _ in range(5):
        cache = GrammarCache()
        cache._lltokenizer(tok)  # the tokenizer's trie is built once per tokenizer, not per schema
        t0 = time.perf_counter()
        cache.template(tok, spec)
        cold.append(time.perf_counter() - t0)
    print(
        f"grammar compile (typical schema, cold, to the first mask): median {statistics.median(cold) * 1e3:.2f} ms"
    )

    for mode in ("static", "continuous"):
        ms = ModelSpec(
            name="lm",
            source=str(path),
            device="cpu",
            batching={"generation": mode, "max_batch_size": args.slots},
        )
        settings = load_settings({"metrics_enabled": False, "server": {"request_timeout_s": 3600}})
        with Provider([ms], settings=settings) as p:
            round_(p, 4, True, 8)  # warm-up: weights, first compile
            _, texts_free = round_(p, args.slots, False, args.tokens)
            _, texts_mix = round_(p, args.slots, True, args.tokens)
            same = texts_free[0::2] == texts_mix  # the free rows of the mix are requests 0, 2, 4...
            free_rates, mix_rates = [], []
            step: dict[bool, list[float]] = {False: [], True: []}
            engine = getattr(p.manager.entry("lm").scheduler, "engine", None)
            for _ in range(args.rounds):
                for mixed, rates in ((False, free_rates), (True, mix_rates)):
                    before = dict(engine.stats) if engine is not None else {}
                    rates.append(steady(p, args.clients, mixed, args.tokens, args.seconds))
                    if (
                        engine is not None
                    ):  # the engine's decode time per row and step: the grammar's own cost
                        d = {k: engine.stats[k] - before[k] for k in before}
                        step[mixed].append(d["decode_s"] / max(1, d["decode_rows"]))
            ratio = statistics.median(m / f for m, f in zip(mix_rates, free_rates, strict=True))
            print(
                f"{mode:10s} free alone {statistics.median(free_rates):7.1f} tok/s, 50/50 mix "
                f"{statistics.median(mix_rates):7.1f} tok/s: mix/free {ratio:.2f} (median of {args.rounds} "
                f"back-to-back rounds of {args.seconds:.0f} s, {args.clients} clients, {args.slots} rows a "
                f"batch); free rows token-identical "
                f"in the mix: {same}; tokens per row: free {statistics.mean(LENGTHS['free']):.0f}, constrained "
                f"{statistics.mean(LENGTHS['constrained']):.0f}"
            )
            if step[False]:
                f, m = statistics.median(step[False]), statistics.median(step[True])
                print(
                    f"{'':10s} decode time per row and step: free alone {f * 1e6:.0f} us, mix {m * 1e6:.0f} us "
                    f"(free/mix {f / m:.2f})"
                )
            LENGTHS["free"].clear()
            LENGTHS["constrained"].clear()


if __name__ == "__main__":
    main()
