"""Audio files made in memory with PyAV, for tests and benchmarks: a tone, encoded as wav, flac, mp3, ogg/opus,
m4a (aac) or webm."""

from __future__ import annotations

import io

import numpy as np

#: format name -> (container, codec, sampling rate)
FORMATS: dict[str, tuple[str, str, int]] = {
    "wav": ("wav", "pcm_s16le", 16000),
    "flac": ("flac", "flac", 22050),
    "mp3": ("mp3", "libmp3lame", 44100),
    "ogg": ("ogg", "libopus", 48000),
    "m4a": ("ipod", "aac", 44100),
    "webm": ("webm", "libopus", 48000),
}


def tone(seconds: float, freq: float = 220.0, rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    """Mono float32 samples at `rate` as a file of `container` / `codec` (resampled to what the codec takes)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        fmt = stream.codec_context.format.name if stream.codec_context.format else "s16"
        frame = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def audio_file(fmt: str, seconds: float = 3.0, freq: float = 220.0) -> bytes:
    """A tone of `seconds` as a `fmt` file (see FORMATS)."""
    container, codec, rate = FORMATS[fmt]
    return encode(tone(seconds, freq, rate), rate, container, codec)
