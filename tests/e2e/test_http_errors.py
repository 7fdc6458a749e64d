"""Every error path over real HTTP (OpenAI error body, right 4xx, request id); health, admin, task routes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import MAX_BODY, MAX_ITEMS

RID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def assert_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert RID.match(r.headers.get("x-request-id", "")), r.headers
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == "invalid_request_error"
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def post_raw(
    http: httpx.Client, path: str, content: bytes | Iterator[bytes], **headers: str
) -> httpx.Response:
    return http.post(path, content=content, headers={"content-type": "application/json", **headers})


# ---- error paths -------------------------------------------------------------------------------------------


def test_invalid_json_is_400(http: httpx.Client) -> None:
    r = post_raw(http, "/v1/embeddings", b'{"model": "minilm", "input": ')
    assert_error(r, 400, code="invalid_json")


def test_client_request_id_is_echoed_on_errors_and_success(http: httpx.Client) -> None:
    r = post_raw(http, "/v1/embeddings", b"{nope", **{"X-Request-ID": "client-rid-123"})
    assert_error(r, 400)
    assert r.headers["x-request-id"] == "client-rid-123"
    ok = http.post(
        "/v1/embeddings", json={"model": "minilm", "input": "hi"}, headers={"X-Request-ID": "abc.def"}
    )
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "abc.def"
    # a malformed id is replaced by a fresh one rather than reflected
    bad = http.get("/healthz", headers={"X-Request-ID": "has space/and slash"})
    assert bad.headers["x-request-id"] != "has space/and slash" and RID.match(bad.headers["x-request-id"])


def test_distinct_generated_request_ids(http: httpx.Client) -> None:
    ids = {http.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    "path,body,param",
    [
        ("/v1/embeddings", {"model": "minilm", "input": 42}, "input"),
        ("/v1/embeddings", {"input": "hi"}, "model"),
        ("/v1/embeddings", {"model": "minilm", "input": "hi", "encoding_format": "hex"}, "encoding_format"),
        ("/v1/chat/completions", {"model": "lm", "messages": []}, "messages"),
        ("/v1/chat/completions", {"model": "lm", "messages": [{"role": "wizard", "content": "x"}]}, None),
        ("/v1/completions", {"model": "lm", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ("/v1/tasks/embeddings", {"model": "minilm"}, "inputs"),
    ],
)
def test_schema_violation_is_400(http: httpx.Client, path: str, body: dict, param: str | None) -> None:
    err = assert_error(http.post(path, json=body), 400, code="invalid_request")
    if param is not None:
        assert err["param"].split(".")[0] == param


def test_json_array_body_is_400(http: httpx.Client) -> None:
    assert_error(post_raw(http, "/v1/embeddings", b"[1, 2]"), 400)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/embeddings", {"model": "nope", "input": "hi"}),
        ("/v1/completions", {"model": "nope", "prompt": "hi"}),
        ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        (
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ),
        ("/v1/tasks/summarization", {"model": "nope", "inputs": "hi"}),
    ],
)
def test_unknown_model_is_404(http: httpx.Client, path: str, body: dict) -> None:
    err = assert_error(http.post(path, json=body), 404)
    assert "nope" in err["message"]


def test_unknown_admin_model_is_404(http: httpx.Client) -> None:
    assert_error(http.post("/v1/admin/models/nope/load"), 404)


def test_task_not_served_is_400_listing_served_tasks(http: httpx.Client) -> None:
    err = assert_error(
        http.post("/v1/embeddings", json={"model": "cls", "input": "hi"}), 400, code="task_not_supported"
    )
    assert "text-classification" in err["message"]
    err = assert_error(
        http.post("/v1/tasks/summarization", json={"model": "minilm", "inputs": "hi"}),
        400,
        code="task_not_supported",
    )
    assert "embeddings" in err["message"]
    # completions on a model without a generation task
    err = assert_error(
        http.post("/v1/completions", json={"model": "minilm", "prompt": "hi"}), 400, code="task_not_supported"
    )
    assert "embeddings" in err["message"]


def test_unknown_task_name_is_400(http: httpx.Client) -> None:
    err = assert_error(
        http.post("/v1/tasks/levitation", json={"model": "t5", "inputs": "hi"}), 400, param="task"
    )
    assert "summarization" in err["message"]


def test_unknown_route_is_404_with_openai_body(http: httpx.Client) -> None:
    assert_error(http.get("/v1/nothing-here"), 404)
    assert_error(http.get("/v1/embeddings"), 405)


def test_oversize_body_with_content_length_is_413(http: httpx.Client) -> None:
    big = json.dumps({"model": "minilm", "input": "x" * (MAX_BODY + 10)}).encode()
    assert_error(
        post_raw(http, "/v1/embeddings", big, **{"X-Request-ID": "big-1"}), 413, code="request_too_large"
    )


def test_oversize_chunked_body_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "minilm", "input": "'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"y" * 4096
        yield b'"}'

    r = post_raw(http, "/v1/embeddings", chunks(), **{"X-Request-ID": "big-2"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_error(r, 413, code="request_too_large")
    assert r.headers["x-request-id"] == "big-2"
    # the connection and server stay healthy afterwards
    assert http.get("/healthz").status_code == 200


def test_too_many_items_is_413(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "minilm", "input": ["a"] * (MAX_ITEMS + 1)})
    err = assert_error(r, 413, param="input")
    assert str(MAX_ITEMS) in err["message"]
    r = http.post("/v1/tasks/text-classification", json={"model": "cls", "inputs": ["a"] * (MAX_ITEMS + 1)})
    assert_error(r, 413)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/embeddings", {"model": "minilm", "input": ""}),
        ("/v1/embeddings", {"model": "minilm", "input": []}),
        ("/v1/embeddings", {"model": "minilm", "input": ["ok", "   "]}),
        ("/v1/completions", {"model": "lm", "prompt": ""}),
        ("/v1/tasks/text-classification", {"model": "cls", "inputs": []}),
    ],
)
def test_empty_input_is_400(http: httpx.Client, path: str, body: dict) -> None:
    assert_error(http.post(path, json=body), 400)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/completions", {"model": "lm", "prompt": "hi", "temperature": -1}),
        (
            "/v1/chat/completions",
            {"model": "lm", "messages": [{"role": "user", "content": "hi"}], "temperature": -1},
        ),
        (
            "/v1/chat/completions",
            {"model": "lm", "messages": [{"role": "user", "content": "hi"}], "top_p": 0, "stream": True},
        ),
        ("/v1/completions", {"model": "lm", "prompt": "hi", "max_tokens": 0}),
        ("/v1/tasks/text-generation", {"model": "lm", "inputs": "hi", "parameters": {"temperature": -1}}),
        (
            "/v1/tasks/text-generation",
            {"model": "lm", "inputs": "hi", "parameters": {"max_new_tokens": "lots"}},
        ),
        ("/v1/tasks/text-generation", {"model": "lm", "inputs": "hi", "parameters": {"bogus": 1}}),
        ("/v1/embeddings", {"model": "minilm", "input": "hi", "dimensions": 100000}),
    ],
)
def test_bad_generation_param_is_400(http: httpx.Client, path: str, body: dict) -> None:
    assert_error(http.post(path, json=body), 400)


def test_bad_priority_is_400(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "minilm", "input": "hi"}, headers={"X-Priority": "urgent"})
    assert_error(r, 400, param="priority")
    r = http.post(
        "/v1/tasks/embeddings", json={"model": "minilm", "inputs": "hi", "parameters": {"priority": "vip"}}
    )
    assert_error(r, 400, param="priority")


def test_streaming_on_task_endpoint_is_400(http: httpx.Client) -> None:
    r = http.post(
        "/v1/tasks/text-generation", json={"model": "lm", "inputs": "hi", "parameters": {"stream": True}}
    )
    assert_error(r, 400)


def test_streaming_an_encoder_decoder_says_which_models_stream(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"model": "t5", "prompt": "hi", "stream": True})
    msg = assert_error(r, 400, param="stream")["message"]
    assert "'text2text-generation' does not stream" in msg
    assert "decoder-only" in msg and "stream: false" in msg


# ---- health, admin, task endpoints -------------------------------------------------------------------------


def test_healthz_and_readyz(http: httpx.Client) -> None:
    h = http.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok" and RID.match(h.headers["x-request-id"])
    r = http.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready" and set(r.json()["models"]) == {"minilm", "lm", "t5", "cls"}


def test_admin_models_shape(http: httpx.Client) -> None:
    r = http.get("/v1/admin/models")
    assert r.status_code == 200
    models = r.json()["models"]
    assert {m["name"] for m in models} == {"minilm", "lm", "t5", "cls"}
    for m in models:
        for key in (
            "name",
            "state",
            "queued",
            "in_flight",
            "weight_bytes",
            "commit",
            "device",
            "dtype",
            "tasks",
        ):
            assert key in m, (m["name"], key)
        assert m["state"] == "ready"
        assert isinstance(m["queued"], int) and m["queued"] >= 0
        assert isinstance(m["weight_bytes"], int) and m["weight_bytes"] > 0
        assert m["device"] == "cpu" and m["dtype"] == "float32"
        assert isinstance(m["tasks"], list) and m["tasks"]
    by = {m["name"]: m for m in models}
    assert by["minilm"]["tasks"] == ["embeddings"]
    assert "summarization" in by["t5"]["tasks"]


QA = {
    "question": "Who announced the plan?",
    "context": "The city council announced a plan to rebuild the harbour.",
}


@pytest.mark.parametrize(
    "task,model,inputs,check",
    [
        ("embeddings", "minilm", ["one", "two"], lambda o: len(o) == 2 and len(o[0]) == 384),
        (
            "text-classification",
            "cls",
            ["good", "bad"],
            lambda o: len(o) == 2 and {"label", "score"} <= set(o[0] if isinstance(o[0], dict) else o[0][0]),
        ),
        (
            "summarization",
            "t5",
            "The council met for hours and agreed on a plan.",
            lambda o: isinstance(o["summary_text"], str),
        ),
        (
            "translation",
            "t5",
            ["The house is small.", "Good morning."],
            lambda o: len(o) == 2 and all(isinstance(x["translation_text"], str) for x in o),
        ),
        ("question-answering", "t5", QA, lambda o: isinstance(o["answer"], str)),
        ("text-generation", "lm", "once upon", lambda o: isinstance(o["generated_text"], str)),
    ],
)
def test_task_endpoint(http: httpx.Client, task: str, model: str, inputs, check) -> None:
    params = (
        {"max_new_tokens": 4}
        if task in ("summarization", "translation", "question-answering", "text-generation")
        else {}
    )
    r = http.post(f"/v1/tasks/{task}", json={"model": model, "inputs": inputs, "parameters": params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and body["task"] == task
    assert check(body["outputs"]), body["outputs"]


def test_batch_priority_header_accepted(http: httpx.Client) -> None:
    r = http.post(
        "/v1/embeddings", json={"model": "minilm", "input": ["a", "b"]}, headers={"X-Priority": "batch"}
    )
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    r = http.post(
        "/v1/tasks/text-classification",
        json={"model": "cls", "inputs": "fine"},
        headers={"X-Priority": "batch"},
    )
    assert r.status_code == 200, r.text


def test_metrics_count_requests_after_traffic(http: httpx.Client) -> None:
    assert http.post("/v1/embeddings", json={"model": "minilm", "input": "count me"}).status_code == 200
    r = http.get("/metrics")
    assert r.status_code == 200
    lines = [ln for ln in r.text.splitlines() if ln.startswith("hfp_requests_total{")]
    assert any('model="minilm"' in ln for ln in lines), r.text[:2000]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if 'model="minilm"' in ln) >= 1


def test_unexpected_exception_is_a_generic_500_with_request_id(server, http: httpx.Client) -> None:
    """The one path that may give 500: a bug, not bad input. No detail leaks; the request id is on it."""

    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    server.app.add_api_route("/_e2e/boom", boom, methods=["GET"], include_in_schema=False)
    r = http.get("/_e2e/boom", headers={"X-Request-ID": "rid-500"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "rid-500"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "server_error"
    assert "secret" not in r.text and "rid-500" in err["message"]
