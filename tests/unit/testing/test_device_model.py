"""The device-bound test model (hf_provider.testing.device_model): served through a normal spec with
trust_remote_code, refused without it, real outputs, its wait per batch of rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_provider.errors import InvalidInput, ModelLoadError
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.testing.device_model import build_device_bound


@pytest.fixture(scope="module")
def device_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_device_bound(tmp_path_factory.mktemp("device"), batch_seconds=0.001, ballast_bytes=4096)


def _provider(tmp_path: Path, source: Path, **spec: object) -> Provider:
    model = {
        "name": "dev",
        "source": str(source),
        "tasks": ["embeddings"],
        "device": "cpu",
        "dtype": "float32",
    }
    settings = load_settings({"home": str(tmp_path / "home"), "models": [{**model, **spec}]})
    return Provider(settings=settings, allow_adhoc=False)


def test_without_trust_remote_code_the_load_fails_and_says_so(tmp_path: Path, device_model: Path) -> None:
    with _provider(tmp_path, device_model) as p, pytest.raises(ModelLoadError) as e:
        p.load("dev")
    assert "trust_remote_code" in e.value.message


def test_served_as_an_embeddings_model_through_a_normal_spec(tmp_path: Path, device_model: Path) -> None:
    with _provider(tmp_path, device_model, trust_remote_code=True, batching={"max_batch_size": 8}) as p:
        p.load("dev")
        (view,) = p.admin.describe()
        assert view["state"] == "ready" and view["weight_bytes"] >= 4096  # the ballast counts as weights
        out = p.run("dev", "embeddings", ["a cat on a mat", "a dog in a house", "a cat on a mat"])
        assert [len(v) for v in out] == [32, 32, 32]
        assert list(out[0]) == pytest.approx(list(out[2]), abs=1e-6)  # the same text, the same vector
        assert list(out[0]) != pytest.approx(list(out[1]), abs=1e-6)
        with pytest.raises(InvalidInput) as bad:  # the embeddings handler's own input checks apply
            p.run("dev", "embeddings", [""])
        assert "empty" in str(bad.value)


def test_waits_one_batch_time_per_batch_rows_started(device_model: Path) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(device_model, trust_remote_code=True)
    assert type(model).__name__ == "DeviceBoundModel"
    seconds = [model.device_seconds(n) for n in (1, 8, 9, 16, 17)]
    assert seconds == pytest.approx([0.001, 0.001, 0.002, 0.002, 0.003])


def test_a_config_that_cannot_describe_a_device_is_refused(device_model: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(device_model, trust_remote_code=True)
    with pytest.raises(ValueError, match="batch_rows"):
        type(config)(batch_rows=0)
    with pytest.raises(ValueError, match="batch_seconds"):
        type(config)(batch_seconds=-1)
