"""Crash isolation (issue 10 item 7) with real child processes.

`gen` (a tiny GPT-2 with a long context) runs with isolation = "process"; `cls` and `doomed` (tiny BERT
classifiers) run in-process. One server is shared by the module: a child process costs seconds to start (torch
import and load), and every crash below costs a restart.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import TINY_CACHE

from hf_provider.errors import Cancelled, ConfigError, DeviceFailed, WorkerCrashed
from hf_provider.resilience import fallback
from hf_provider.resilience.backoff import Backoff
from hf_provider.settings import FaultRule, load_settings
from hf_provider.testing.models import build_sized_gpt2

PROMPT = "the cat"  # with this prompt the random model runs to max_new_tokens (no early end of text)
LONG = {"max_new_tokens": 1000}  # ~2 s on the child: long enough to be killed halfway
CLS = {"model": "cls", "inputs": ["a good book"]}
FATAL = "CUDA error: an illegal memory access was encountered"


def test_restart_backoff_doubles_within_a_crash_streak_and_starts_over_after_a_long_run() -> None:
    now = [0.0]
    b = Backoff(first=0.25, cap=2.0, reset_s=60.0, clock=lambda: now[0])
    b.started()
    now[0] = 1.0
    assert [b.failed(), b.failed(), b.failed(), b.failed(), b.failed()] == [0.25, 0.5, 1.0, 2.0, 2.0]
    b.started()
    now[0] += 59.0  # crashed again before a minute of running: still the same streak
    assert b.failed() == 2.0
    b.started()
    now[0] += 60.0  # ran a minute: this crash is a first one
    assert b.failed() == 0.25


def test_a_crashed_worker_and_a_failed_device_switch_to_a_fallback_and_are_503s() -> None:
    from hf_provider.server.errors import provider_error_response

    for exc, code in (
        (WorkerCrashed("down", retry_after=3.2), "worker_crashed"),
        (DeviceFailed("x"), "model_failed"),
    ):
        assert fallback.reason(exc) == "worker_crashed"
        response = provider_error_response(exc)
        assert response.status_code == 503 and code.encode() in response.body
    assert provider_error_response(WorkerCrashed("down", retry_after=3.2)).headers["Retry-After"] == "4"


def test_an_unknown_isolation_value_is_a_config_error_naming_the_choices(
    tiny_models: dict[str, Path],
) -> None:
    config = {"models": [{"name": "m", "source": str(tiny_models["bert-cls"]), "isolation": "processes"}]}
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    msg = str(err.value)
    assert "isolation" in msg and "'thread'" in msg and "'process'" in msg


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from hf_provider.server.factory import build

    lm = build_sized_gpt2(TINY_CACHE, 64, 2, positions=4096)
    off = {"failures": 0}  # breakers off: every request must show what the crash itself did
    config = {
        "home": str(tmp_path_factory.mktemp("home")),
        "history_enabled": False,
        "faults": {"rules": []},  # TESTING ONLY: the injector the last test drives
        "models": [
            {"name": "gen", "source": str(lm), "device": "cpu", "isolation": "process", "breaker": off},
            {"name": "gen-thread", "source": str(lm), "device": "cpu", "breaker": off},
            {"name": "cls", "source": str(tiny_models["bert-cls"]), "device": "cpu", "breaker": off},
            {
                "name": "doomed",
                "source": str(tiny_models["bert-cls"]),
                "device": "cpu",
                "breaker": off,
                "fallbacks": ["cls"],
            },
        ],
    }
    app = build(load_settings(config))
    with TestClient(app, raise_server_exceptions=False) as client:
        end = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:  # start-up loading, the worker process's included
            assert time.monotonic() < end, client.get("/readyz").text
            time.sleep(0.1)
        yield client


def _models(c: TestClient) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in c.get("/v1/admin/models").json()["models"]}


def _runner(c: TestClient, name: str) -> Any:
    return c.app.state.provider.manager.entry(name).scheduler.runner


def _when_inside(c: TestClient, name: str, timeout: float = 30.0) -> None:
    """Return once a batch is running in the model's worker process."""
    worker = _runner(c, name).worker
    end = time.monotonic() + timeout
    while not worker._call_lock.locked():
        assert time.monotonic() < end, "the request never reached the worker"
        time.sleep(0.005)
    time.sleep(0.2)  # well into the generation


