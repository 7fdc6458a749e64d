"""The request lifecycle over real HTTP: reserved parameters, deadlines, disconnects, cancellation of running
generations, outcomes counted, in-flight counts that return to zero, readiness that reports a dead component."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hf_provider.testing.models import build_sized_gpt2
from tests.e2e.conftest import Served, serve

PROMPT = "Alice lives in"


@pytest.fixture(scope="module")
def life(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("life")
    long_lm = build_sized_gpt2(tiny_models["decoder"].parent, 64, 2, positions=4096)
    config = {
        "home": str(base / "hfp-home"),
        "memory": {"keep_alive_check_s": 0.1},
        "models": [
            {
                "name": "lm",
                "source": str(tiny_models["decoder"]),
                "tasks": ["text-generation"],
                "device": "cpu",
            },
            {"name": "long", "source": str(long_lm), "tasks": ["text-generation"], "device": "cpu"},
            {
                "name": "sleepy",
                "source": str(tiny_models["decoder"]),
                "tasks": ["text-generation"],
                "device": "cpu",
                "keep_alive": "0s",
            },
        ],
    }
    with serve(config, base) as served:
        yield served


@pytest.fixture
def client(life: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=life.url, timeout=60.0) as c:
        yield c


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def model_row(client: httpx.Client, name: str) -> dict:
    return next(m for m in client.get("/v1/admin/models").json()["models"] if m["name"] == name)


def wait_for(check, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def generate(client: httpx.Client, model: str, params: dict, **headers: str) -> httpx.Response:
    body = {"model": model, "inputs": PROMPT, "parameters": params}
    return client.post("/v1/tasks/text-generation", json=body, headers=headers)


@pytest.mark.parametrize("name", ["sink", "timeout", "priority"])
def test_reserved_parameters_get_400_naming_them_and_the_model_keeps_serving(
    client: httpx.Client, name: str
) -> None:
    before = metric(client, "hfp_requests_total", model="lm", outcome="client_error")
    r = generate(client, "lm", {name: {"timeout": 0.001, "sink": "x", "priority": "batch"}[name]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == name and repr(name) in err["message"]
    ok = generate(client, "lm", {"max_new_tokens": 3})
    assert ok.status_code == 200 and ok.json()["outputs"]["completion_tokens"] == 3
    assert metric(client, "hfp_requests_total", model="lm", outcome="client_error") == before + 1


def test_bad_timeout_header_is_a_400(client: httpx.Client) -> None:
    for value in ("soon", "-1", "0", "nan"):
        r = generate(client, "lm", {"max_new_tokens": 2}, **{"X-Request-Timeout": value})
        assert r.status_code == 400 and r.json()["error"]["param"] == "X-Request-Timeout"


def test_deadline_met_by_running_generation_answers_504(client: httpx.Client) -> None:
    r = generate(client, "long", {"max_new_tokens": 3000}, **{"X-Request-Timeout": "0.3"})
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "timeout"
    assert model_row(client, "long")["in_flight"] == 0


def test_stream_with_nothing_sent_gets_504(client: httpx.Client) -> None:
    body = {"model": "long", "prompt": PROMPT, "max_tokens": 100, "stream": True}
    r = client.post("/v1/completions", json=body, headers={"X-Request-Timeout": "0.0001"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text


def test_stream_stops_at_its_deadline_with_finish_reason_timeout(client: httpx.Client) -> None:
    body = {"model": "long", "prompt": PROMPT, "max_tokens": 3000, "stream": True}
    t0 = time.monotonic()
    with client.stream("POST", "/v1/completions", json=body, headers={"X-Request-Timeout": "0.5"}) as r:
        assert r.status_code == 200
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - t0 < 5
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "timeout"
    assert any(c["choices"][0]["text"] for c in chunks[:-1])  # it streamed before the deadline
    assert metric(client, "hfp_requests_total", model="long", outcome="timed_out") >= 1


def test_disconnect_mid_stream_stops_generating_within_100ms(life: Served, client: httpx.Client) -> None:
    body = {"model": "long", "prompt": PROMPT, "max_tokens": 2000, "stream": True}
    # A client of its own: its connection dies with it.
    with (
        httpx.Client(base_url=life.url, timeout=60.0) as own,
        own.stream("POST", "/v1/completions", json=body) as r,
    ):
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"text":"' in line and '"text":""' not in line:
                seen += 1
                if seen == 2:
                    break
    closed = time.monotonic()
    time.sleep(max(0.0, closed + 0.1 - time.monotonic()))
    after_100ms = metric(client, "hfp_tokens_generated_total", model="long")
    time.sleep(0.5)
    assert metric(client, "hfp_tokens_generated_total", model="long") == after_100ms
    assert after_100ms < 2000
    wait_for(lambda: model_row(client, "long")["in_flight"] == 0)
    assert metric(client, "hfp_requests_total", model="long", outcome="cancelled") >= 1


async def _abandon(url: str, n: int) -> None:
    """n clients that send a generation request and hang up before its answer."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "sleepy", "inputs": PROMPT, "parameters": {"max_new_tokens": 200}})
    head = (
        f"POST /v1/tasks/text-generation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one() -> None:
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(head + body)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    await asyncio.gather(*(one() for _ in range(n)))


async def _time_out(url: str, n: int) -> list[int]:
    body = {"model": "sleepy", "inputs": PROMPT, "parameters": {"max_new_tokens": 200}}
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=httpx.Limits(max_connections=n)) as c:
        rs = await asyncio.gather(
            *(
                c.post("/v1/tasks/text-generation", json=body, headers={"X-Request-Timeout": "0.05"})
                for _ in range(n)
            )
        )
    return [r.status_code for r in rs]


