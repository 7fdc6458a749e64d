"""Audio files (wav, flac, mp3, ogg/opus, m4a/aac, webm...) to mono float32 samples at a chosen rate.

Decoded with PyAV (`av`): maintained bindings to FFmpeg's libraries whose wheels bundle FFmpeg itself, so every
common container and codec decodes in-process with no system ffmpeg binary (transformers' `ffmpeg_read` starts one
as a subprocess and fails where it is missing), and FFmpeg's own resampler (libswresample, what the ffmpeg CLI
uses) brings any rate and channel layout to the feature extractor's. soundfile (libsndfile) reads no m4a/aac and
torchaudio's decoding moved to torchcodec, which needs a system FFmpeg.

Every failure is an `InvalidAudio` (a 400 naming the field), never a crash: FFmpeg is told to treat damaged data
as an error (`err_detect`), and a file whose header promises more audio than it holds counts as truncated.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np

from hf_provider.errors import AudioTooShort, InvalidAudio

#: OpenAI answers shorter audio with 400 `audio_too_short` ("Minimum audio length is 0.1 seconds").
MIN_SECONDS = 0.1
#: A compressed upload can hold hours (opus at 6 kbit/s: ~9 h in 25 MB); decoding stops past this.
MAX_SECONDS = 3 * 3600.0
# Decoded audio shorter than this share of what the container's header declares is a truncated file (headers
# round durations, and encoders pad a few ms: only a clear shortfall counts).
_TRUNCATED_SHARE = 0.9
_TRUNCATED_MIN_S = 0.5


def _av() -> Any:
    try:
        import av
    except ImportError as e:  # a core dependency; a broken install says how to fix it
        raise ImportError("decoding audio needs PyAV: pip install av") from e
    return av


def decode(
    data: bytes,
    sampling_rate: int,
    *,
    param: str = "file",
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sampling_rate` from an encoded audio file's bytes."""
    if not data:
        raise AudioTooShort(
            f"'{param}' is empty; send an audio file of at least {min_seconds} s", param=param
        )
    av = _av()
    limit = int(max_seconds * sampling_rate)
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise InvalidAudio(f"'{param}' holds no audio stream", param=param)
            stream.codec_context.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
            declared = _declared_seconds(data, stream)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
            parts: list[np.ndarray] = []
            n = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    n += parts[-1].shape[0]
                if n > limit:
                    raise InvalidAudio(
                        f"'{param}' is longer than the {max_seconds:.0f} s accepted per request; split it",
                        param=param,
                    )
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except InvalidAudio:
        raise
    except (av.FFmpegError, ValueError, EOFError, UnicodeDecodeError) as e:
        raise InvalidAudio(
            f"'{param}' could not be decoded as audio ({_reason(e)}); send a complete wav, flac, mp3, "
            "ogg/opus, m4a or webm file",
            param=param,
        ) from None
    samples = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    seconds = samples.shape[0] / sampling_rate
    if seconds < min_seconds:
        raise AudioTooShort(
            f"'{param}' holds {seconds:.3f} s of audio; at least {min_seconds} s is needed", param=param
        )
    if (
        declared is not None
        and seconds < declared * _TRUNCATED_SHARE
        and declared - seconds > _TRUNCATED_MIN_S
    ):
        raise InvalidAudio(
            f"'{param}' is truncated: its header declares {declared:.2f} s of audio, it holds {seconds:.2f} s",
            param=param,
        )
    return samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int, *, param: str = "inputs") -> np.ndarray:
    """Mono float32 samples at another rate, through the same FFmpeg resampler as `decode`."""
    samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if from_rate == to_rate or samples.size == 0:
        return samples
    av = _av()
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    parts = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def _declared_seconds(data: bytes, stream: Any) -> float | None:
    """The duration the header states exactly, where it states one: a wav's data chunk size (read with the
    standard library's `wave`: FFmpeg clamps it to the file's size, so a cut file looks whole) and flac's
    STREAMINFO sample count. None for formats whose length FFmpeg estimates (from a bitrate, a last page),
    which decode up to where they stop, as any player does."""
    name = stream.codec_context.name
    if name.startswith("pcm_") and data[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(data)) as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError, ValueError, ZeroDivisionError):
            return None
    if name == "flac" and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _reason(e: BaseException) -> str:
    """FFmpeg's short reason, without the in-memory file's name or anything else from the request."""
    strerror = getattr(e, "strerror", None)
    return str(strerror) if strerror else type(e).__name__
