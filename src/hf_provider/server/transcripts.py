"""A transcription result in OpenAI's response formats: json, text, verbose_json, srt, vtt."""

from __future__ import annotations

from typing import Any

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
#: formats built from segments: the model is asked for timestamps
TIMED = frozenset({"verbose_json", "srt", "vtt"})


def segments(result: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's segments from the pipeline's timestamped chunks. avg_logprob, compression_ratio and
    no_speech_prob are left out: this server does not compute them (no made-up figures)."""
    out = []
    for i, c in enumerate(result.get("chunks") or []):
        start, end = c.get("timestamp", (None, None))
        start = 0.0 if start is None else float(start)
        end = float(result.get("duration", start)) if end is None else float(end)
        out.append({"id": i, "start": round(start, 2), "end": round(max(start, end), 2), "text": c["text"]})
    return out


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segs: list[dict[str, Any]]) -> str:
    blocks = [
        f"{i + 1}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text'].strip()}\n"
        for i, s in enumerate(segs)
    ]
    return "\n".join(blocks)


def vtt(segs: list[dict[str, Any]]) -> str:
    cues = [f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text'].strip()}\n" for s in segs]
    return "WEBVTT\n\n" + "\n".join(cues)


def words(result: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's words from the pipeline's word chunks (cross-attention alignment)."""
    out = []
    for c in result.get("words") or []:
        start, end = c.get("timestamp", (None, None))
        start = 0.0 if start is None else float(start)
        end = start if end is None else float(end)
        out.append({"word": c["text"].strip(), "start": round(start, 2), "end": round(max(start, end), 2)})
    return out


def body(
    fmt: str, task: str, result: dict[str, Any], temperature: float, grains: list[str] | None = None
) -> tuple[Any, str]:
    """(content, media type) of the answer in `fmt`; verbose_json carries the `grains` asked for (segment,
    word)."""
    grains = grains or ["segment"]
    text = result["text"]
    if fmt == "text":
        return text, "text/plain"
    if fmt == "srt":
        return srt(segments(result)), "text/plain"
    if fmt == "vtt":
        return vtt(segments(result)), "text/vtt"
    usage = {"type": "duration", "seconds": round(float(result.get("duration", 0.0)), 3)}
    if fmt == "json":
        return {"text": text, "usage": usage}, "application/json"
    out: dict[str, Any] = {
        "task": "translate" if task == "translate" else "transcribe",
        "language": result.get("language") or "unknown",
        "duration": round(float(result.get("duration", 0.0)), 3),
        "text": text,
    }
    if "segment" in grains:
        out["segments"] = [{**s, "temperature": temperature} for s in segments(result)]
    if "word" in grains:
        out["words"] = words(result)
    out["usage"] = usage
    return out, "application/json"
