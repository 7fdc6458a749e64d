"""A configured model that cannot be loaded (offline, not cached) is reported as what it is: /readyz says
`degraded` naming it (not `loading` forever), and its requests get an error naming the configured model and its
source, while the other models serve."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Served, serve


@pytest.fixture(scope="module")
def broken(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("broken")
    config = {
        "home": str(base / "hfp-home"),
        "models": [
            {"name": "t5", "source": "google-t5/t5-small", "tasks": ["summarization"]},  # not cached, offline
            {"name": "cls", "source": str(tiny_models["bert-cls"]), "tasks": ["text-classification"]},
        ],
    }
    with serve(config, base, ready="/healthz") as served:
        yield served


def test_readyz_names_the_model_that_failed_to_load(broken: Served) -> None:
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{broken.url}/readyz")
        if r.json()["status"] != "loading" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded" and "model-loading/t5" in body["down"]
    assert "google-t5/t5-small" in body["down"]["model-loading/t5"]


def test_requests_to_it_name_the_configured_model_and_others_serve(broken: Served) -> None:
    r = httpx.post(f"{broken.url}/v1/tasks/summarization", json={"model": "t5", "inputs": "Some text."})
    # 500 from a new load attempt, or 503 with Retry-After while the failed start-up load's backoff lasts
    assert r.status_code in (500, 503), r.text
    assert r.status_code == 500 or int(r.headers["retry-after"]) >= 1
    err = r.json()["error"]
    assert err["code"] == "model_load_failed"
    assert "'t5'" in err["message"] and "google-t5/t5-small" in err["message"]
    ok = httpx.post(f"{broken.url}/v1/tasks/text-classification", json={"model": "cls", "inputs": "fine"})
    assert ok.status_code == 200
