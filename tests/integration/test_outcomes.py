"""One outcome path (observability/outcomes.py): every end of a request, and every refusal before a request
existed, is one `types.Outcome` handed to one recorder, exactly once, whichever layer ended it.

Through the Python API on tiny models, then over HTTP (the real app with its middleware, in-process): random
request content makes one error group per cause, a client error is filed under the model it named with the
message the client got, and a cancelled stream counts the tokens it really used."""

from __future__ import annotations

import contextlib
import random
import string
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hf_provider.errors import InvalidInput, ModelNotFound, Overloaded, ShuttingDown
from hf_provider.observability.observer import Observer
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_sized_gpt2
from hf_provider.types import Outcome


def _name(n: int = 10) -> str:
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


@pytest.fixture
def lm(tiny_models: dict[str, Path]):
    spec = ModelSpec(name="lm", source=str(tiny_models["decoder"]), tasks=["text-generation"], device="cpu")
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        seen: list[Outcome] = []
        lock = threading.Lock()

        def keep(o: Outcome) -> None:
            with lock:
                seen.append(o)

        p.outcomes.listen("test", keep)
        p.run("lm", "text-generation", "warm", {"max_new_tokens": 1})
        seen.clear()
        yield p, seen


# -- the Python API: each refusal recorded once, by the layer that refused ------------------------------------------
def test_refusals_before_the_queue_are_recorded_once_each(lm) -> None:
    p, seen = lm
    with pytest.raises(ModelNotFound):
        p.run(_name(), "text-generation", "x")
    with pytest.raises(InvalidInput):
        p.run("lm", "text-generation", "x", {_name(): 1})  # an unknown parameter
    with pytest.raises(InvalidInput):
        p.run("lm", "text-generation", "x", timeout=-1)  # a bad deadline, refused before submission
    assert [(o.model, o.outcome, o.phase) for o in seen] == [
        ("-", "client_error", "parse"),  # an unknown name collapses: clients cannot grow the labels
        ("lm", "client_error", "parse"),
        ("lm", "client_error", "parse"),
    ]
    assert all(o.error is not None and not hasattr(o.error, "recorded") for o in seen)


def test_an_admission_refusal_is_raised_by_the_scheduler_and_recorded_by_the_provider(lm) -> None:
    p, seen = lm
    sched = p.manager.get("lm").scheduler
    real = sched.admission.check

    def refuse(*a, **k) -> None:
        raise Overloaded("model 'lm' is overloaded", model="lm", retry_after=1.0)

    sched.admission.check = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(Overloaded):
            p.run("lm", "text-generation", "x", {"max_new_tokens": 1})
    finally:
        sched.admission.check = real  # type: ignore[method-assign]
    assert [(o.model, o.outcome, o.phase, type(o.error).__name__) for o in seen] == [
        ("lm", "rejected", "queue", "Overloaded")
    ]


def test_a_request_that_meets_its_model_unloading_is_refused_and_recorded_once(lm) -> None:
    p, seen = lm
    sched = p.manager.get("lm").scheduler
    sched.pending.close()  # what an unload does first: the scheduler stops taking work
    with pytest.raises(ShuttingDown):
        p.run("lm", "text-generation", "x", {"max_new_tokens": 1})
    assert [(o.model, o.outcome, o.phase, type(o.error).__name__) for o in seen] == [
        ("lm", "rejected", "queue", "ShuttingDown")
    ]


def test_a_settled_request_is_recorded_once_with_its_real_tokens(lm) -> None:
    p, seen = lm
    out = p.run("lm", "text-generation", "Alice lives in", {"max_new_tokens": 5})
    (o,) = seen
    assert o.outcome == "ok" and o.served_by == "lm" and o.request is not None
    generated = o.request.generated
    assert 1 <= generated <= 5 and o.tokens == o.request.input_tokens + generated
    assert out["completion_tokens"] <= generated  # an end-of-sequence token is generated, not returned


def test_a_cancelled_stream_adds_the_tokens_it_used_not_its_budget(tiny_models: dict[str, Path]) -> None:
    # A long-context decoder (as tests/integration/test_cancellation.py uses): its stream runs on until closed.
    path = build_sized_gpt2(tiny_models["decoder"].parent, 64, 2, positions=4096)
    obs = Observer(home=None)
    p = Provider([ModelSpec(name="lm", source=str(path), device="cpu")], observer=obs)
    seen: list[Outcome] = []
    p.outcomes.listen("test", seen.append)
    stream = p.stream("lm", "text-generation", "Alice lives in", {"max_new_tokens": 2000})
    for _ in range(3):
        next(stream)
    stream.close()  # cancels the request: settled (and recorded) before close returns
    (o,) = seen
    assert o.outcome == "cancelled"
    prompt = o.request.input_tokens
    assert 3 <= o.tokens - prompt < 50, o.tokens  # the tokens generated, never the 2000 it asked room for
    assert o.tokens == prompt + o.request.generated
    assert obs.metrics.tokens.labels("lm", "text-generation")._value.get() == o.tokens  # hfp_tokens_total
    p.close()


