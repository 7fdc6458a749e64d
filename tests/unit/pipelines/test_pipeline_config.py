"""Every kind of mistake in `[[pipelines]]` stops the Provider at construction (no model loads) with a ConfigError
naming the pipeline, the step and the field; `hfp run --pipeline` and `hfp serve` print it as one line, exit 2,
no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hf_provider.cli.main import app
from hf_provider.errors import ConfigError
from hf_provider.provider import Provider
from hf_provider.settings import load_settings

MODELS = [
    {"name": "t5", "source": "/nonexistent/t5", "device": "cpu", "tasks": ["translation", "summarization"]},
    {"name": "any", "source": "/nonexistent/any", "device": "cpu"},  # no declared tasks: checked at load
]


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "metrics_enabled": False,
        "models": MODELS,
        "pipelines": [{"name": "digest", "steps": list(steps)}],
    }


T = {"name": "translate", "model": "t5", "task": "translation"}


def _fails(config: dict[str, Any], *expected: str) -> str:
    with pytest.raises(ConfigError) as e:
        Provider(settings=load_settings(config))
    for part in expected:
        assert part in e.value.message, e.value.message
    return e.value.message


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            {"name": "s", "model": "t6", "task": "summarization"},
            ("field 'model'", "unknown model 't6'", "t5"),
        ),
        ({"name": "s", "model": "t5", "task": "summarize"}, ("field 'task'", "unknown task 'summarize'")),
        ({"name": "s", "model": "t5", "task": "text-generation"}, ("field 'task'", "does not serve task")),
        (
            {"name": "s", "model": "t5", "task": "summarization", "input": "{translat.text}"},
            ("field 'input'", "step 'translat', which does not exist", "steps: translate, s"),
        ),
        (
            {"name": "s", "model": "t5", "task": "summarization", "input": "{s.text}"},
            ("field 'input'", "refers to the step itself"),
        ),
        (
            {"name": "s", "model": "t5", "task": "summarization", "input": "{item}"},
            ("field 'input'", "only a step with `map` has"),
        ),
        (
            {"name": "s", "model": "t5", "task": "summarization", "map": "docs: {inputs}"},
            ("field 'map'", "one reference to a list"),
        ),
        (
            {"name": "s", "model": "t5", "task": "summarization", "after": ["nothing"]},
            ("field 'after'", "'nothing' is not another step"),
        ),
        (
            {
                "name": "s",
                "model": "t5",
                "task": "summarization",
                "when": {"value": "{nope.label}", "equals": 1},
            },
            ("field 'when.value'", "step 'nope', which does not exist"),
        ),
        ({"name": "translate", "model": "t5", "task": "summarization"}, ("field 'name'", "another step")),
        ({"name": "inputs", "model": "t5", "task": "summarization"}, ("field 'name'", "reserved")),
        (
            {"name": "s", "model": "t5", "task": "summarization", "input": "{translate"},
            ("not a valid template",),
        ),
    ],
)
def test_each_mistake_names_pipeline_step_and_field(step: dict[str, Any], expected: tuple[str, ...]) -> None:
    message = _fails(_steps(T, step), "pipeline 'digest'", *expected)
    assert f"step '{step['name']}'" in message


def test_a_cycle_names_the_steps_in_it() -> None:
    a = {"name": "a", "model": "t5", "task": "translation", "input": "{b.text}"}
    b = {"name": "b", "model": "t5", "task": "summarization", "input": "{a.text}"}
    message = _fails(_steps(a, b), "pipeline 'digest', step", "cycle")
    assert "a -> b -> a" in message or "b -> a -> b" in message


def test_shape_mistakes_and_duplicate_pipelines_fail_at_load() -> None:
    bad = {
        "metrics_enabled": False,
        "models": MODELS,
        "pipelines": [{"name": "p", "steps": [{**T, "modle": "x"}]}],
    }
    with pytest.raises(ConfigError, match=r"pipelines\.0\.steps\.0\.modle"):
        load_settings(bad)
    two = {"metrics_enabled": False, "models": MODELS, "pipelines": [{"name": "p", "steps": [T]}] * 2}
    _fails(two, "pipeline 'p' is declared twice")
    cond = {**T, "when": {"value": "{inputs}", "equals": 1, "one_of": [1]}}
    with pytest.raises(ConfigError, match="exactly one of equals, not_equals, one_of"):
        load_settings(_steps(cond))


def test_a_good_pipeline_starts_and_lists_what_waits_for_what() -> None:
    s = {"name": "s", "model": "t5", "task": "summarization"}  # default input: the previous step's text
    fan = {"name": "f", "model": "any", "task": "summarization", "input": "{inputs}"}
    with Provider(settings=load_settings(_steps(T, s, fan))) as p:
        (described,) = p.pipelines.describe()
        needs = {step["name"]: step["needs"] for step in described["steps"]}
        assert needs == {"translate": [], "s": ["translate"], "f": []}
        # a model with no declared tasks is checked once loaded, against what it serves
        problems = p.pipelines.check_served({"any": ["embeddings"], "t5": ["translation"]}.get)
        assert [pipe for pipe, _ in problems] == ["digest", "digest"]
        assert "step 'f', field 'task': model 'any' does not serve task 'summarization'" in problems[1][1]


runner = CliRunner()


def _toml(tmp_path: Path, step_model: str) -> Path:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(
        '[[models]]\nname = "t5"\nsource = "/nonexistent/t5"\ntasks = ["translation"]\n\n'
        f'[[pipelines]]\nname = "digest"\nsteps = [{{ name = "translate", model = "{step_model}", '
        'task = "translation" }]\n',
        encoding="utf-8",
    )
    return cfg


def test_hfp_run_pipeline_prints_the_mistake_as_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "--pipeline", "digest", "text", "--config", str(_toml(tmp_path, "t6"))])
    assert res.exit_code == 2
    assert "pipeline 'digest', step 'translate', field 'model': unknown model 't6'" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["run", "--pipeline", "digets", "text", "--config", str(_toml(tmp_path, "t5"))])
    assert res.exit_code == 2 and "unknown pipeline 'digets'" in res.output


def test_hfp_serve_stops_on_the_mistake_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(a))
    cfg = _toml(tmp_path, "t6")
    res = runner.invoke(app, ["serve", "--config", str(cfg), "--port", "0"])
    out = res.output + capfd.readouterr().err  # the banner and the error go to the process's stderr
    assert res.exit_code == 2, out
    assert "error: pipeline 'digest', step 'translate', field 'model': unknown model 't6'" in out
    assert "Traceback" not in out and not served


def test_hfp_run_pipeline_prints_the_answer_and_with_steps_every_step(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(
        f'[[models]]\nname = "t5"\nsource = "{tiny_models["t5"]}"\ndevice = "cpu"\n'
        'tasks = ["translation", "summarization"]\n\n'
        '[[pipelines]]\nname = "digest"\nsteps = [\n'
        '  { name = "translate", model = "t5", task = "translation" },\n'
        '  { name = "summary", model = "t5", task = "summarization" },\n]\n',
        encoding="utf-8",
    )
    args = [
        "run",
        "--pipeline",
        "digest",
        "The cat sat.",
        "--config",
        str(cfg),
        "-p",
        "summary.max_new_tokens=3",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.strip() and "{" not in res.output  # the summary's text
    res = runner.invoke(app, [*args, "--steps"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert (
        list(body["steps"]) == ["translate", "summary"]
        and body["outputs"] == body["steps"]["summary"]["output"]
    )
    res = runner.invoke(app, [*args[:-1], "max_new_tokens=3"])
    assert res.exit_code == 2 and "step.name=value" in res.output
