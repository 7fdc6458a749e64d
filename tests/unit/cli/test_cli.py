from __future__ import annotations

import json

from typer.testing import CliRunner

from hf_provider.cli.main import app

runner = CliRunner()


def test_run_default_model_json():
    res = runner.invoke(app, ["run", "all-MiniLM-L6-v2", "embeddings", "a cat", "a kitten", "--json"])
    assert res.exit_code == 0, res.output
    vectors = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(vectors) == 2 and len(vectors[0]) == 384


def test_run_folder_with_params(tiny_models):
    res = runner.invoke(
        app,
        [
            "run",
            str(tiny_models["decoder"]),
            "text-generation",
            "Hello",
            "--param",
            "max_new_tokens=3",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "generated_text" in json.loads(res.stdout.strip().splitlines()[-1])


def test_run_question_answering_json_input(tiny_models):
    payload = json.dumps({"question": "Who?", "context": "Alice lives in Paris."})
    res = runner.invoke(app, ["run", str(tiny_models["bert-qa"]), "question-answering", payload, "--json"])
    assert res.exit_code == 0, res.output
    assert "answer" in json.loads(res.stdout.strip().splitlines()[-1])


def test_run_errors_are_one_clear_line(tiny_models):
    res = runner.invoke(app, ["run", "all-MiniLM-L6-v2", "summarization", "x"])
    assert res.exit_code == 1 and "embeddings" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["run", "x", "embeddings", "a", "--param", "oops"])
    assert res.exit_code == 2 and "key=value" in res.output


def test_models_lists_configuration_without_server(tmp_path, tiny_models):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f'[[models]]\nname = "c"\nsource = "{tiny_models["bert-cls"]}"\n')
    res = runner.invoke(app, ["models", "--config", str(cfg), "--url", "http://127.0.0.1:9", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[0]["name"] == "c" and rows[0]["state"] == "not running"


def test_serve_refuses_invalid_config(tmp_path):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text('[[models]]\nname = "c"\nsource = "x"\ndtype = "float8"\n')
    res = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert res.exit_code == 2 and "models.0.dtype" in res.output


def test_admin_commands_without_server_say_how_to_start_one():
    res = runner.invoke(app, ["models", "load", "x", "--url", "http://127.0.0.1:9"])
    assert res.exit_code == 1 and "hfp serve" in res.output
