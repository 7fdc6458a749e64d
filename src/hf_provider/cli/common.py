"""Helpers every `hfp` command shares: one-line errors, settings errors that name their source, server address.

Light imports only (settings and pydantic load inside functions) so `hfp --help` stays instant.
"""

from __future__ import annotations

import difflib
import errno
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import httpx

    from hf_provider.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
_ANY_ADDRESS = {"0.0.0.0", "::", ""}  # bind-to-all addresses: a client reaches such a server on loopback


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and exit. soft_wrap: rich would otherwise hard-wrap long messages mid-sentence."""
    from rich.console import Console
    from rich.markup import escape

    # escape: names and URLs in the message may hold brackets that rich would read as markup
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def load(config: Path | None, **overrides: Any) -> Settings:
    """load_settings, with a settings error turned into one line and exit code 2."""
    from hf_provider.errors import ConfigError
    from hf_provider.settings import load_settings

    try:
        return load_settings(config, **overrides)
    except ConfigError as e:
        fail(e.message, 2)


def server_url(url: str | None, config: Path | None) -> str:
    """Where a running server answers: --url, else [server] host/port from --config and HFP_ variables."""
    if url:
        return url.rstrip("/")
    return _url_of(load(config))


def _url_of(settings: Settings) -> str:
    server = settings.server
    host = "127.0.0.1" if server.host in _ANY_ADDRESS else server.host
    if ":" in host and not host.startswith("["):  # an IPv6 literal needs brackets in a URL
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


API_KEY_HELP = "the server's API key (default: \\[server] api_key of --config and HFP_SERVER__API_KEY)"

# The options every command that reads a config or calls a server shares, one definition each.
ConfigOpt = Annotated[
    Path | None,
    # help text is rich markup, which reads "[models]" as a tag ("[] tables"): rich.markup.escape's form
    typer.Option(
        "--config",
        "-c",
        help="hfp.toml: its [\\[models]] tables, \\[server] address and the rest; hfp.lock lives beside it",
        exists=True,
        dir_okay=False,
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="a running hfp server (default: \\[server] host and port of --config and HFP_SERVER__*, "
        "else http://127.0.0.1:8000)",
    ),
]
# never shown back: no default in --help, and the key stays out of every message
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help=API_KEY_HELP, show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def connect(url: str | None, config: Path | None, api_key: str | None, timeout: float = 10.0) -> httpx.Client:
    """A client for a running server: base URL as server_url, key from --api-key, else [server] api_key of
    --config and HFP_SERVER__API_KEY. Settings load only when one of the two is not given."""
    settings = load(config) if not url or not api_key else None
    base = url.rstrip("/") if url else _url_of(settings)  # type: ignore[arg-type]
    if not api_key and settings is not None and settings.server.api_key is not None:
        api_key = settings.server.api_key.get_secret_value() or None
    return http_client(base, api_key, timeout)


def http_client(base: str, api_key: str | None = None, timeout: float = 10.0) -> httpx.Client:
    """The one place an `hfp` command builds its HTTP client. It sends `Authorization: Bearer <key>` when
    there is a key, and ends the command with one line on a 401 (never the key, never "not running")."""
    import httpx

    base = base.rstrip("/")

    def on_response(response: httpx.Response) -> None:
        if response.status_code != 401:
            return
        if api_key:
            fail(f"the server at {base} refused the API key; check --api-key or HFP_SERVER__API_KEY")
        fail(f"the server at {base} needs an API key: pass --api-key or set HFP_SERVER__API_KEY")

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(
        base_url=base, headers=headers, timeout=timeout, event_hooks={"response": [on_response]}
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost); False for 0.0.0.0 etc."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to an outside address


def check_model_name(model: str, known: Iterable[str]) -> None:
    """Exit 2 with a suggestion when `model` looks like a misspelling of a known name.

    Runs before any load: an unknown name would otherwise be taken for a Hub id and cost a Hub round trip
    (with retries when online) that ends in an unhelpful error. Known names, existing folders and names close
    to no known name (Hub ids, which are a feature) pass. Matching ignores case: `all-minilm-l6-v2` is caught.
    """
    known = list(dict.fromkeys(known))
    if model in known or Path(model).exists():
        return
    by_folded = {name.casefold(): name for name in known}
    close = difflib.get_close_matches(model.casefold(), list(by_folded), n=1, cutoff=0.8)
    if close:
        fail(f"unknown model {model!r}; did you mean {by_folded[close[0]]!r}?", 2)


def check_port_free(host: str, port: int) -> None:
    """Exit 2 when host:port cannot be bound, before any model loads (which may take minutes).

    Binds as uvicorn does (same family choice, SO_REUSEADDR, so a port in TIME_WAIT still counts as free) and
    closes the socket at once; a server that takes the port in between still fails, in uvicorn, as before.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use; choose another with --port", 2)
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}; check --host and --port", 2)


# this invocation's --verbose, set by the callback (main._process) before any command runs
VERBOSE = {"on": False}


def is_verbose() -> bool:
    """Whether this `hfp` invocation has --verbose (or HFP_VERBOSE)."""
    return VERBOSE["on"]
