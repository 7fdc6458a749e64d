"""Helpers every `hfp` command shares: one-line errors, settings errors that name their source, server address.

Light imports only (settings and pydantic load inside functions) so `hfp --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
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
    server = load(config).server
    host = "127.0.0.1" if server.host in _ANY_ADDRESS else server.host
    if ":" in host and not host.startswith("["):  # an IPv6 literal needs brackets in a URL
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


def human_bytes(n: float | None) -> str:
    """Decimal units (90.9 MB), as model cards and file browsers show weight sizes."""
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