def test_a_listener_that_raises_is_counted_and_never_breaks_the_request(lm) -> None:
    p, seen = lm
    p.outcomes.listen("broken", lambda o: 1 / 0)
    assert p.run("lm", "text-generation", "x", {"max_new_tokens": 1})
    assert p.supervisor.errors["broken"] == 1 and len(seen) == 1


def test_completion_racing_cancellation_is_recorded_exactly_once(lm) -> None:
    """Settlement decides once (scheduling/request.py); the recorder hears the winner only. 50 rounds."""
    p, seen = lm
    for _ in range(50):
        req = p.submit("lm", "text-generation", "x", {"max_new_tokens": 1})
        canceller = threading.Thread(target=req.cancel, args=(0.0,))
        canceller.start()
        with contextlib.suppress(Exception):
            req.future.result(10)
        canceller.join()
    assert len(seen) == 50 and {o.outcome for o in seen} <= {"ok", "cancelled"}


# -- over HTTP: one group per cause, filed under the model named, counted once --------------------------------------
@pytest.fixture
def client(tiny_models: dict[str, Path], tmp_path: Path):
    from hf_provider.server.factory import build

    config = {"models": [{"name": "lm", "source": str(tiny_models["decoder"]), "tasks": ["text-generation"]}]}
    app = build(load_settings(config, home=tmp_path / "home"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_three_causes_with_random_content_make_exactly_three_groups_of_30(client) -> None:
    def task(body: object) -> int:
        if isinstance(body, bytes):
            r = client.post(
                "/v1/tasks/text-generation", content=body, headers={"content-type": "application/json"}
            )
        else:
            r = client.post("/v1/tasks/text-generation", json=body)
        return r.status_code

    for _ in range(30):
        assert task({"model": _name(), "inputs": "x"}) == 404  # an unknown model's name
        assert task(f'{{"{_name()}": [1, 2'.encode()) == 400  # not JSON, random keys
        assert task({"model": "lm", "inputs": "x", "parameters": {_name(): 1}}) == 400  # unknown parameter
    groups = client.get("/v1/admin/errors").json()["groups"]
    assert sorted((g["model"], g["count"]) for g in groups) == [("-", 30), ("-", 30), ("lm", 30)], groups
    codes = {g["exc_type"] for g in groups}
    assert codes == {"ModelNotFound", "InvalidJson", "InvalidInput"}
    metrics = client.get("/metrics").text
    # counted once each: by the Provider (unknown model, parameter) or by the server (the body), never both
    assert _count(metrics, "lm", "client_error") == 30
    assert _count(metrics, "-", "client_error") == 60
    stats = client.get("/v1/admin/stats").json()
    assert stats["error_rate"] == 0.0 and stats["client_error_rate"] == 1.0  # no server error among them


def test_a_client_error_is_filed_under_the_model_named_with_the_message_the_client_got(client) -> None:
    body = {"model": "lm", "messages": [{"role": "user", "content": "hi"}], "audio": {"voice": "x"}}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    groups = client.get("/v1/admin/errors").json()["groups"]
    assert len(groups) == 1, [(x["exc_type"], x["model"], x["count"], x["message"]) for x in groups]
    g = groups[0]
    assert g["model"] == "lm" and g["message"] == r.json()["error"]["message"]
    assert g["message"].startswith("Unsupported parameter 'audio'")


def _count(metrics: str, model: str, outcome: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if (
            line.startswith("hfp_requests_total{")
            and f'model="{model}"' in line
            and f'outcome="{outcome}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_5000_distinct_parameter_names_make_one_group_and_a_full_store_folds_into_overflow(
    tiny_models: dict[str, Path],
) -> None:
    spec = ModelSpec(name="lm", source=str(tiny_models["decoder"]), tasks=["text-generation"], device="cpu")
    settings = load_settings({"metrics_enabled": False, "reporting": {"max_groups": 2}})
    with Provider([spec], settings=settings) as p:
        for i in range(5000):
            with pytest.raises(InvalidInput, match=f"p{i}x"):  # the client is told which name
                p.run("lm", "text-generation", "x", {f"p{i}x{_name(4)}": 1})
        groups = p.errors()
        assert [(g["exc_type"], g["count"]) for g in groups] == [("InvalidInput", 5000)]
        # Past max_groups (2 here), a cause of a new kind folds into its class's overflow group, counted.
        with pytest.raises(ModelNotFound):
            p.run(_name(), "text-generation", "x")  # the second group
        p.refuse("lm", "text-generation", Overloaded("busy", model="lm"))  # a third kind: folded
        counts = sorted((g["fingerprint"].startswith("overflow:"), g["count"]) for g in p.errors())
        assert counts == [(False, 1), (False, 5000), (True, 1)]
        assert p.reporter.overflowed == {"overloaded": 1}
