"""Sizes and durations as configs and specs write them ('8GiB', 0.8, '80%', '5m'): parsing and validation only.

A leaf module (standard library only): settings, specs, the memory budget and the cache budget all read sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GPU_MEMORY = "each GPU's memory"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
# Bare K/M/G/T are binary (as Docker and Ollama read them); KB/MB/GB/TB are decimal; KiB/MiB/GiB/TiB are binary.
_UNITS: dict[str, int] = {"": 1, "b": 1}
for _i, _p in enumerate("kmgt", start=1):
    _UNITS[_p] = 1024**_i
    _UNITS[f"{_p}ib"] = 1024**_i
    _UNITS[f"{_p}b"] = 1000**_i

SizeValue = str | int | float


def _forms(of: str) -> str:
    return (
        f"use bytes such as '8GiB' or '512MB', an integer number of bytes, or a fraction of {of} between "
        "0 and 1 such as 0.8"
    )


@dataclass(frozen=True)
class _Size:
    """A parsed size: `nbytes`, or a `fraction` in (0, 1] of a total known only later."""

    nbytes: int = 0
    fraction: float | None = None


def _parse(value: SizeValue, of: str) -> _Size:
    """The one size parser: syntax and range only, no total needed. Raises ValueError naming the forms."""

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid size {value!r}: {why}; {_forms(of)}")

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad("not a size")
    if isinstance(value, int):
        if value < 0:
            raise bad("a size cannot be negative")
        return _Size(nbytes=value)
    if isinstance(value, float):
        fraction = value
    else:
        text = value.strip()
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                pct = -1.0
            if not 0 < pct <= 100:
                raise bad("a percentage must be in (0, 100]")
            return _Size(fraction=pct / 100)
        m = _SIZE_RE.match(text)
        if not m or m.group(2).lower() not in _UNITS:
            raise bad("unknown form (units: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)")
        if m.group(2):
            return _Size(nbytes=int(float(m.group(1)) * _UNITS[m.group(2).lower()]))
        if "." not in m.group(1):
            return _Size(nbytes=int(m.group(1)))
        fraction = float(m.group(1))
    # A unitless float is only unambiguous in (0, 1]: 1.5 could mean one byte or 150 %, and 2.0 or 3e9 (a TOML
    # float) reads as a fraction to some and bytes to others, so byte counts must be integers or carry a unit.
    if not 0 < fraction <= 1:  # also false for NaN
        raise bad("a number without a unit must be a fraction in (0, 1]")
    return _Size(fraction=fraction)


def check_size(value: SizeValue, *, of: str = "the device's memory") -> None:
    """Raise ValueError unless `value` is a valid size; fractions pass without knowing the total (settings)."""
    _parse(value, of)


def is_fraction(value: SizeValue) -> bool:
    """Whether a valid size is a fraction of a total (so the total must be probed to resolve it)."""
    return _parse(value, "the total").fraction is not None


def parse_size(value: SizeValue, total: int | None, *, of: str = "the device's memory") -> int:
    """Bytes from "2GiB", "512MB", "1.5G", "80%", 123456 (bytes), or a fraction 0 < x <= 1 of `total`.

    A float (or a unitless decimal string) must be in (0, 1]: a fraction of `total`, 1 meaning all of it.
    Integers are bytes.
    """
    size = _parse(value, of)
    if size.fraction is None:
        return size.nbytes
    if total is None:
        raise ValueError(
            f"size {value!r} is a fraction, but the device's total memory is unknown; give bytes "
            "such as '2GiB'"
        )
    return int(total * size.fraction)


DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """'5m' -> 300.0; numbers are seconds."""
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    m = DURATION_RE.match(value)
    if not m:
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit ms, s, m, h or d, such as '5m'"
        )
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_size(nbytes: float | None) -> str:
    """Bytes as people read them, in the binary units the config takes: '86.6 MiB', '512 B', '123 MiB', '-'.

    The one formatter for the CLI, the report page and admin messages; dashboard/static/charts.js `fmt.bytes`
    writes the same (a decimal only below 100), so one model shows one figure everywhere.
    """
    if nbytes is None:
        return "-"
    v, unit = float(nbytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            break
        v /= 1024
    return f"{v:.0f} {unit}" if unit == "B" or abs(v) >= 100 else f"{v:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """Seconds as the config writes durations, so parse_duration reads it back: 86400 -> '24h' (a day reads
    more often as 24h than 1d), 900 -> '15m', 90 -> '90s', 0.25 -> '250ms'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        # whole days from 2d up; 24h, 36h stay in hours; 90s stays in seconds (1.5m would not parse)
        if seconds % size == 0 and seconds >= size * (2 if unit == "d" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.0f}s" if seconds == int(seconds) else f"{seconds:g}s"
