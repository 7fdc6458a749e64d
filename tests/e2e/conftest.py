"""The real server (factory.build: Observer + Provider + app) under uvicorn on loopback, once for the e2e
package. Models: MiniLM (embeddings), the tiny decoder (text-generation, has a chat template), tiny T5
(seq2seq tasks) and the tiny BERT classifier. The body limit is small (64 KiB) so the 413 paths are cheap
to provoke.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MAX_BODY = 65536
MAX_ITEMS = 64  # max_items_per_request of "minilm" and "cls"


@dataclass
class Served:
    url: str
    app: object
    settings: object


def e2e_config(tiny_models: dict[str, Path], minilm_path: Path, home: Path) -> dict:
    few = {"max_items_per_request": MAX_ITEMS}
    return {
        "home": str(home),
        "server": {"max_body_bytes": MAX_BODY},
        "models": [
            {
                "name": "minilm",
                "source": str(minilm_path),
                "tasks": ["embeddings"],
                "device": "cpu",
                "batching": few,
            },
            {
                "name": "lm",
                "source": str(tiny_models["decoder"]),
                "tasks": ["text-generation"],
                "device": "cpu",
            },
            {
                "name": "t5",
                "source": str(tiny_models["t5"]),
                "device": "cpu",
                "tasks": ["summarization", "translation", "question-answering", "text2text-generation"],
            },
            {
                "name": "cls",
                "source": str(tiny_models["bert-cls"]),
                "tasks": ["text-classification"],
                "device": "cpu",
                "batching": few,
            },
        ],
    }


@contextlib.contextmanager
def serve(config: dict, base: Path, ready: str = "/readyz") -> Iterator[Served]:
    """The real server (factory.build) for `config` under uvicorn on a port the OS picked, until the block ends.
    Waits until `ready` answers 200 (/healthz for a server that is not meant to become ready)."""
    import uvicorn

    from hf_provider.server.factory import build
    from hf_provider.settings import load_settings

    with pytest.MonkeyPatch.context() as mp:
        # The suite's autouse offline fixture is function-scoped; this server outlives single tests.
        mp.setenv("HF_HOME", str(base / "hf-home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        if "home" in config:  # the suite's HFP_HOME would win over the config's home (env over file)
            mp.setenv("HFP_HOME", str(config["home"]))
        settings = load_settings(config)
        app = build(settings)
        # Bound here and handed to uvicorn: picking a free port and binding it later races other processes.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config_ = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        srv = uvicorn.Server(config_)
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, name="e2e-uvicorn", daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, thread, path=ready)
            yield Served(url=url, app=app, settings=settings)
        finally:
            srv.should_exit = True
            thread.join(30)
            sock.close()
            assert not thread.is_alive(), "uvicorn did not shut down within 30 s"


@pytest.fixture(scope="package")
def server(
    tiny_models: dict[str, Path], minilm_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("e2e")
    with serve(e2e_config(tiny_models, minilm_path, base / "hfp-home"), base) as served:
        yield served


def _wait_ready(url: str, thread: threading.Thread, timeout_s: float = 120.0, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during start-up")
        try:
            r = httpx.get(f"{url}{path}", timeout=2.0)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.TransportError as e:
            last = repr(e)
        time.sleep(0.05)
    raise TimeoutError(f"server not ready after {timeout_s}s: {last}")


@pytest.fixture(scope="package")
def url(server: Served) -> str:
    return server.url


@pytest.fixture(scope="package")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60.0) as c:
        yield c
