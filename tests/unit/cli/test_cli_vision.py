"""`hfp run <model> image-classification cat.png`: the file's bytes go to the model, the labels come back as a
table; a file that is no image is the model's 4xx, said in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from hf_provider.cli import main as cli
from hf_provider.testing.vision_models import VIT_LABELS

runner = CliRunner()


def test_run_classifies_an_image_file(tiny_models: dict, tmp_path: Path) -> None:
    cat = tmp_path / "cat.png"
    Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8")).save(cat)
    res = runner.invoke(cli.app, ["run", str(tiny_models["vit"]), "image-classification", str(cat)])
    assert res.exit_code == 0, res.output
    assert "label" in res.output and "score" in res.output
    assert sum(label in res.output for label in VIT_LABELS) == 5  # top_k 5 of 5 labels
    labels = ["-p", 'candidate_labels=["cat", "dog"]']
    args = ["run", str(tiny_models["clip"]), "zero-shot-image-classification", str(cat), str(cat), *labels]
    two = runner.invoke(cli.app, args)
    assert two.exit_code == 0, two.output
    assert "[1] " in two.output and "[2] " in two.output and "dog" in two.output  # one block per file


def test_run_says_a_file_is_no_image(tiny_models: dict, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    res = runner.invoke(cli.app, ["run", str(tiny_models["vit"]), "image-classification", str(notes)])
    assert res.exit_code != 0
    assert "not an image" in res.output and "Traceback" not in res.output


def test_run_embeds_an_image_file_and_a_text_with_a_clip(tiny_models: dict, tmp_path: Path) -> None:
    cat = tmp_path / "cat.png"
    Image.fromarray((np.random.RandomState(1).rand(40, 40, 3) * 255).astype("uint8")).save(cat)
    res = runner.invoke(
        cli.app, ["run", str(tiny_models["clip"]), "embeddings", str(cat), "a photo of a cat"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("16 dimensions") == 2 and "a photo of a cat" in res.output
