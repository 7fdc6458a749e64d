"""media/audio.py: every common format decodes to the tone it holds; damaged, empty and non-audio files are
InvalidAudio (400), never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from hf_provider.errors import AudioTooShort, InvalidAudio
from hf_provider.media.audio import decode, resample
from hf_provider.testing.audio import FORMATS, audio_file, encode, tone


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(x.shape[0], 1 / rate)[int(np.argmax(spectrum))])


def test_bad_files_are_invalid_audio() -> None:
    wav = audio_file("wav")
    with pytest.raises(AudioTooShort, match="empty"):
        decode(b"", 16000)
    for junk in (b"hello, this is a text file", b"RIFF\x00\x00\x00\x00WAVEjunk" * 8, wav[:40]):
        with pytest.raises(InvalidAudio, match="could not be decoded"):
            decode(junk, 16000)
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)  # another type than the name says
    with pytest.raises(InvalidAudio):
        decode(png, 16000, param="file")
    with pytest.raises(InvalidAudio, match=r"truncated: its header declares 3\.00 s"):
        decode(wav[: len(wav) // 2], 16000)
    with pytest.raises(AudioTooShort, match=r"0\.050 s"):
        decode(encode(tone(0.05), 16000, "wav", "pcm_s16le"), 16000)
    with pytest.raises(InvalidAudio, match="longer than"):
        decode(wav, 16000, max_seconds=1.0)
    for fmt in ("mp3", "m4a", "flac"):  # compressed streams cut or damaged in the middle
        data = audio_file(fmt)
        broken = data[: len(data) // 3] + bytes(range(256)) * 8 + data[len(data) // 3 + 2048 :]
        for bad in (data[: len(data) // 2], broken):
            try:
                out = decode(bad, 16000)
            except InvalidAudio:
                continue
            # what FFmpeg could not tell apart from a shorter file decodes to finite samples, never garbage
            assert np.isfinite(out).all() and out.shape[0] > 0


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_formats_decode_to_the_tone_at_the_requested_rate(fmt: str) -> None:
    samples = decode(audio_file(fmt, seconds=2.0, freq=440.0), 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert samples.shape[0] == pytest.approx(32000, abs=2400)  # encoder padding of a few frames
    assert _dominant_hz(samples, 16000) == pytest.approx(440.0, abs=2.0)
    assert 0.2 < float(np.abs(samples).max()) < 0.5


def test_wav_at_the_model_rate_is_exact() -> None:
    x = tone(1.0, 300.0)
    y = decode(encode(x, 16000, "wav", "pcm_s16le"), 16000)
    np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-6)  # s16 quantization only


def test_resample_keeps_the_tone() -> None:
    y = resample(tone(1.0, 440.0, rate=44100), 44100, 16000)
    assert y.shape[0] == pytest.approx(16000, abs=64)
    assert _dominant_hz(y, 16000) == pytest.approx(440.0, abs=2.0)
    assert resample(tone(1.0), 16000, 16000).shape[0] == 16000