def _wait_serving(c: TestClient, name: str, timeout: float = 120.0) -> None:
    worker = _runner(c, name).worker
    assert worker.wait_ready(time.monotonic() + timeout), "the worker did not come back"


def _wait_down(c: TestClient, name: str) -> None:
    worker = _runner(c, name).worker
    end = time.monotonic() + 2.0
    while worker.ready:
        assert time.monotonic() < end, "the death was not noticed within 2 s"
        time.sleep(0.002)


class _Load:
    """Requests to `cls` on a thread, counted, for as long as the block runs."""

    def __init__(self, provider: Any) -> None:
        self.provider, self.ok, self.failed = provider, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.provider.run("cls", "text-classification", ["a good book", "a bad one"], timeout=30)
                self.ok += 1
            except Exception as exc:
                self.failed.append(exc)

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_sigkill_mid_request_retries_it_on_the_restarted_worker_and_other_models_keep_serving(
    server: TestClient,
) -> None:
    c, provider = server, server.app.state.provider
    before = _models(c)
    assert before["gen"]["isolation"] == "process" and before["gen"]["restarts"] == 0
    assert before["cls"]["isolation"] == "thread" and before["cls"]["pid"] == os.getpid()
    pid = before["gen"]["pid"]
    assert pid and pid != os.getpid()
    with _Load(provider) as load:
        req = provider.submit("gen", "text-generation", PROMPT, LONG, timeout=180)  # greedy: safe to retry
        _when_inside(c, "gen")
        os.kill(pid, signal.SIGKILL)
        _wait_down(c, "gen")
        # While it restarts, new requests are refused at once with 503 worker_crashed and a Retry-After.
        r = c.post("/v1/tasks/text-generation", json={"model": "gen", "inputs": "hi"})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "worker_crashed"
        assert int(r.headers["Retry-After"]) >= 1
        assert _models(c)["gen"]["worker_state"] in ("crashed", "starting")
        result = req.future.result(180)  # served by the retry on the new process
        time.sleep(0.3)
    assert len(result["generated_text"]) > len(PROMPT)
    assert load.failed == [] and load.ok > 0  # the in-process model never noticed
    after = _models(c)["gen"]
    assert after["restarts"] == 1 and after["pid"] not in (None, pid)
    assert after["state"] == "ready" and after["retried_batches"] == 1
    r = c.post(
        "/v1/tasks/text-generation",
        json={"model": "gen", "inputs": "hi", "parameters": {"max_new_tokens": 3}},
    )
    assert r.status_code == 200, r.text
    groups = provider.errors(error_class="worker_crashed")
    assert groups and groups[0]["model"] == "gen"


def test_a_fatal_device_error_in_the_worker_fails_a_sampled_generation_at_once_and_restarts_it(
    server: TestClient,
) -> None:
    c, provider = server, server.app.state.provider
    _wait_serving(c, "gen")
    runner = _runner(c, "gen")
    old = runner.worker.process
    restarts = runner.worker.restarts
    provider.faults.set([FaultRule(phase="forward", model="gen", exception="RuntimeError", message=FATAL)])
    try:
        # Sampled generation is never retried: a second run would give another text. The child raises the device
        # error, says so, and exits; its requests get 503 worker_crashed, chained from the device error.
        t0 = time.monotonic()
        req = provider.submit("gen", "text-generation", PROMPT, {"do_sample": True, "seed": 1, **LONG})
        with pytest.raises(WorkerCrashed) as err:
            req.future.result(30)
        assert time.monotonic() - t0 < 1.0
    finally:
        provider.faults.set([])
    assert FATAL in str(err.value.__cause__)
    old.join(10)
    assert old.exitcode == 70  # child.FATAL_EXIT: it ended itself, its device context was unusable
    _wait_serving(c, "gen")
    assert runner.worker.restarts == restarts + 1
    r = c.post(
        "/v1/tasks/text-generation",
        json={"model": "gen", "inputs": "hi", "parameters": {"max_new_tokens": 3}},
    )
    assert r.status_code == 200, r.text


