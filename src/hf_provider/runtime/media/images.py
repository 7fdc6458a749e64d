"""Images from request inputs: a data URI, raw bytes, a PIL image or an allow-listed URL -> an RGB PIL image.

Pillow decodes (the library transformers' own `load_image` uses, so pixels match its pipelines: EXIF orientation
applied, then RGB). Every check runs before the pixels are expanded, per decode, with the limits passed in
(nothing process-wide is changed, so a host program keeps its own `Image.MAX_IMAGE_PIXELS`): the encoded size, the
claimed media type against the bytes, and the pixel count read from the header (a decompression bomb is refused
without being decoded). Only common formats are tried: Pillow's rarer plugins stay out of the request path.
Then `verify()` (checksums, for PNG) and a full `load()` catch corrupt and truncated files.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING, Any

from hf_provider.errors import InvalidInput, InvalidMedia, MediaTooLarge, MediaTypeMismatch
from hf_provider.runtime.media.fetch import fetch
from hf_provider.settings.media import MediaSettings

if TYPE_CHECKING:
    from PIL.Image import Image

#: media type -> Pillow format name; the formats an image input may have
FORMATS: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
PIL_FORMATS: tuple[str, ...] = tuple(dict.fromkeys(FORMATS.values()))
DATA_IMAGE = "data:image/"
_MAGIC: tuple[tuple[str, bytes], ...] = (
    ("PNG", b"\x89PNG\r\n\x1a\n"),
    ("JPEG", b"\xff\xd8\xff"),
    ("GIF", b"GIF8"),
    ("WEBP", b"RIFF"),
    ("BMP", b"BM"),
    ("TIFF", b"II*\x00"),
    ("TIFF", b"MM\x00*"),
)
_URL = ("http://", "https://")


def is_image_reference(value: Any) -> bool:
    """True for what only an image can be: bytes, a PIL image, a data:image/ URI."""
    if isinstance(value, str):
        return value.startswith(DATA_IMAGE)
    return isinstance(value, bytes | bytearray | memoryview) or _is_pil(value)


def load_image(value: Any, limits: MediaSettings, param: str = "inputs") -> Image:
    """An RGB image from one input, or a 4xx naming `param`: InvalidMedia (corrupt, truncated, unsupported),
    MediaTypeMismatch (bytes of another type than claimed), MediaTooLarge (bytes or pixels over the limits),
    UrlNotAllowed (a URL whose host `[media] url_hosts` does not allow)."""
    if _is_pil(value):
        _check_pixels(value.size, limits, param)
        return _rgb(value, param)
    if isinstance(value, bytes | bytearray | memoryview):
        return decode(bytes(value), None, limits, param)
    if isinstance(value, str):
        if value.startswith("data:"):
            claimed, raw = parse_data_uri(value, limits, param)
            return decode(raw, claimed, limits, param)
        if value.startswith(_URL):
            raw, claimed = fetch(value, limits, param)
            return decode(raw, claimed if claimed in FORMATS else None, limits, param)
        raise InvalidMedia(
            f"'{param}' must be an image as a data URI (data:image/png;base64,...) or an http(s) URL",
            param=param,
        )
    raise InvalidInput(
        f"'{param}' must be an image (a data URI string, or an http(s) URL), got {type(value).__name__}",
        param=param,
    )


def parse_data_uri(uri: str, limits: MediaSettings, param: str) -> tuple[str, bytes]:
    """(media type, bytes) of `data:image/<type>;base64,<data>`; its size is checked before decoding."""
    head, sep, data = uri.partition(",")
    parts = head.removeprefix("data:").split(";")
    media_type = parts[0].strip().lower()
    if not sep or "base64" not in (p.strip().lower() for p in parts[1:]):
        raise InvalidMedia(f"'{param}' must be a base64 data URI: data:image/png;base64,<data>", param=param)
    if media_type not in FORMATS:
        raise InvalidMedia(
            f"'{param}' has media type {media_type or '(none)'!r}; supported: {', '.join(FORMATS)}",
            param=param,
        )
    if len(data) * 3 // 4 > limits.max_image_bytes + 3:
        raise _too_large_bytes(len(data) * 3 // 4, limits, param)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        try:  # base64 wrapped in lines (MIME style), as transformers' load_image accepts it
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMedia(f"'{param}' is not valid base64 after 'base64,'", param=param) from None
    return media_type, raw


def decode(raw: bytes, claimed: str | None, limits: MediaSettings, param: str) -> Image:
    from PIL import Image, UnidentifiedImageError

    if len(raw) > limits.max_image_bytes:
        raise _too_large_bytes(len(raw), limits, param)
    if not raw:
        raise InvalidMedia(f"'{param}' is empty: no image bytes", param=param)
    try:
        with Image.open(io.BytesIO(raw), formats=PIL_FORMATS) as probe:
            fmt = probe.format
            _check_pixels(probe.size, limits, param)
            probe.verify()
    except UnidentifiedImageError:
        raise _unidentified(raw, claimed, param) from None
    except Image.DecompressionBombError:
        raise MediaTooLarge(f"'{param}' has more pixels than Pillow decodes", param=param) from None
    except (MediaTooLarge, InvalidMedia):
        raise
    except Exception as e:  # Pillow's plugins raise OSError, SyntaxError, struct.error...: all mean corrupt
        raise _corrupt(param, e) from None
    if claimed is not None and FORMATS[claimed] != fmt:
        raise MediaTypeMismatch(
            f"'{param}' claims media type {claimed!r} but holds {fmt} data; send it as "
            f"data:{_type_of(fmt)};base64,...",
            param=param,
        )
    try:
        image = Image.open(io.BytesIO(raw), formats=(fmt,))  # verify() leaves its image unusable: reopen
        image.load()  # a truncated file fails here (unless a host set ImageFile.LOAD_TRUNCATED_IMAGES)
    except Image.DecompressionBombError:
        raise MediaTooLarge(f"'{param}' has more pixels than Pillow decodes", param=param) from None
    except Exception as e:
        raise _corrupt(param, e) from None
    _check_pixels(image.size, limits, param)  # a format whose decoded size differs from its header
    return _rgb(image, param)


def sniff(raw: bytes) -> str | None:
    """The format whose signature `raw` starts with (its first bytes only: no decoder runs)."""
    for fmt, magic in _MAGIC:
        if raw.startswith(magic) and (fmt != "WEBP" or raw[8:12] == b"WEBP"):
            return fmt
    return None


def _unidentified(raw: bytes, claimed: str | None, param: str) -> InvalidMedia:
    """Pillow found no decoder: corrupt bytes of a known format, or bytes of another kind than claimed."""
    fmt = sniff(raw)
    if fmt is not None and (claimed is None or FORMATS[claimed] == fmt):
        return InvalidMedia(f"'{param}' is a corrupt {fmt} image: its decoder cannot read it", param=param)
    if claimed is not None:
        holds = f"{fmt} data" if fmt else "bytes that are not an image of a supported format"
        return MediaTypeMismatch(
            f"'{param}' has media type {claimed!r}, but holds {holds} ({', '.join(PIL_FORMATS)} are supported)",
            param=param,
        )
    return InvalidMedia(
        f"'{param}' holds bytes that are not an image of a supported format ({', '.join(PIL_FORMATS)})",
        param=param,
    )


def _rgb(image: Image, param: str) -> Image:
    from PIL import ImageOps

    try:  # as transformers.image_utils.load_image: upright, then RGB
        return ImageOps.exif_transpose(image).convert("RGB")
    except Exception as e:
        raise _corrupt(param, e) from None


def _check_pixels(size: tuple[int, int], limits: MediaSettings, param: str) -> None:
    w, h = size
    if w * h > limits.max_image_pixels:
        raise MediaTooLarge(
            f"'{param}' is {w}x{h} = {w * h} pixels; at most {limits.max_image_pixels} are accepted "
            "([media] max_image_pixels, HFP_MEDIA__MAX_IMAGE_PIXELS): send a smaller image",
            param=param,
        )
    if w <= 0 or h <= 0:
        raise InvalidMedia(f"'{param}' has no pixels ({w}x{h})", param=param)


def _too_large_bytes(n: int, limits: MediaSettings, param: str) -> MediaTooLarge:
    return MediaTooLarge(
        f"'{param}' is about {n} bytes; at most {limits.max_image_bytes} are accepted per image "
        "([media] max_image_bytes, HFP_MEDIA__MAX_IMAGE_BYTES)",
        param=param,
    )


def _corrupt(param: str, e: BaseException) -> InvalidMedia:
    # Pillow's message ("image file is truncated (3 bytes not processed)") says what is wrong and holds no input
    return InvalidMedia(f"'{param}' is a corrupt or truncated image ({type(e).__name__}: {e})", param=param)


def _type_of(fmt: str | None) -> str:
    return next((t for t, f in FORMATS.items() if f == fmt), "image/png")


def _is_pil(value: Any) -> bool:
    mod = type(value).__module__
    if not mod.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(value, Image.Image)
