"""A TCP proxy that delays every chunk by a fixed one-way latency: a client `--rtt-ms` away from the server, on a
machine whose kernel has no netem (`tc qdisc ... netem` is the usual way; this one's kernel lacks it, and
toxiproxy ships only as a GitHub binary, which this environment cannot fetch).

    python bench/_latency_proxy.py --target 127.0.0.1:8000 --rtt-ms 5 --port-file FILE

Listens on 127.0.0.1 (a free port, written to FILE once listening). Each direction forwards every chunk rtt/2
after it was read, in order (a constant delay keeps `call_at` times increasing), with TCP_NODELAY on both sides,
so a request and its response each pay half the round trip, as over a real link; bandwidth is not limited.
Timers fire up to a millisecond late on a busy machine: the bench prints the round trip it measured through it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            loop.call_at(loop.time() + delay, writer.write, data)
    finally:
        loop.call_at(loop.time() + delay, writer.close)


async def main(target: str, rtt_ms: float, port_file: Path) -> None:
    host, port = target.rsplit(":", 1)
    delay = rtt_ms / 2000.0

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(host, int(port))
        _nodelay(c_writer)
        _nodelay(s_writer)
        await asyncio.gather(_pipe(c_reader, s_writer, delay), _pipe(s_reader, c_writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, help="host:port of the server")
    ap.add_argument("--rtt-ms", type=float, required=True)
    ap.add_argument("--port-file", type=Path, required=True)
    a = ap.parse_args()
    asyncio.run(main(a.target, a.rtt_ms, a.port_file))