def test_abandoned_and_timed_out_requests_leave_nothing_in_flight(life: Served, client: httpx.Client) -> None:
    async def both() -> list[int]:
        # The hang-ups first, on an idle model, so they are accepted (not refused) before their clients leave.
        await _abandon(life.url, 100)
        return await _time_out(life.url, 100)

    statuses = asyncio.run(both())
    assert set(statuses) <= {200, 429, 504} and 504 in statuses
    wait_for(
        lambda: model_row(client, "sleepy")["in_flight"] == 0 and model_row(client, "sleepy")["queued"] == 0
    )
    # keep_alive 0s: the model is unloaded once nothing is in flight (a leaked count would keep it forever)
    wait_for(lambda: model_row(client, "sleepy")["state"] == "unloaded")
    assert metric(client, "hfp_requests_total", model="sleepy", outcome="cancelled") >= 1
    assert metric(client, "hfp_requests_total", model="sleepy", outcome="timed_out") >= 1


def test_client_errors_have_their_own_rate_beside_the_server_error_rate(client: httpx.Client) -> None:
    generate(client, "lm", {"colour": "red"})
    stats = client.get("/v1/admin/stats", params={"model": "lm", "window": 3600}).json()
    n = stats["requests"]
    assert stats["client_errors"] >= 1
    assert stats["client_error_rate"] == pytest.approx(stats["client_errors"] / n, abs=1e-6)
    failed = stats["errors"] + stats["timed_out"] + stats["rejected"]  # the bad parameter is not among them
    assert stats["error_rate"] == pytest.approx(failed / n, abs=1e-6)


def test_readyz_reports_a_component_that_is_down(life: Served, client: httpx.Client) -> None:
    sv = life.app.state.provider.supervisor
    assert client.get("/readyz").status_code == 200
    sv.mark_down("forward/lm", "thread ended unexpectedly")
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {
        "status": "degraded",
        "down": {"forward/lm": "thread ended unexpectedly"},
    }
    sv.ok("forward/lm")
    assert client.get("/readyz").status_code == 200
