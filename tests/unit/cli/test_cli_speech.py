"""`hfp run whisper automatic-speech-recognition clip.wav`: the file's bytes go to the model, the text is printed."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hf_provider.cli.main import app
from hf_provider.testing.audio import audio_file

runner = CliRunner()


def test_run_transcribes_an_audio_file(tiny_models, tmp_path) -> None:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text(f'[[models]]\nname = "whisper"\nsource = "{tiny_models["whisper"]}"\ndevice = "cpu"\n')
    clip = tmp_path / "clip.wav"
    clip.write_bytes(audio_file("wav"))
    args = [
        "run",
        "whisper",
        "automatic-speech-recognition",
        str(clip),
        "--config",
        str(cfg),
        "-p",
        "max_new_tokens=6",
    ]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["duration"] == 3.0 and out["text"].strip()
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0 and plain.output.strip() == out["text"].strip()
    missing = runner.invoke(
        app,
        ["run", "whisper", "automatic-speech-recognition", str(tmp_path / "no.wav"), "--config", str(cfg)],
    )
    assert missing.exit_code == 2 and "cannot read audio file" in missing.output
