"""`[media]` in hfp.toml: limits on the images requests carry (runtime/media/ reads them at every decode)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class MediaSettings(BaseModel):
    """`[media]`: what an image input may be. The request body as a whole is bounded by `[server]
    max_body_bytes` (413 `request_too_large`); these bound each image inside it."""

    model_config = ConfigDict(extra="forbid")

    max_image_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="largest encoded image (after base64 decoding, or as fetched); larger ones get 413 "
        "`media_too_large`",
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1,
        description="largest image in pixels (width x height), checked from its header before any pixel is "
        "decoded, so a decompression bomb (a small file that expands to gigabytes) gets 413 `media_too_large` "
        "without being expanded. Pillow's own process-wide bomb check (about 179M pixels) still applies above it",
    )
    url_hosts: list[str] = Field(
        default_factory=list,
        description="hosts whose http(s) image URLs the server fetches (exact names, or '*.example.com' for "
        "its subdomains); empty: URLs are refused with 400 `url_not_allowed`, so a request can never make "
        "the server reach a host of the client's choosing (server-side request forgery)",
    )
    url_timeout_s: float = Field(10.0, gt=0, description="longest fetch of one image URL")

    @field_validator("url_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        out = []
        for host in v:
            h = host.strip().lower()
            if not h or "/" in h or ":" in h or "*" in h.removeprefix("*."):
                raise ValueError(
                    f"url_hosts entry {host!r} must be a host name such as 'images.example.com' or "
                    "'*.example.com' (no scheme, port or path)"
                )
            out.append(h)
        return out
