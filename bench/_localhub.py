"""Point this process at a LocalHub for a benchmark (use_local_hub wants pytest's monkeypatch: this is one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hf_provider.testing.hub_server import LocalHub, use_local_hub


class _Patch:
    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value

    def delenv(self, name: str, raising: bool = True) -> None:
        os.environ.pop(name, None)

    def setattr(self, target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)


def point_at(hub: LocalHub, home: Path) -> None:
    use_local_hub(_Patch(), hub, home)
