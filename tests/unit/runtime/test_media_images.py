"""Image inputs: decoded with Pillow as transformers' load_image does, every bad input a typed 4xx error, every
limit checked before the pixels are expanded, URLs fetched only from allowed hosts (a real local HTTP server)."""

from __future__ import annotations

import base64
import http.server
import io
import struct
import threading
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from hf_provider.errors import InvalidInput, InvalidMedia, MediaTooLarge, MediaTypeMismatch, UrlNotAllowed
from hf_provider.runtime.media.fetch import host_allowed
from hf_provider.runtime.media.images import decode, load_image
from hf_provider.settings.media import MediaSettings

LIMITS = MediaSettings()


def picture(w: int = 40, h: int = 30, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def encoded(fmt: str, image: Image.Image | None = None) -> bytes:
    buf = io.BytesIO()
    (image or picture()).save(buf, fmt)
    return buf.getvalue()


def uri(media_type: str, raw: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, then a tiny IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# failure paths first ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0.5, 0.9])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_invalid_media(fmt: str, cut: float) -> None:
    raw = encoded(fmt, picture(64, 64))
    with pytest.raises(InvalidMedia, match="corrupt or truncated") as e:
        load_image(uri(f"image/{fmt.lower()}", raw[: int(len(raw) * cut)]), LIMITS, "inputs[1]")
    assert e.value.param == "inputs[1]" and "inputs[1]" in e.value.message


def test_a_png_with_a_damaged_checksum_is_invalid_media() -> None:
    raw = bytearray(encoded("PNG"))
    raw[50] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    with pytest.raises(InvalidMedia):
        load_image(uri("image/png", bytes(raw)), LIMITS)


def test_bytes_of_another_type_than_claimed_are_a_mismatch_naming_both() -> None:
    with pytest.raises(MediaTypeMismatch, match="'image/png' but holds JPEG") as e:
        load_image(uri("image/png", encoded("JPEG")), LIMITS)
    assert e.value.code == "media_type_mismatch" and "data:image/jpeg;base64" in e.value.message
    with pytest.raises(MediaTypeMismatch, match="not an image"):
        load_image(uri("image/png", b"just some text, not an image at all"), LIMITS)


def test_a_known_signature_over_garbage_is_corrupt_not_a_mismatch() -> None:
    garbage = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    with pytest.raises(InvalidMedia, match="corrupt PNG") as e:
        load_image(uri("image/png", garbage), LIMITS)
    assert type(e.value) is InvalidMedia
    with pytest.raises(MediaTypeMismatch, match="'image/jpeg', but holds PNG data"):
        load_image(uri("image/jpeg", garbage), LIMITS)


def test_bytes_that_are_no_image_are_invalid_media() -> None:
    with pytest.raises(InvalidMedia, match="not an image") as e:
        load_image(b"%PDF-1.7 not an image", LIMITS)
    assert type(e.value) is InvalidMedia
    with pytest.raises(InvalidMedia, match="empty"):
        load_image(b"", LIMITS)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("data:image/svg+xml;base64,PHN2Zz4=", "media type 'image/svg\\+xml'; supported"),
        ("data:image/png,rawbytes", "base64 data URI"),
        ("data:image/png;base64,@@@not base64@@@", "not valid base64"),
        ("a cat on a mat", "data URI"),
    ],
)
def test_malformed_data_uris_say_what_to_send(value: str, match: str) -> None:
    with pytest.raises(InvalidMedia, match=match):
        load_image(value, LIMITS)


def test_base64_wrapped_in_lines_is_accepted() -> None:
    b64 = base64.b64encode(encoded("PNG")).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert load_image(f"data:image/png;base64,{wrapped}", LIMITS).size == (40, 30)


def test_a_non_image_value_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="got int"):
        load_image(42, LIMITS)


