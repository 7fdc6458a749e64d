"""Structured outputs (runtime/constrained.py): response_format through the official `openai` client, the
grammar parameter of /v1/tasks/text-generation, and constrained rows sharing batches with free ones without
changing them (static `generate` and the continuous engine)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from fastapi.testclient import TestClient
from openai import BadRequestError, OpenAI

from hf_provider.provider import Provider
from hf_provider.runtime.constrained import CACHE
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec

MAX_TOKENS = 200  # the tiny decoder has 256 positions; every schema below closes well within this


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from hf_provider.server.factory import build

    src = str(tiny_models["decoder"])
    models: list[dict[str, Any]] = [
        {"name": "lm", "source": src, "tasks": ["text-generation"], "device": "cpu"},
        {
            "name": "lm-cb",
            "source": src,
            "tasks": ["text-generation"],
            "device": "cpu",
            "batching": {"generation": "continuous"},
        },
    ]
    app = build(load_settings({"models": models}, home=tmp_path_factory.mktemp("home")))
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


@pytest.fixture(scope="module")
def client(server: TestClient) -> OpenAI:
    return OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=server)


def _schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A random schema of the kinds clients send: nested objects, arrays, enums, required fields, bounded so a
    random model's output closes within MAX_TOKENS."""
    kinds = ["string", "integer", "boolean", "enum", "number"] + (["object", "array"] if depth < 2 else [])
    props: dict[str, Any] = {}
    for i in range(rng.randint(1, 3 if depth else 4)):
        kind = rng.choice(kinds)
        name = f"{rng.choice(['id', 'name', 'tags', 'city', 'ok', 'n', 'items'])}_{i}"
        if kind == "string":
            props[name] = {"type": "string", "maxLength": rng.randint(0, 6)}
        elif kind == "integer":
            props[name] = {"type": "integer", "minimum": -50, "maximum": rng.randint(0, 999)}
        elif kind == "number":
            props[name] = {"type": "number", "minimum": 0, "maximum": 10}
        elif kind == "boolean":
            props[name] = {"type": "boolean"}
        elif kind == "enum":
            props[name] = {"enum": rng.sample(["red", "green", "blue", "x y", 'q"t'], rng.randint(1, 3))}
        elif kind == "object":
            props[name] = _schema(rng, depth + 1)
        else:
            props[name] = {"type": "array", "items": _schema(rng, depth + 1), "maxItems": rng.randint(0, 2)}
    required = rng.sample(sorted(props), rng.randint(0, len(props)))
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


SCHEMAS = [_schema(random.Random(i)) for i in range(100)]


def _fmt(i: int) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": SCHEMAS[i], "strict": True}}


def test_100_varied_schemas_validate_non_streamed(client: OpenAI) -> None:
    for i, schema in enumerate(SCHEMAS):
        out = client.chat.completions.create(
            model="lm",
            messages=[{"role": "user", "content": f"Describe thing {i} as JSON."}],
            response_format=_fmt(i),
            max_tokens=MAX_TOKENS,
            temperature=1.0,
            seed=i,
        )
        c = out.choices[0]
        assert c.finish_reason == "stop", (i, c.message.content)
        jsonschema.validate(json.loads(c.message.content), schema)


def test_100_varied_schemas_validate_streamed(client: OpenAI) -> None:
    for i, schema in enumerate(SCHEMAS):
        chunks = client.chat.completions.create(
            model="lm-cb",
            messages=[{"role": "user", "content": f"Describe thing {i} as JSON."}],
            response_format=_fmt(i),
            max_tokens=MAX_TOKENS,
            temperature=1.0,
            seed=i,
            stream=True,
        )
        text, finish = "", None
        for ch in chunks:
            if ch.choices:
                text += ch.choices[0].delta.content or ""
                finish = ch.choices[0].finish_reason or finish
        assert finish == "stop", (i, text)
        jsonschema.validate(json.loads(text), schema)


def test_json_object_and_completions_take_response_format_too(client: OpenAI) -> None:
    out = client.chat.completions.create(
        model="lm",
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
        max_tokens=MAX_TOKENS,
        logit_bias={str(i): -5 for i in range(100, 1000)},  # favour closing: JSON characters are low ids
    )
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(out.choices[0].message.content), dict)
    else:  # the budget ran out inside a string: still a prefix of an object
        assert out.choices[0].message.content.startswith("{")
    done = client.completions.create(
        model="lm",
        prompt="x",
        max_tokens=MAX_TOKENS,
        temperature=1.0,
        seed=3,
        extra_body={"response_format": _fmt(3)},
    )
    jsonschema.validate(json.loads(done.choices[0].text), SCHEMAS[3])


