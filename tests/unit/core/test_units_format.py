"""format_size and format_duration: the one way bytes and durations are written, and what the parsers read back."""

from __future__ import annotations

import pytest

from hf_provider.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (90_900_000, "86.7 MiB"),
        (123 * 2**20, "123 MiB"),
        (2**30, "1.0 GiB"),
        (5 * 2**40, "5.0 TiB"),
        (2048 * 2**40, "2048 TiB"),
    ],
)
def test_format_size_uses_binary_units_like_the_dashboard(nbytes: int | None, text: str) -> None:
    assert format_size(nbytes) == text


def test_format_size_reads_back() -> None:
    assert parse_size(format_size(2**30).replace(" ", ""), None) == 2**30


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (86400, "24h"),
        (7 * 86400, "7d"),
        (900, "15m"),
        (90, "90s"),
        (3600, "1h"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
    ],
)
def test_format_duration_as_the_config_writes_it(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
