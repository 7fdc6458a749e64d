"""Fallback chains over HTTP with injected faults: the primary fails 100% of its forward passes; after its
breaker opens, every request is served by the fallback, with x-hfp-served-by and x-hfp-fallback-reason set, on
/v1/embeddings (the hand-written fast path) and /v1/tasks alike."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from hf_provider.settings import load_settings

N = 1000


def test_primary_failing_100_percent_is_served_by_the_fallback(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from hf_provider.server.factory import build

    config = {
        "home": str(tmp_path / "home"),
        "history_enabled": False,
        # TESTING ONLY: every forward pass of `primary` raises (a 500 of the model's own making).
        "faults": {"rules": [{"phase": "forward", "model": "primary"}]},
        "models": [
            {
                "name": "primary",
                "source": str(tiny_models["bert-cls"]),
                "tasks": ["embeddings", "text-classification"],
                "device": "cpu",
                # The requests admitted before the breaker opens run their forward pass and fail (500): the
                # switch happens before a request is queued, never after it was computed. With failures = 1
                # exactly one request of the 1000 fails; the default 5 would already cost 0.5%.
                "breaker": {"failures": 1, "cooldown": "1h"},
                "fallbacks": ["ner", "backup"],  # `ner` does not serve embeddings: skipped
            },
            {"name": "ner", "source": str(tiny_models["bert-ner"]), "tasks": ["token-classification"]},
            {
                "name": "backup",
                "source": str(tiny_models["bert-mlm"]),
                "tasks": ["embeddings"],
                "device": "cpu",
            },
        ],
    }
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as c:
        ok = 0
        statuses: dict[int, int] = {}
        for i in range(N):
            if i % 2:
                r = c.post("/v1/embeddings", json={"model": "primary", "input": f"sentence {i}"})
            else:
                r = c.post("/v1/tasks/embeddings", json={"model": "primary", "inputs": [f"sentence {i}"]})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code != 200:
                continue
            ok += 1
            assert r.headers["x-hfp-served-by"] == "backup", r.headers
            assert r.headers["x-hfp-fallback-reason"] == "circuit_open"
            assert r.json()["model"] == "primary"  # the name the client asked for
        assert ok >= 999, statuses
        assert app.state.provider.faults.injected == N - ok  # the failures ran their forward pass once

        # A healthy model names itself and gives no fallback reason.
        r = c.post("/v1/embeddings", json={"model": "backup", "input": "direct"})
        assert r.status_code == 200
        assert r.headers["x-hfp-served-by"] == "backup" and "x-hfp-fallback-reason" not in r.headers

        # A client error never falls back: the fallback would refuse it too.
        r = c.post(
            "/v1/tasks/embeddings", json={"model": "primary", "inputs": ["x"], "parameters": {"nope": 1}}
        )
        assert r.status_code == 400, r.text
        assert "x-hfp-served-by" not in r.headers

        metrics = c.get("/metrics").text
        line = 'hfp_fallbacks_total{fallback="backup",model="primary",reason="circuit_open"}'
        assert f"{line} {float(ok)}" in metrics, [m for m in metrics.splitlines() if "fallbacks" in m]


def test_primary_whose_load_failed_is_served_by_the_fallback(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from hf_provider.server.factory import build

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    config = {
        "home": str(tmp_path / "home"),
        "history_enabled": False,
        "metrics_enabled": False,
        "load_on_start": False,
        "models": [
            {
                "name": "primary",
                "source": str(broken),
                "tasks": ["text-classification"],
                "fallbacks": ["backup"],
            },
            {"name": "backup", "source": str(tiny_models["bert-cls"]), "tasks": ["text-classification"]},
        ],
    }
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/tasks/text-classification", json={"model": "primary", "inputs": ["a good book"]})
        assert r.status_code == 200, r.text
        assert r.headers["x-hfp-served-by"] == "backup"
        assert r.headers["x-hfp-fallback-reason"] == "load_failed"
        assert r.json()["model"] == "primary"


def test_a_completion_to_a_model_whose_load_failed_is_served_by_its_fallback(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """/v1/completions and /v1/chat/completions pick the task and chat template of the model that serves: the
    fallback's, when the primary's load failed (the classifier between them does not generate: skipped)."""
    from hf_provider.server.factory import build

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    gen = {"tasks": ["text-generation"], "device": "cpu"}
    config = {
        "home": str(tmp_path / "home"),
        "history_enabled": False,
        "metrics_enabled": False,
        "load_on_start": False,
        "models": [
            {"name": "primary", "source": str(broken), **gen, "fallbacks": ["cls", "lm"]},
            {"name": "alone", "source": str(broken), **gen, "fallbacks": ["cls"]},
            {"name": "cls", "source": str(tiny_models["bert-cls"]), "tasks": ["text-classification"]},
            {"name": "lm", "source": str(tiny_models["decoder"]), **gen},
        ],
    }
    chat = {"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 3}
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/chat/completions", json={"model": "primary", **chat})
        assert r.status_code == 200, r.text
        assert r.headers["x-hfp-served-by"] == "lm"
        assert r.headers["x-hfp-fallback-reason"] == "load_failed"
        assert r.json()["model"] == "primary"  # the name the client asked for
        direct = c.post("/v1/chat/completions", json={"model": "lm", **chat})
        assert direct.status_code == 200 and "x-hfp-fallback-reason" not in direct.headers
        # the prompt was rendered by the fallback's chat template, as the direct request's was
        assert r.json()["usage"]["prompt_tokens"] == direct.json()["usage"]["prompt_tokens"] > 2

        r = c.post("/v1/chat/completions", json={"model": "primary", "stream": True, **chat})
        assert r.status_code == 200, r.text
        assert r.headers["x-hfp-fallback-reason"] == "load_failed" and r.headers["x-hfp-served-by"] == "lm"
        assert r.text.rstrip().endswith("data: [DONE]")

        r = c.post("/v1/completions", json={"model": "primary", "prompt": "once upon", "max_tokens": 3})
        assert r.status_code == 200, r.text
        assert r.headers["x-hfp-served-by"] == "lm" and r.headers["x-hfp-fallback-reason"] == "load_failed"

        # The primary stays down, and says why.
        view = c.get("/v1/admin/models").json()["models"]
        primary = next(m for m in view if m["name"] == "primary")
        assert primary["state"] == "failed" and "cannot load" in primary["error"]

        # No fallback that generates: the primary's own load error is the answer, naming no server.
        r = c.post("/v1/chat/completions", json={"model": "alone", **chat})
        assert r.status_code == 500 and r.json()["error"]["code"] == "model_load_failed", r.text
        assert "x-hfp-served-by" not in r.headers
        r = c.post("/v1/chat/completions", json={"model": "alone", **chat})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_load_failed", r.text
        assert float(r.headers["retry-after"]) > 0  # within the pause after the failed load
