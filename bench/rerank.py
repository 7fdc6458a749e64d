"""Served /v1/rerank vs a raw tokenize + forward loop, in one run: `flock /tmp/hfp-bench.lock python bench/rerank.py`.

The model is a random cross-encoder of all-MiniLM-L6's shape (BERT, hidden 384, 6 layers, one label) built by
hf_provider.testing. Each round sends `--requests` requests of 1 query x `--docs` documents from 8 concurrent
clients (a separate client process, keep-alive connections) to `hfp serve`, and runs the raw baseline in this
process on exactly the same pairs: the model's fast tokenizer on `batch` pairs, then the forward pass, at the
server's batch size (`max_batch_size`), the pairs in request order; and again with the pairs sorted by length
(the scheduler sorts the queued items of a window by length, which saves padding: this baseline has all of that
saving without any serving). Rounds interleave raw and served (the server
idles while the raw loop runs). Prints pairs/s of each, the ratio of medians and the median of back-to-back
round ratios (issue 26's target: >= 0.85), and how many of the server's batches held the pairs of more than one
request (GET /v1/admin/models `shared_batches`): the dynamic batching at work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import ROOT, run_client, start_server, stop_server
from sentences import sentences

MODEL = "reranker"


class Raw:
    """The baseline: transformers' own tokenizer and model on the same files, fp32, no server in between."""

    def __init__(self, folder: Path, batch: int) -> None:
        import torch
        import transformers

        self.torch = torch
        self.batch = batch
        self.tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(folder), dtype="float32"
        )
        self.model.eval()

    def by_length(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pairs shortest first: what the scheduler's length sorting does within its window, at its best."""
        lens = [len(ids) for ids in self.tok([q for q, _ in pairs], [d for _, d in pairs])["input_ids"]]
        return [p for _, p in sorted(zip(lens, pairs, strict=True), key=lambda x: x[0])]

    def rate(self, pairs: list[tuple[str, str]]) -> float:
        t0 = time.perf_counter()
        with self.torch.inference_mode():
            for i in range(0, len(pairs), self.batch):
                chunk = pairs[i : i + self.batch]
                enc = self.tok(
                    [q for q, _ in chunk], [d for _, d in chunk], padding=True, return_tensors="pt"
                )
                self.model(**enc).logits.sigmoid().tolist()
        return len(pairs) / (time.perf_counter() - t0)


def admin_batches(url: str) -> tuple[int, int]:
    with urllib.request.urlopen(f"{url}/v1/admin/models", timeout=10) as r:
        models = json.load(r)
    rows = models.get("models", models) if isinstance(models, dict) else models
    row = next(m for m in rows if m["name"] == MODEL)
    return row["batches"], row["shared_batches"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="requests per round (8 clients share them)")
    parser.add_argument("--docs", type=int, default=100, help="documents per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size of the server and the raw loop")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()

    from hf_provider.testing.pair_models import build_sized_cross_encoder

    folder = build_sized_cross_encoder(ROOT / ".hfp" / "bench-models", args.hidden, args.layers)
    texts = sentences(args.requests * (args.docs + 1), seed=26)
    requests = []
    for r in range(args.requests):
        chunk = texts[r * (args.docs + 1) : (r + 1) * (args.docs + 1)]
        requests.append({"query": chunk[0], "documents": chunk[1:]})
    pairs = [(q["query"], d) for q in requests for d in q["documents"]]
    payloads = [{"model": MODEL, **q} for q in requests]

    home = Path(tempfile.mkdtemp(prefix="hfp-bench-rerank-"))
    config = home / "hfp.toml"
    config.write_text(
        f'home = "{home}"\n[[models]]\nname = "{MODEL}"\nsource = "{folder}"\ndevice = "cpu"\ndtype = "float32"\n'
        f'tasks = ["rerank"]\n[models.batching]\nmax_batch_size = {args.batch}\n'
    )
    raw = Raw(folder, args.batch)
    raw.rate(pairs[: args.batch * 2])  # warm-up
    proc, url = start_server(config=config)
    try:
        run_client(url, "/v1/rerank", payloads[:8], 8)  # warm-up
        start_batches, start_shared = admin_batches(url)
        raw_rates, sorted_rates, served_rates, errors = [], [], [], 0
        ordered = raw.by_length(pairs)
        for _ in range(args.rounds):
            raw_rates.append(raw.rate(pairs))
            sorted_rates.append(raw.rate(ordered))
            res = run_client(url, "/v1/rerank", payloads, 8)
            served_rates.append(len(pairs) / res["seconds"])
            errors += res["errors"]
            print(
                f"round {len(served_rates)}: raw {raw_rates[-1]:.0f}, raw sorted {sorted_rates[-1]:.0f}, "
                f"served {served_rates[-1]:.0f} pairs/s",
                flush=True,
            )
        batches, shared = admin_batches(url)
    finally:
        stop_server(proc)
    ratio = statistics.median(served_rates) / statistics.median(raw_rates)
    # each served round against the raw round just before it: on a shared machine the load changes between rounds
    paired = statistics.median(s / r for s, r in zip(served_rates, raw_rates, strict=True))
    print(
        f"model: random cross-encoder hidden {args.hidden} x {args.layers} layers, batch {args.batch}, fp32, CPU"
    )
    print(
        f"load: {args.requests} requests x 1 query x {args.docs} documents, 8 clients, {args.rounds} rounds"
    )
    print(f"raw tokenize+forward pairs/s: {', '.join(f'{r:.0f}' for r in raw_rates)}")
    print(f"raw, pairs sorted by length:  {', '.join(f'{r:.0f}' for r in sorted_rates)}")
    print(f"served /v1/rerank pairs/s:    {', '.join(f'{r:.0f}' for r in served_rates)}  (errors: {errors})")
    print(
        f"shared batches: {shared - start_shared} of {batches - start_batches} batches held the pairs of more "
        "than one request"
    )
    print(
        f"ratio served/raw: {ratio:.3f} by the ratio of medians, {paired:.3f} by the median of back-to-back rounds"
    )
    strict = statistics.median(served_rates) / statistics.median(sorted_rates)
    print(f"against the length-sorted raw loop (no padding to gain): {strict:.3f} by the ratio of medians")
    print("(target >= 0.85)")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