def test_a_decompression_bomb_is_refused_from_its_header_without_expanding_it() -> None:
    # 8000 x 8000: under Pillow's own process-wide bomb threshold, over ours
    bomb = png_header_only(8000, 8000)
    assert len(bomb) < 200
    with pytest.raises(MediaTooLarge, match="8000x8000 = 64000000 pixels; at most 40000000") as e:
        load_image(uri("image/png", bomb), LIMITS)
    assert e.value.code == "media_too_large" and "HFP_MEDIA__MAX_IMAGE_PIXELS" in e.value.message
    # 100000 x 100000: Pillow's own check fires first; still our error
    with pytest.raises(MediaTooLarge):
        load_image(png_header_only(100_000, 100_000), LIMITS)


def test_the_pixel_limit_is_per_decode_and_leaves_pillows_global_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    small = MediaSettings(max_image_pixels=40 * 30 - 1)
    with pytest.raises(MediaTooLarge):
        load_image(encoded("PNG"), small)
    assert load_image(encoded("PNG"), LIMITS).size == (40, 30)
    assert before == Image.MAX_IMAGE_PIXELS
    with pytest.raises(MediaTooLarge):  # a PIL image from Python is held to the same limit
        load_image(picture(), small)


def test_the_byte_limit_is_checked_before_base64_is_decoded() -> None:
    raw = encoded("PNG")
    limits = MediaSettings(max_image_bytes=len(raw) - 1)
    with pytest.raises(MediaTooLarge, match="max_image_bytes"):
        load_image(uri("image/png", raw), limits)
    with pytest.raises(MediaTooLarge):
        decode(raw, None, limits, "inputs")


# what is accepted --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    image = load_image(uri(f"image/{fmt.lower()}", encoded(fmt)), LIMITS)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_pixels_match_transformers_load_image() -> None:
    from transformers.image_utils import load_image as hf_load_image

    rgba = picture(33, 17).convert("RGBA")
    raw = encoded("PNG", rgba)
    ours = np.asarray(load_image(raw, LIMITS))
    theirs = np.asarray(hf_load_image(base64.b64encode(raw).decode()))
    np.testing.assert_array_equal(ours, theirs)


def test_exif_orientation_is_applied_as_transformers_does() -> None:
    image = picture(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    assert load_image(buf.getvalue(), LIMITS).size == (20, 40)


# URLs --------------------------------------------------------------------------------------------------------
def test_a_url_is_refused_by_default_naming_the_setting() -> None:
    with pytest.raises(UrlNotAllowed, match=r"\[media\] url_hosts \(HFP_MEDIA__URL_HOSTS\)") as e:
        load_image("http://169.254.169.254/latest/meta-data", LIMITS, "inputs[0]")
    assert e.value.code == "url_not_allowed" and e.value.param == "inputs[0]"


def test_host_patterns() -> None:
    allowed = ["images.example.com", "*.cdn.example.org"]
    assert host_allowed("images.example.com", allowed)
    assert host_allowed("IMAGES.example.com.", allowed)
    assert host_allowed("a.b.cdn.example.org", allowed)
    assert not host_allowed("cdn.example.org", allowed)
    assert not host_allowed("evil-images.example.com", allowed)
    assert not host_allowed("images.example.com.evil.net", allowed)


def test_url_hosts_setting_refuses_schemes_and_paths() -> None:
    with pytest.raises(ValueError, match="host name"):
        MediaSettings(url_hosts=["https://images.example.com/"])


@pytest.fixture
def image_server() -> Iterator[str]:
    png = encoded("PNG")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/cat.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)
            elif self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://localhost.invalid/cat.png")
                self.end_headers()
            elif self.path == "/here":
                self.send_response(302)
                self.send_header("Location", "/cat.png")
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_an_allowed_host_is_fetched_and_its_redirects_are_checked(image_server: str) -> None:
    limits = MediaSettings(url_hosts=["127.0.0.1"])
    assert load_image(f"{image_server}/cat.png", limits).size == (40, 30)
    assert load_image(f"{image_server}/here", limits).size == (40, 30)
    with pytest.raises(UrlNotAllowed, match=r"localhost\.invalid"):
        load_image(f"{image_server}/away", limits)
    with pytest.raises(InvalidMedia, match="HTTP 404"):
        load_image(f"{image_server}/missing.png", limits)
    with pytest.raises(MediaTooLarge):
        load_image(f"{image_server}/cat.png", MediaSettings(url_hosts=["127.0.0.1"], max_image_bytes=100))
