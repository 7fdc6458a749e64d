"""`hfp serve` restarts its server when the server process dies, and says so in /healthz; a SIGTERM to the
supervisor is final. A real process tree: the CLI as a subprocess, its server killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _free_port() -> int:
    # The CLI binds by number; a race with another process taking it in between would fail the start loudly.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str, timeout: float = 120.0, *, until=lambda h: True) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/healthz", timeout=2)
            if r.status_code == 200 and until(r.json()):
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a process we do not control: there is no event to wait on
    raise AssertionError(f"/healthz did not answer as expected within {timeout}s")


def test_a_killed_server_is_restarted_and_healthz_counts_it(tmp_path: Path, tiny_models) -> None:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(
        f'home = "{tmp_path / "home"}"\n[[models]]\nname = "cls"\nsource = "{tiny_models["bert-cls"]}"\n'
        'tasks = ["text-classification"]\ndevice = "cpu"\n'
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HFP_RESTARTS", None)
    parent = subprocess.Popen(
        [sys.executable, "-m", "hf_provider.cli.main", "serve", "--config", str(cfg), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        first = _health(url)
        assert first["supervised"] is True and first["restarts"] == 0 and first["pid"] != parent.pid
        os.kill(first["pid"], signal.SIGKILL)
        again = _health(url, until=lambda h: h["pid"] != first["pid"])
        assert again["restarts"] == 1 and again["last_exit"] == "killed by SIGKILL"
        r = httpx.post(
            f"{url}/v1/tasks/text-classification", json={"model": "cls", "inputs": "x"}, timeout=60
        )
        assert r.status_code == 200, r.text
        parent.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so its exit status tells why: 128 + SIGTERM.
        assert parent.wait(60) in (0, 128 + signal.SIGTERM)  # and it was not started again
        with pytest.raises(ProcessLookupError):
            os.kill(again["pid"], 0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        assert parent.stderr is not None
        parent.stderr.close()
