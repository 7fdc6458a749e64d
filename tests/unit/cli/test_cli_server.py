"""`hfp models` and `hfp top` against a real loopback HTTP server that answers the admin routes the CLI calls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from hf_provider.cli.main import app

runner = CliRunner()
LONG_NAME = "paraphrase-multilingual-mpnet-base-v2"

MODELS: list[dict[str, Any]] = [
    {
        "name": LONG_NAME,
        "state": "ready",
        "tasks": ["embeddings"],
        "source": "sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
        "commit": "0123456789abcdef",
        "device": "cpu",
        "weight_bytes": 90_900_000,
        "queued": 3,
        "in_flight": 2,
        "pinned": False,
    }
]
SERIES: dict[str, Any] = {
    "t": [0, 5],
    "models": [LONG_NAME],
    "queue_depth": {LONG_NAME: [40.0, 17.0]},  # each step's peak: not what is queued now
    "in_flight": {LONG_NAME: [30.0, 11.0]},
    "cpu_percent": [10.0, 12.0],
    "rss_bytes": [1e9, 1e9],
    "weight_bytes": {LONG_NAME: [90_900_000, 90_900_000]},
}
STATS: dict[str, Any] = {
    "throughput_per_s": 1.5,
    "latency_ms": {"p50": 4.0, "p95": 9.0},
    "error_rate": 0.0,
    "client_error_rate": 0.465,  # the user's dashboard: every failure was a 4xx
}


class Server:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.port: int = httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str]] = []
        self.api_key: str | None = None  # when set, every route answers 401 without 'Bearer <api_key>'
        self.authorization: list[str | None] = []  # the Authorization header of each request


@pytest.fixture
def server() -> Iterator[Server]:
    state: dict[str, Server] = {}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: Any, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refused(self) -> bool:
            s = state["s"]
            s.authorization.append(self.headers.get("Authorization"))
            if s.api_key is None or self.headers.get("Authorization") == f"Bearer {s.api_key}":
                return False
            self._send({"error": {"message": "Missing or wrong API key", "code": "invalid_api_key"}}, 401)
            return True

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            state["s"].requests.append(("GET", path))
            if self._refused():
                return
            routes = {
                "/v1/admin/models": {"models": MODELS},
                "/v1/admin/series": SERIES,
                "/v1/admin/stats": STATS,
            }
            if path in routes:
                self._send(routes[path])
            else:
                self._send({"error": {"message": "no"}}, 404)

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            state["s"].requests.append(("POST", path))
            if self._refused():
                return
            name, action = path.removeprefix("/v1/admin/models/").rsplit("/", 1)
            self._send({"name": name, "state": "ready", "pinned": action == "pin"})

        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["s"] = Server(httpd)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["s"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _config(tmp_path: Path, host: str, port: int) -> Path:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f'[server]\nhost = "{host}"\nport = {port}\n\n[[models]]\nname = "c"\nsource = "x"\n')
    return cfg


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_models_finds_the_server_from_config(server: Server, tmp_path: Path, host: str) -> None:
    res = runner.invoke(app, ["models", "--config", str(_config(tmp_path, host, server.port)), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["state"] == "ready"
    assert ("GET", "/v1/admin/models") in server.requests


def test_models_finds_the_server_from_environment(server: Server) -> None:
    res = runner.invoke(app, ["models", "--json"], env={"HFP_SERVER__PORT": str(server.port)})
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["name"] == LONG_NAME


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--url", "{url}", "load", "m"],
        ["models", "load", "m", "--url", "{url}"],
        ["models", "--config", "{cfg}", "load", "m"],
        ["models", "load", "m", "--config", "{cfg}"],
    ],
)
def test_admin_subcommands_take_url_or_config_before_or_after(
    server: Server, tmp_path: Path, args: list[str]
) -> None:
    cfg = str(_config(tmp_path, "127.0.0.1", server.port))
    res = runner.invoke(app, [a.format(url=server.url, cfg=cfg) for a in args])
    assert res.exit_code == 0, res.output
    assert "m: ready" in res.output and ("POST", "/v1/admin/models/m/load") in server.requests


def test_url_wins_over_config(server: Server, tmp_path: Path) -> None:
    cfg = str(_config(tmp_path, "127.0.0.1", 9))
    res = runner.invoke(app, ["models", "--config", cfg, "pin", "m", "--url", server.url])
    assert res.exit_code == 0 and "m: ready (pinned)" in res.output


def test_models_table_at_80_columns_keeps_names_and_shows_human_sizes(server: Server) -> None:
    res = runner.invoke(app, ["models", "--url", server.url], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert LONG_NAME in res.output and "86.7 MiB" in res.output and "90900000" not in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80


def _row(output: str, model: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip().startswith(model))
    return line.split()  # hfp top's table has no vertical rules; no cell holds a space


def test_top_finds_the_server_from_config_and_shows_the_current_queue(server: Server, tmp_path: Path) -> None:
    cfg = str(_config(tmp_path, "0.0.0.0", server.port))
    res = runner.invoke(app, ["top", "--config", cfg, "--once"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "queue" in res.output and "busy" in res.output and "queued and in flight now" in res.output
    cells = _row(res.output, LONG_NAME)
    assert cells[4:6] == ["0.0%", "46.5%"], cells  # err counts server failures only; the 4xx beside it
    assert cells[6:8] == ["3", "2"], cells  # /v1/admin/models' queued and in_flight, not the series' peaks


def test_top_falls_back_to_the_last_series_sample() -> None:
    assert _row(_top_once(SERIES, STATS, 200), LONG_NAME)[6:8] == ["17", "11"]


def _top_once(series: dict[str, Any], stats: dict[str, Any], width: int) -> str:
    import io

    import httpx
    from rich.console import Console

    from hf_provider.cli.top import top

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"/v1/admin/series": series, "/v1/admin/stats": stats}.get(request.url.path)
        return httpx.Response(200, json=body) if body is not None else httpx.Response(404)

    out = io.StringIO()
    client = httpx.Client(base_url="http://hfp", transport=httpx.MockTransport(handler))
    assert top(once=True, client=client, console=Console(file=out, width=width)) == 0
    return out.getvalue()


def test_top_shows_a_dash_for_4xx_when_the_server_predates_it() -> None:
    older = {k: v for k, v in STATS.items() if k != "client_error_rate"}
    assert _row(_top_once(SERIES, older, 200), LONG_NAME)[4:6] == ["0.0%", "-"]


def test_top_keeps_a_21_character_model_name_and_both_rates_within_80_columns() -> None:
    name = "multilingual-e5-large"
    series = {k: {name: v[LONG_NAME]} if isinstance(v, dict) else v for k, v in SERIES.items()}
    series["models"] = [name]
    stats = STATS | {"error_rate": 0.123, "latency_ms": {"p50": 123.0, "p95": 1234.0}}
    out = _top_once(series, stats, 80)
    header = next(line for line in out.splitlines() if "req/s" in line)
    assert header.split() == [
        "model", "req/s", "p50", "p95", "err", "4xx", "queue", "busy", "weights", "work", "budget",
    ]  # fmt: skip
    assert _row(out, name)[:6] == [name, "1.50", "123", "1234", "12.3%", "46.5%"]
    assert "…" not in out


def test_top_without_a_server_is_one_line_and_fails() -> None:
    res = runner.invoke(app, ["top", "--url", "http://127.0.0.1:9", "--once"], env={"COLUMNS": "40"})
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "http://127.0.0.1:9" in lines[0], res.output


# --- API key: sent from --api-key (either side of a subcommand), HFP_SERVER__API_KEY or [server] api_key ---

KEY = "s3cret-key-value"


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--url", "{url}", "--api-key", KEY, "--json"],
        ["top", "--url", "{url}", "--api-key", KEY, "--once"],
        ["models", "--url", "{url}", "--api-key", KEY, "load", "m"],
        ["models", "load", "m", "--url", "{url}", "--api-key", KEY],
        ["models", "--api-key", KEY, "pin", "m", "--url", "{url}"],
    ],
)
def test_api_key_option_is_sent_as_bearer_token(server: Server, args: list[str]) -> None:
    server.api_key = KEY
    res = runner.invoke(app, [a.format(url=server.url) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert server.authorization and set(server.authorization) == {f"Bearer {KEY}"}
    assert KEY not in res.output
    assert "not running" not in res.output


def test_api_key_from_environment(server: Server) -> None:
    server.api_key = KEY
    res = runner.invoke(app, ["models", "--url", server.url, "--json"], env={"HFP_SERVER__API_KEY": KEY})
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["state"] == "ready"


def test_api_key_from_config(server: Server, tmp_path: Path) -> None:
    server.api_key = KEY
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f'[server]\nport = {server.port}\napi_key = "{KEY}"\n')
    for args in (["models", "--config", str(cfg), "unload", "m"], ["top", "--config", str(cfg), "--once"]):
        res = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
    assert set(server.authorization) == {f"Bearer {KEY}"}


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--url", "{url}"],
        ["models", "--url", "{url}", "--json"],
        ["models", "--url", "{url}", "load", "m"],
        ["top", "--url", "{url}", "--once"],
    ],
)
def test_missing_key_is_one_line_and_fails(server: Server, args: list[str]) -> None:
    server.api_key = KEY
    res = runner.invoke(app, [a.format(url=server.url) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code != 0
    lines = _lines(res.output)
    assert len(lines) == 1, res.output
    assert f"the server at {server.url} needs an API key" in lines[0]
    assert "--api-key" in lines[0] and "HFP_SERVER__API_KEY" in lines[0]
    said = res.output.replace(server.url, "URL")  # the port is random: 35401 once made "401" appear
    assert "not running" not in said and "httpx" not in said and "401" not in said
    assert server.authorization and set(server.authorization) == {None}


@pytest.mark.parametrize("command", [["models"], ["models", "pin", "m"], ["top", "--once"]])
def test_wrong_key_is_refused_in_one_line_without_echoing_it(server: Server, command: list[str]) -> None:
    server.api_key = KEY
    res = runner.invoke(app, [*command, "--url", server.url, "--api-key", "wrong-guess-123"])
    assert res.exit_code != 0
    lines = _lines(res.output)
    assert len(lines) == 1 and "refused the API key" in lines[0], res.output
    assert "wrong-guess-123" not in res.output and "not running" not in res.output


def test_api_key_help_shows_no_value(server: Server) -> None:
    res = runner.invoke(app, ["top", "--help"], env={"HFP_SERVER__API_KEY": KEY, "COLUMNS": "200"})
    assert res.exit_code == 0 and "--api-key" in res.output and KEY not in res.output


# --- `hfp serve` on a non-loopback address without a key warns once on stderr ---


@pytest.fixture
def no_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import hf_provider.server.factory

    monkeypatch.setattr(hf_provider.server.factory, "build", lambda settings: object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)


WARNING = "without an API key: anyone who can reach this port can use the models; set HFP_SERVER__API_KEY"


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_all_addresses_without_key_warns(no_serve: None, host: str) -> None:
    res = runner.invoke(
        app, ["serve", "--no-supervise", "--host", host, "--port", "0"], env={"COLUMNS": "300"}
    )
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if WARNING in line]
    assert len(warnings) == 1 and f"serving on {host} " in warnings[0], res.stderr
    assert WARNING not in res.stdout


@pytest.mark.parametrize(
    ("host", "env"),
    [
        ("127.0.0.1", {}),
        ("localhost", {}),
        ("0.0.0.0", {"HFP_SERVER__API_KEY": KEY}),
    ],
)
def test_serve_without_the_warning(no_serve: None, host: str, env: dict[str, str]) -> None:
    res = runner.invoke(app, ["serve", "--no-supervise", "--host", host, "--port", "0"], env=env)
    assert res.exit_code == 0, res.output
    assert WARNING not in res.output and KEY not in res.output
