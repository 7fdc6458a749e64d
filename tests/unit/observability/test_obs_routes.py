"""The observability router on a bare FastAPI app, through Starlette's TestClient; and `hfp top --once`."""

from __future__ import annotations

import io

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from typer.testing import CliRunner

from hf_provider.cli.top import register, top
from hf_provider.observability.observer import Observer
from hf_provider.server.routes.observability import build_router


@pytest.fixture
def client():
    obs = Observer(home=None, model_bytes=lambda: {"tiny": {"weight_bytes": 2048, "accounted_bytes": None}})
    obs.model_loaded("tiny", "abc", 0.5, 2048)
    for i in range(20):
        obs.request_done(
            "tiny",
            "embed",
            "abc",
            "ok" if i % 5 else "error",
            0.002 * (i + 1),
            1,
            4,
            None if i % 5 else "InvalidInput",
        )
        obs.batch_done("tiny", "embed", 2, 8, 0.001, 0.0005, 0.004, 0.0002)
    obs.queue_depth("tiny", 2)
    obs.sample()
    app = FastAPI()
    app.include_router(build_router(lambda: obs, lambda: [{"name": "tiny"}, {"name": "idle"}]))
    with TestClient(app) as c:
        yield c
    obs.close()


def test_metrics_endpoint(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"hfp_requests", "hfp_request_latency_seconds", "hfp_stage_seconds"} <= names


def test_profile(client: TestClient) -> None:
    r = client.get("/v1/admin/profile", params={"model": "tiny"})
    assert r.status_code == 200
    body = r.json()
    assert body["batches"] == 20
    assert sum(s["percent"] for s in body["stages"].values()) == pytest.approx(100, abs=0.01)
    assert client.get("/v1/admin/profile", params={"model": "idle"}).json()["batches"] == 0
    r = client.get("/v1/admin/profile", params={"model": "nope"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and err["param"] == "model" and "tiny" in err["message"]
    assert set(client.get("/v1/admin/profile").json()["models"]) == {"tiny", "idle"}


def test_stats_and_validation(client: TestClient) -> None:
    r = client.get("/v1/admin/stats")
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {
        "model",
        "task",
        "window_s",
        "requests",
        "throughput_per_s",
        "error_rate",
        "latency_ms",
    }
    assert body["window_s"] == 300 and body["requests"] == 20 and body["error_rate"] == pytest.approx(0.2)
    assert set(body["latency_ms"]) == {"p50", "p95", "p99"}
    assert (
        client.get("/v1/admin/stats", params={"model": "tiny", "task": "embed", "window": "60"}).json()[
            "requests"
        ]
        == 20
    )
    for junk in ("abc", "0", "-5", "nan", "inf", str(31 * 86400)):
        r = client.get("/v1/admin/stats", params={"window": junk})
        assert r.status_code == 400, junk
        assert r.json()["error"]["param"] == "window"


def test_series(client: TestClient) -> None:
    r = client.get("/v1/admin/series", params={"window": 300})
    assert r.status_code == 200
    s = r.json()
    assert s["models"] == ["tiny"] and len(s["t"]) == len(s["cpu_percent"])
    assert any(v is not None for v in s["throughput"]["tiny"])
    assert client.get("/v1/admin/series", params={"window": 86400, "step": 1}).status_code == 400
    assert client.get("/v1/admin/series", params={"window": 300, "step": "x"}).status_code == 400


def test_dashboard_assets(client: TestClient) -> None:
    r = client.get("/dashboard")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/dashboard/static/dashboard.js" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # every asset is local: no CDN
    js = client.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    assert client.get("/dashboard/static/..%2F__init__.py").status_code == 404
    assert client.get("/dashboard/static/missing.js").status_code == 404


def test_top_once_renders_a_frame(client: TestClient) -> None:
    out = io.StringIO()
    top(once=True, client=client, console=Console(file=out, width=140, force_terminal=False))
    text = out.getvalue()
    assert "tiny" in text and "idle" not in text  # no /v1/admin/models route here: models from the series
    assert "20.0%" in text and "RSS" in text
    assert "4xx: % client errors" in text


def test_top_fits_eighty_columns_with_every_header_whole(client: TestClient) -> None:
    out = io.StringIO()
    top(once=True, client=client, console=Console(file=out, width=80, force_terminal=False))
    header = next(line for line in out.getvalue().splitlines() if "req/s" in line)
    for col in ("model", "req/s", "p50", "p95", "err", "4xx", "queue", "busy", "weights", "work", "budget"):
        assert f" {col} " in f" {header} ", header
    assert "…" not in out.getvalue()


def test_top_reports_an_unreachable_server() -> None:
    out = io.StringIO()
    top(url="http://127.0.0.1:9", once=True, console=Console(file=out, width=120))
    assert "cannot read" in out.getvalue()


def test_register_adds_a_top_command() -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the app into `top`
        pass

    result = CliRunner().invoke(app, ["top", "--help"])
    assert result.exit_code == 0 and "--once" in result.output
