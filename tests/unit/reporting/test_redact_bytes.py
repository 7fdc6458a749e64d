"""An uploaded file in a report's input digest: its size and hash, never its bytes or a repr of them."""

from __future__ import annotations

import hashlib

from hf_provider.reporting.redact import digest


def test_bytes_are_digested_not_repr() -> None:
    data = b"RIFF" + bytes(range(256)) * 64
    d = digest(data, include=True)
    assert d["items"] == 1 and d["chars"] < 120
    assert hashlib.sha256(data).hexdigest() in d["text"] and "\\x" not in d["text"]
    assert digest([data, data])["items"] == 2
