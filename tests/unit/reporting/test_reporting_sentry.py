"""Forwarding to Sentry: the same redacted report, with our fingerprint, through a local transport (no network)."""

from __future__ import annotations

import pytest

from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.store import ErrorStore

sentry_sdk = pytest.importorskip("sentry_sdk")
from sentry_sdk.transport import Transport  # noqa: E402

from hf_provider.reporting.sentry import SentryForwarder  # noqa: E402


class Capture(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict] = []

    def capture_envelope(self, envelope) -> None:  # type: ignore[no-untyped-def, override]
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


def test_reports_reach_sentry_redacted_with_our_fingerprint() -> None:
    transport = Capture()
    forward = SentryForwarder("https://public@sentry.invalid/1", transport=transport)
    rep = Reporter(ErrorStore(None), known_models=lambda: ["lm"], forward=forward)
    secret = "hf_SentryCanary0123456789"
    r = rep.report(
        RuntimeError(f"failed with token {secret}"), model="lm", phase="forward", inputs=["private"]
    )
    assert r is not None
    rep.flush()  # forwarding happens with the store's write, off the request path
    (event,) = transport.events
    assert event["fingerprint"] == [r.fingerprint]
    assert event["tags"]["error_class"] == "internal" and event["tags"]["model"] == "lm"
    assert secret not in repr(event) and "private" not in repr(event)
    assert event["extra"]["inputs"]["sha256"] == r.inputs["sha256"]  # type: ignore[index]
    rep.close()


def test_a_missing_sentry_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    with pytest.raises(ImportError, match=r"hf-provider\[sentry\]"):
        SentryForwarder("https://public@sentry.invalid/1")
