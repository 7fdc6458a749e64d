"""Bench helpers: start an `hfp serve` subprocess, and a lean keep-alive HTTP/1.1 load client.

The client is hand-written on asyncio streams because general clients (httpx, aiohttp) spend several hundred
microseconds of CPU per request, which on a 2-core machine would be taken from the server being measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env: dict[str, str] | None = None, config: Path | None = None, timeout: float = 180.0
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # The server process itself, not `hfp serve`'s supervisor around it (CPU is measured by pid); a --compare-src
    # version from before the supervisor has no such flag.
    src = Path((env or {}).get("PYTHONPATH") or ROOT / "src")
    cli = (src / "hf_provider" / "cli" / "main.py").read_text()
    flag = ["--no-supervise"] if "--no-supervise" in cli else []
    cmd = [sys.executable, "-m", "hf_provider.cli.main", "serve", *flag, "--port", str(port)]
    if config:
        cmd += ["--config", str(config)]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " + proc.stderr.read().decode()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(4096):
                    return proc, url
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.post(path, None)

    async def post(
        self, path: str, payload: dict | None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST `payload` as JSON to `path`; None sends a GET."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = b"" if payload is None else orjson.dumps(payload)
        method = "GET" if payload is None else "POST"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            + "\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.partition(b":")
            if k.lower() == b"content-length":
                length = int(v)
        data = await self.reader.readexactly(length)
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def drive(url: str, path: str, payloads: list[dict], concurrency: int) -> dict:
    """Send every payload, `concurrency` at a time over keep-alive connections; returns timings."""
    host, port = url.removeprefix("http://").split(":")
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        conn = Conn(host, int(port))
        try:
            while True:
                try:
                    p = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                status, _ = await conn.post(path, p)
                latencies.append(time.perf_counter() - t0)
                errors += status != 200
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - t0, "latencies": latencies, "errors": errors}


def run_client(url: str, path: str, payloads: list[dict], concurrency: int) -> dict:
    """Run the load from a separate client process so it is not the server's own interpreter."""
    spec = json.dumps({"url": url, "path": path, "payloads": payloads, "concurrency": concurrency})
    out = subprocess.run([sys.executable, __file__], input=spec.encode(), capture_output=True, check=True)
    return json.loads(out.stdout)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    args = json.loads(sys.stdin.read())
    res = asyncio.run(drive(args["url"], args["path"], args["payloads"], args["concurrency"]))
    sys.stdout.write(json.dumps(res))