def test_sigkill_of_a_sampled_generation_answers_503_within_a_second(server: TestClient) -> None:
    c, provider = server, server.app.state.provider
    _wait_serving(c, "gen")
    pid = _models(c)["gen"]["pid"]
    req = provider.submit(
        "gen", "text-generation", PROMPT, {"do_sample": True, "seed": 2, **LONG}, timeout=60
    )
    _when_inside(c, "gen")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashed):
        req.future.result(30)
    assert time.monotonic() - t0 < 1.0
    _wait_serving(c, "gen")


def test_a_fatal_device_error_in_process_marks_the_model_failed_and_readyz_degraded(
    server: TestClient,
) -> None:
    c, provider = server, server.app.state.provider
    body = {"model": "doomed", "inputs": ["a good book"]}
    assert c.post("/v1/tasks/text-classification", json=body).status_code == 200
    assert c.get("/readyz").status_code == 200
    provider.faults.set([FaultRule(phase="forward", model="doomed", exception="RuntimeError", message=FATAL)])
    try:
        r = c.post("/v1/tasks/text-classification", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_failed", r.text
    finally:
        provider.faults.set([])
    # The fault is gone, but the device context it stood for is not: refused before parsing, never run again;
    # its fallback serves instead, saying why.
    injected = provider.faults.injected
    assert isinstance(_runner(c, "doomed").refusal(), DeviceFailed)
    for _ in range(3):
        r = c.post("/v1/tasks/text-classification", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-hfp-served-by"] == "cls"
        assert r.headers["x-hfp-fallback-reason"] == "worker_crashed"
    assert provider.faults.injected == injected
    ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "degraded"
    assert ready.json()["down"]["model/doomed"] == "device_fatal"
    doomed = _models(c)["doomed"]
    assert doomed["state"] == "failed" and "fatal device error" in doomed["error"]  # with its reason
    assert c.post("/v1/tasks/text-classification", json=CLS).status_code == 200  # others serve on
    assert provider.errors(model="doomed", error_class="device_fatal")
    # A reload gives it a new start.
    assert c.post("/v1/admin/models/doomed/unload").status_code == 200
    assert c.post("/v1/admin/models/doomed/load").status_code == 200
    r = c.post("/v1/tasks/text-classification", json=body)
    assert r.status_code == 200 and r.headers["x-hfp-served-by"] == "doomed"
    assert c.get("/readyz").status_code == 200


def test_the_worker_answers_as_the_in_process_model_streams_and_stops_a_cancelled_row(
    server: TestClient,
) -> None:
    c, provider = server, server.app.state.provider
    _wait_serving(c, "gen")
    for prompt in ("the cat", "a long way home"):
        params = {"max_new_tokens": 30}
        assert provider.run("gen", "text-generation", prompt, params) == provider.run(
            "gen-thread", "text-generation", prompt, params
        )
    # Deltas cross the pipe as they are made, and add up to the answer.
    deltas: list[str | None] = []
    req = provider.submit("gen", "text-generation", PROMPT, {"max_new_tokens": 30}, sink=deltas.append)
    result = req.future.result(60)
    assert deltas[-1] is None and len(deltas) > 2
    assert "".join(d for d in deltas if d) == result["generated_text"]
    # A cancelled request's row is stopped inside the child at its next token: the worker is free at once
    # instead of generating the remaining ~1000 tokens for nobody.
    # Judged by tokens, not time, so a slow machine cannot fail it: the child's counts reach the parent.
    worker = _runner(c, "gen").worker
    before = _tokens_generated(c, "gen")
    req = provider.submit("gen", "text-generation", PROMPT, {"max_new_tokens": 3000})
    _when_inside(c, "gen")
    req.cancel(time.monotonic(), "the client left")
    with pytest.raises(Cancelled):
        req.future.result(10)
    deadline = time.monotonic() + 120
    while worker._call_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not worker._call_lock.locked()
    made = _tokens_generated(c, "gen") - before
    assert made < 1000, f"the child kept generating for a cancelled request ({made} of 3000 tokens)"


def _tokens_generated(c: TestClient, model: str) -> float:
    pattern = rf'^hfp_tokens_generated_total{{[^}}]*model="{model}"[^}}]*}} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, c.get("/metrics").text, re.MULTILINE))
