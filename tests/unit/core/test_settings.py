from __future__ import annotations

import pytest

from hf_provider.errors import ConfigError
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec


def test_toml_file_models_and_defaults(tmp_path):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text("""
[server]
port = 9123

[[models]]
name = "t5"
source = "org/t5"
revision = "v1"
tasks = ["summarization", "translation"]
keep_alive = "5m"
defaults = { summarization = { max_new_tokens = 20 } }
""")
    s = load_settings(cfg)
    assert s.server.port == 9123 and s.server.host == "127.0.0.1"
    m = s.models[0]
    assert (m.name, m.source, m.revision, m.keep_alive) == ("t5", "org/t5", "v1", 300.0)
    assert m.defaults["summarization"]["max_new_tokens"] == 20
    assert m.trust_remote_code is False


def test_env_overrides_file(tmp_path, monkeypatch):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text("[server]\nport = 9000\n")
    monkeypatch.setenv("HFP_SERVER__PORT", "9555")
    assert load_settings(cfg).server.port == 9555
    assert load_settings(cfg, server={"port": 1234}).server.port == 1234  # explicit beats env


@pytest.mark.parametrize(
    ("models", "field", "hint"),
    [
        ([{"name": "a", "source": "x", "dtype": "float8"}], "models.0.dtype", "'float32'"),
        ([{"name": "a", "source": "x", "device": "tpu"}], "models.0.device", "cuda:N"),
        ([{"name": "a", "source": "x", "tasks": ["dance"]}], "models.0.tasks", "summarization"),
        ([{"name": "a", "source": "x", "keep_alive": "soon"}], "models.0.keep_alive", "unit"),
        ([{"name": "a"}], "models.0.source", "required"),
        ([{"name": "a", "source": "x", "colour": "red"}], "models.0.colour", "Extra inputs"),
    ],
)
def test_invalid_config_names_field_and_allowed_values(models, field, hint):
    with pytest.raises(ConfigError) as e:
        load_settings({"models": models})
    assert field in e.value.message and hint in e.value.message


FORMS = (
    "bytes such as '8GiB' or '512MB', an integer number of bytes, or a fraction of RAM between 0 and 1 "
    "such as 0.8"
)


@pytest.mark.parametrize("value", ['"8 gigs"', "1.5", "2.0", "-1", '"150%"', "true"])
def test_bad_memory_size_in_file_is_a_config_error(tmp_path, value):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f"[memory]\nhost_budget = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert "memory.host_budget" in e.value.message and FORMS in e.value.message


def test_bad_memory_size_in_env_is_a_config_error(monkeypatch):
    monkeypatch.setenv("HFP_MEMORY__HOST_BUDGET", "8gigs")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert "memory.host_budget" in e.value.message and FORMS in e.value.message
    monkeypatch.setenv("HFP_MEMORY__GPU_BUDGET", "1.5")
    monkeypatch.delenv("HFP_MEMORY__HOST_BUDGET")
    with pytest.raises(
        ConfigError,
        match=r"memory\.gpu_budget \(from environment variable HFP_MEMORY__GPU_BUDGET=.*fraction of each GPU.s memory",
    ):
        load_settings()


@pytest.mark.parametrize("value", ['"8GiB"', '"512MB"', "123456", '"123456"', "0.8", '"80%"'])
def test_valid_memory_sizes_load_unchanged(tmp_path, value):
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f"[memory]\nhost_budget = {value}\ngpu_budget = {value}\n")
    s = load_settings(cfg)
    assert s.memory.host_budget == s.memory.gpu_budget and s.memory.host_budget is not None


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[models]\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_spec_validation_messages():
    with pytest.raises(ValueError, match="allowed values"):
        ModelSpec(name="a", source="x", tasks=["nope"])
    with pytest.raises(ValueError, match="not in tasks"):
        ModelSpec(name="a", source="x", tasks=["summarization"], defaults={"translation": {}})