@pytest.mark.parametrize(
    ("fmt", "param"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}},
            "response_format",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": "nope"}},
            "response_format.json_schema.schema",
        ),
        ({"type": "json_schema", "json_schema": 3}, "response_format.json_schema"),
        ({"type": "yaml"}, "response_format.type"),
    ],
)
def test_invalid_schemas_are_a_400_naming_the_problem(client: OpenAI, fmt: dict, param: str) -> None:
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(
            model="lm", messages=[{"role": "user", "content": "x"}], response_format=fmt
        )
    assert e.value.body["param"] == param, e.value.body
    if param == "response_format":
        assert "frob" in e.value.body["message"] and "grammar" not in e.value.body["message"]


def test_regex_and_choice_on_the_task_route(server: TestClient) -> None:
    def run(grammar: dict[str, Any], n: int = 5) -> list[str]:
        r = server.post(
            "/v1/tasks/text-generation",
            json={
                "model": "lm",
                "inputs": ["a"] * n,
                "parameters": {"grammar": grammar, "max_new_tokens": 30, "temperature": 1.0},
            },
        )
        assert r.status_code == 200, r.text
        return [o["generated_text"] for o in r.json()["outputs"]]

    import re

    assert all(
        re.fullmatch(r"[0-9]{3}-[a-z]{2}", t) for t in run({"type": "regex", "pattern": "[0-9]{3}-[a-z]{2}"})
    )
    assert set(run({"type": "choice", "choices": ["yes", "no", "a.b (c)"]}, 8)) <= {"yes", "no", "a.b (c)"}
    bad = server.post(
        "/v1/tasks/text-generation",
        json={
            "model": "lm",
            "inputs": "a",
            "parameters": {"grammar": {"type": "regex", "pattern": "(unclosed"}},
        },
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "grammar"


def test_compiled_grammars_are_cached_per_schema_and_tokenizer(client: OpenAI) -> None:
    fmt = _fmt(7)
    client.chat.completions.create(
        model="lm", messages=[{"role": "user", "content": "a"}], response_format=fmt, max_tokens=MAX_TOKENS
    )
    misses = CACHE.misses
    client.chat.completions.create(
        model="lm", messages=[{"role": "user", "content": "b"}], response_format=fmt, max_tokens=MAX_TOKENS
    )
    assert CACHE.misses == misses  # the second request compiled nothing


# -- constrained and free rows in one batch ------------------------------------------------------------------------
PROMPTS = ["the harbour", "a city council", "the weather in", "alice lives"]


def test_static_batch_free_rows_are_token_identical_with_constrained_rows_beside_them(loaded_lm) -> None:
    from hf_provider.runtime.tasks import build_handler

    h = build_handler("text-generation", loaded_lm)
    free_items, params, _ = h.parse(PROMPTS, {"max_new_tokens": 12})
    fmt = {"type": "json_schema", "schema": SCHEMAS[5]}
    con_items, _, _ = h.parse(PROMPTS, {"max_new_tokens": 12, "grammar": fmt})

    def run(items: list[Any]) -> list[dict[str, Any]]:
        batch = h.preprocess(items, params)
        with torch.inference_mode():
            out = h.forward(batch, params)
        return h.postprocess(batch, out, params)

    alone = run(free_items)
    mixed = run([x for pair in zip(free_items, con_items, strict=True) for x in pair])
    assert [r["generated_text"] for r in mixed[0::2]] == [r["generated_text"] for r in alone]
    assert all(r["generated_text"].startswith("{") for r in mixed[1::2])


def test_continuous_free_rows_are_token_identical_with_constrained_rows_beside_them(
    tiny_models: dict[str, Path],
) -> None:
    spec = ModelSpec(
        name="lm", source=str(tiny_models["decoder"]), device="cpu", batching={"generation": "continuous"}
    )
    with Provider([spec], settings=load_settings({"metrics_enabled": False})) as p:
        free = {"max_new_tokens": 16, "logprobs": 0}
        alone = [p.run("lm", "text-generation", t, free) for t in PROMPTS]
        con = {
            "max_new_tokens": 200,
            "temperature": 1.0,
            "seed": 1,
            "grammar": {"type": "json_schema", "schema": SCHEMAS[9]},
        }
        reqs = []
        for t in PROMPTS:  # interleaved, queued together: they join the running batch step by step
            reqs.append(p.submit("lm", "text-generation", t, con))
            reqs.append(p.submit("lm", "text-generation", t, free))
        results = [r.future.result(60) for r in reqs]
        for a, b in zip(alone, results[1::2], strict=True):
            assert b["generated_text"] == a["generated_text"]
            assert [e["id"] for e in b["logprobs"]] == [e["id"] for e in a["logprobs"]]
        for r in results[0::2]:
            jsonschema.validate(json.loads(r["generated_text"]), SCHEMAS[9])


@pytest.fixture(scope="module")
def loaded_lm(tiny_models: dict[str, Path]):
    from hf_provider.runtime.loader import load_model

    return load_model(ModelSpec(name="lm", source=str(tiny_models["decoder"]), device="cpu"))
