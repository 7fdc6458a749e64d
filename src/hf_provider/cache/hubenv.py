"""The Hub environment one call runs in (endpoint, cache folder, offline), and lifting huggingface_hub's
import-time offline flag for the calls that must go online.

Here, below both cache/ and hub/, because the cache's integrity checks and pins need the cache folder and the
re-download of a bad file needs the Hub online, while hub/ (resolve, fetch, lock) builds on the cache.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubEnv:
    """The Hub settings in force for one call, read from the environment at that moment."""

    endpoint: str
    cache_dir: Path
    offline: bool

    @classmethod
    def current(cls, offline: bool | None = None) -> HubEnv:
        env = os.environ
        if offline is None:
            offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in _TRUE
        cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
        if not cache:
            home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
            cache = os.path.join(home, "hub")
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=Path(os.path.expandvars(os.path.expanduser(cache))),
            offline=offline,
        )


# huggingface_hub refuses every request while its import-time `constants.HF_HUB_OFFLINE` is true, even when
# the environment (or the caller) now says online. Lift it for the duration of online calls, counting nested
# and concurrent users, and put the frozen value back afterwards so code that relies on it stays offline.
_flag_lock = threading.Lock()
_flag_users = 0
_flag_saved = False


@contextmanager
def hub_online() -> Iterator[None]:
    global _flag_users, _flag_saved
    from huggingface_hub import constants

    with _flag_lock:
        if _flag_users == 0:
            _flag_saved = constants.HF_HUB_OFFLINE
            if _flag_saved:
                log.debug(
                    "huggingface_hub was imported with HF_HUB_OFFLINE set; lifting it for this download"
                )
            constants.HF_HUB_OFFLINE = False
        _flag_users += 1
    try:
        yield
    finally:
        with _flag_lock:
            _flag_users -= 1
            if _flag_users == 0:
                constants.HF_HUB_OFFLINE = _flag_saved
