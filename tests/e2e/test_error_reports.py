"""Error reports over real HTTP: injected faults of three root causes, 100 each with random messages and request
ids, form exactly three groups of 100; and a secrets canary: requests carrying unique secrets in their inputs,
Authorization header and parameter values, failing in every phase, leave no trace of them in the server's log
output, in any file under its home (SQLite included), in /metrics or in /v1/admin/errors."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.e2e.conftest import serve


def config(tiny_models: dict[str, Path], home: Path) -> dict:
    lm = {
        "source": str(tiny_models["decoder"]),
        "tasks": ["text-generation"],
        "device": "cpu",
        "breaker": {
            "failures": 0
        },  # every injected failure must reach the model (tests/integration/test_breaker_faults.py)
    }
    return {
        "home": str(home),
        "faults": {"rules": []},  # TESTING ONLY: enables POST /v1/admin/faults
        "models": [{"name": "lm", **lm}, {"name": "lazy", "keep_alive": "0s", **lm}],
    }


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the server logs: ours (root) and uvicorn's own loggers, which do not propagate."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        yield out
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def set_faults(c: httpx.Client, *rules: dict) -> None:
    r = c.post("/v1/admin/faults", json={"rules": list(rules)})
    assert r.status_code == 200, r.text


def generate(
    c: httpx.Client, model: str = "lm", params: dict | None = None, **headers: str
) -> httpx.Response:
    # uvicorn closes a connection after a 500 (Starlette re-raises the error to it): one connection per request
    headers.setdefault("connection", "close")
    body = {"model": model, "inputs": "Alice lives in", "parameters": {"max_new_tokens": 2, **(params or {})}}
    return c.post("/v1/tasks/text-generation", json=body, headers=headers)


def test_three_causes_times_100_give_three_groups_of_100(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with serve(config(tiny_models, tmp_path / "home"), tmp_path) as s, httpx.Client(base_url=s.url) as c:
        since = time.time()
        causes = [
            {"phase": "parse", "model": "lm", "exception": "KeyError"},
            {"phase": "preprocess", "model": "lm", "exception": "ValueError"},
            {"phase": "forward", "model": "lm", "exception": "RuntimeError"},
        ]
        for rule in causes:
            set_faults(c, rule)
            for _ in range(100):
                r = generate(c, **{"x-request-id": uuid.uuid4().hex})
                assert r.status_code == 500, r.text
        set_faults(c)
        assert generate(c).status_code == 200

        groups = c.get("/v1/admin/errors", params={"model": "lm", "since": since}).json()["groups"]
        assert sorted((g["phase"], g["count"]) for g in groups) == [
            ("forward", 100), ("parse", 100), ("preprocess", 100)
        ]  # fmt: skip
        for g in groups:
            assert g["error_class"] == "internal" and g["model"] == "lm" and g["revision"] is None
            assert len(g["samples"]) == 5
            assert (
                len({x["request_id"] for x in g["samples"]}) == 5
            )  # the ids the clients sent, all different
            assert all(x["inputs"]["sha256"] and "text" not in x["inputs"] for x in g["samples"])
        fwd = next(g for g in groups if g["phase"] == "forward")["samples"][0]
        assert fwd["device"] == "cpu" and fwd["batch_size"] == 1 and fwd["memory"]["rss_bytes"] > 0
        assert c.get("/v1/admin/errors", params={"class": "oom"}).json() == {"groups": []}
        assert c.get("/v1/admin/errors", params={"class": "nonsense"}).status_code == 400
        metrics = c.get("/metrics").text
        assert 'hfp_error_reports_total{error_class="internal",model="lm"} 300.0' in metrics


def test_secrets_canary_leaves_no_trace(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:16]
    canaries = {
        "input": f"hf_InputCanary{tag}",
        "input_mail": f"canary.{tag}@example.org",
        "header": f"sk-HeaderCanary{tag}",
        "param": f"sk-ParamCanary{tag}",
        "param_name": f"ParamValueCanary{tag}",
        "message": f"MessageCanary{tag}",
        "model": f"hf_ModelCanary{tag}",
    }
    home = tmp_path / "home"
    inputs = f"my token is {canaries['input']}, write to {canaries['input_mail']}"
    auth = {"Authorization": f"Bearer {canaries['header']}"}
    with (
        captured_logs() as logs,
        serve(config(tiny_models, home), tmp_path) as s,
        httpx.Client(base_url=s.url, headers={**auth, "connection": "close"}) as c,
    ):

        def send(model: str = "lm", params: dict | None = None, stream: bool = False) -> int:
            if stream:
                body = {
                    "model": model,
                    "prompt": inputs,
                    "max_tokens": 2,
                    "stream": True,
                    "stop": [canaries["param"]],
                }
                return c.post("/v1/completions", json=body).status_code
            body = {
                "model": model,
                "inputs": inputs,
                "parameters": {"max_new_tokens": 2, **(params or {})},
            }
            return c.post("/v1/tasks/text-generation", json=body).status_code

        home = s.settings.home  # HFP_HOME (set by the suite) wins over the config file's home
        stop = {"stop": [canaries["param"]]}
        for phase in ("parse", "preprocess", "forward", "postprocess"):
            said = f"upstream said token={canaries['message']} to {canaries['input_mail']}"
            set_faults(c, {"phase": phase, "exception": "RuntimeError", "message": said})
            assert send(params=stop) == 500
            assert send(stream=True) in (200, 500)  # 200 once a delta went out: the error ends the stream
        set_faults(c, {"phase": "load", "model": "lazy", "exception": "OSError"})
        assert send("lazy", stop) == 500
        set_faults(c)
        assert send(params={"api_key": canaries["param_name"]}) == 400  # unknown parameter
        assert send(params={"max_new_tokens": canaries["param_name"]}) == 400  # wrong type
        assert send(canaries["model"]) == 404
        assert (
            c.post("/v1/tasks/text-generation", content=b'{"model": "' + inputs.encode()).status_code == 400
        )
        assert send(params=stop) == 200

        groups = c.get("/v1/admin/errors").json()["groups"]
        phases = {g["phase"] for g in groups}
        assert {"parse", "preprocess", "forward", "postprocess", "load"} <= phases
        seen = {"errors": c.get("/v1/admin/errors").text, "metrics": c.get("/metrics").text}
    seen["logs"] = logs.getvalue()
    assert "Traceback" in seen["logs"]  # the 500s were logged, with their tracebacks, masked
    assert "token=***" in seen["logs"] and "token=***" in seen["errors"]
    for path in home.rglob("*"):
        if path.is_file():
            seen[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any(p.endswith("errors.db") for p in seen) and any(p.endswith("metrics.db") for p in seen)
    leaks = [
        (where, name) for where, text in seen.items() for name, secret in canaries.items() if secret in text
    ]
    assert leaks == []
