"""Vision tasks over HTTP on the real server (uvicorn on loopback): a tiny ViT and a tiny CLIP. Answers equal
transformers' pipelines and the model's own processor + forward on the same weights; `/v1/embeddings` with images
through the official `openai` client; every bad image input a 4xx with its code, and the model's next request
served (never a 5xx)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from openai import BadRequestError, OpenAI
from PIL import Image

from tests.e2e.conftest import Served, serve

MAX_BODY = 256 * 1024
MAX_IMAGE_BYTES = 64 * 1024
MAX_LABELS = 8
LABELS = ["cat", "dog", "a red car"]


def picture(seed: int, w: int = 48, h: int = 40) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def data_uri(raw: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


IMAGES = [picture(i, 40 + 8 * i, 64 - 4 * i) for i in range(3)]
URIS = [data_uri(encoded(im)) for im in IMAGES]


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("vision-e2e")
    config = {
        "home": str(base / "hfp-home"),
        "server": {"max_body_bytes": MAX_BODY},
        "media": {"max_image_bytes": MAX_IMAGE_BYTES},
        "models": [
            {"name": "vit", "source": str(tiny_models["vit"]), "device": "cpu", "dtype": "float32"},
            {
                "name": "clip",
                "source": str(tiny_models["clip"]),
                "device": "cpu",
                "dtype": "float32",
                "batching": {"max_candidate_labels": MAX_LABELS},
            },
        ],
    }
    with serve(config, base) as served:
        yield served


@pytest.fixture(scope="module")
def http(server: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def task(http: httpx.Client, model: str, name: str, inputs, parameters=None) -> httpx.Response:
    return http.post(
        f"/v1/tasks/{name}", json={"model": model, "inputs": inputs, "parameters": parameters or {}}
    )


def same_ranking(ours: list[dict], theirs: list[dict]) -> None:
    assert [x["label"] for x in ours] == [x["label"] for x in theirs]
    np.testing.assert_allclose([x["score"] for x in ours], [x["score"] for x in theirs], atol=1e-4)


def test_models_list_their_vision_tasks(http: httpx.Client) -> None:
    tasks = {m["id"]: m["tasks"] for m in http.get("/v1/models").json()["data"]}
    assert tasks["vit"] == ["image-classification"]
    assert tasks["clip"] == ["embeddings", "zero-shot-image-classification"]


def test_image_classification_over_http_equals_the_pipeline(http: httpx.Client, tiny_models) -> None:
    from transformers import pipeline

    pipe = pipeline("image-classification", model=str(tiny_models["vit"]), device="cpu", dtype=torch.float32)
    r = task(http, "vit", "image-classification", URIS, {"top_k": 3})
    assert r.status_code == 200, r.text
    for ours, theirs in zip(r.json()["outputs"], pipe(IMAGES, top_k=3), strict=True):
        same_ranking(ours, theirs)
    one = task(http, "vit", "image-classification", URIS[0]).json()["outputs"]
    same_ranking(one, pipe(IMAGES[0]))


def test_zero_shot_over_http_equals_the_pipeline(http: httpx.Client, tiny_models) -> None:
    from transformers import pipeline

    pipe = pipeline(
        "zero-shot-image-classification", model=str(tiny_models["clip"]), device="cpu", dtype=torch.float32
    )
    params = {"candidate_labels": LABELS, "hypothesis_template": "a photo showing {}"}
    r = task(http, "clip", "zero-shot-image-classification", URIS, params)
    assert r.status_code == 200, r.text
    for image, ours in zip(IMAGES, r.json()["outputs"], strict=True):
        same_ranking(ours, pipe(image, **params))


def test_openai_client_embeds_texts_and_images_with_one_weight_set(server: Served, tiny_models) -> None:
    from transformers import AutoProcessor, CLIPModel

    texts = ["a photo of a cat", "a red car in the garden"]
    inputs = [texts[0], URIS[0], {"type": "image_url", "image_url": {"url": URIS[1]}}, texts[1]]
    with OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60.0) as client:
        got = client.embeddings.create(model="clip", input=inputs)  # type: ignore[arg-type]
        b64 = client.embeddings.with_raw_response.create(model="clip", input=inputs, encoding_format="base64")  # type: ignore[arg-type]
        with pytest.raises(BadRequestError) as e:
            client.embeddings.create(model="clip", input=["data:image/png;base64,AAAA"])
    assert e.value.status_code == 400 and e.value.body["code"] == "media_type_mismatch"  # type: ignore[index]
    vectors = np.array([d.embedding for d in got.data])
    assert [d.index for d in got.data] == [0, 1, 2, 3] and vectors.shape == (4, 16)
    model = CLIPModel.from_pretrained(tiny_models["clip"], dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(tiny_models["clip"])
    with torch.inference_mode():
        t = model.get_text_features(**proc(text=texts, return_tensors="pt", padding=True)).pooler_output
        i = model.get_image_features(**proc(images=IMAGES[:2], return_tensors="pt")).pooler_output
    ref = torch.nn.functional.normalize(torch.cat([t[:1], i, t[1:]]), dim=-1).numpy()
    np.testing.assert_allclose(vectors, ref, atol=1e-4)
    raw = [
        np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64.http_response.json()["data"]
    ]
    np.testing.assert_allclose(np.array(raw), vectors, atol=1e-6)
    assert got.usage.prompt_tokens > 0


def test_modality_image_reads_every_string_as_an_image(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "clip", "input": [URIS[0]], "modality": "image"})
    assert r.status_code == 200
    r = http.post("/v1/embeddings", json={"model": "clip", "input": "a cat", "modality": "image"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_media"


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 9000, 9000, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


PNG = encoded(IMAGES[0])
BIG = encoded(picture(7, 200, 200))  # ~120 KB of noise: over the per-image limit, under the body limit
IC, ZS, ASK = "image-classification", "zero-shot-image-classification", {"candidate_labels": LABELS}
CORRUPT = data_uri(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
CUT_JPEG = data_uri(encoded(IMAGES[1], "JPEG")[:400], "image/jpeg")
MANY = {"candidate_labels": [f"l{i}" for i in range(MAX_LABELS + 1)]}
BAD_INPUTS = {
    "corrupt": ("vit", IC, CORRUPT, {}, 400, "invalid_media"),
    "truncated": ("vit", IC, data_uri(PNG[: len(PNG) // 2]), {}, 400, "invalid_media"),
    "truncated-jpeg": ("clip", ZS, CUT_JPEG, ASK, 400, "invalid_media"),
    "bomb": ("vit", IC, data_uri(_bomb()), {}, 413, "media_too_large"),
    "png-holding-jpeg": ("vit", IC, data_uri(encoded(IMAGES[0], "JPEG")), {}, 400, "media_type_mismatch"),
    "png-holding-text": ("clip", ZS, data_uri(b"hello, I am text"), ASK, 400, "media_type_mismatch"),
    "image-over-limit": ("vit", IC, data_uri(BIG), {}, 413, "media_too_large"),
    "too-many-labels": ("clip", ZS, URIS[0], MANY, 413, "too_many_items"),
    "task-it-cannot-do": ("vit", ZS, URIS[0], ASK, 400, "task_not_supported"),
    "classification-on-clip": ("clip", IC, URIS[0], {}, 400, "task_not_supported"),
    "url": ("vit", IC, "http://169.254.169.254/latest/meta-data/x.png", {}, 400, "url_not_allowed"),
    "not-an-image": ("vit", IC, 42, {}, 400, "invalid_input"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_image_input_is_a_4xx_and_the_next_request_is_served(http: httpx.Client, case: str) -> None:
    model, name, inputs, params, status, code = BAD_INPUTS[case]
    assert len(BIG) > MAX_IMAGE_BYTES
    r = task(http, model, name, inputs, params)
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code and body["message"]
    if case == "url":
        assert "HFP_MEDIA__URL_HOSTS" in body["message"] and body["param"] == "inputs"
    # the model's next request is served
    ok = (
        task(http, "vit", "image-classification", URIS[0])
        if model == "vit"
        else task(http, "clip", "zero-shot-image-classification", URIS[0], {"candidate_labels": LABELS})
    )
    assert ok.status_code == 200, ok.text


def test_a_body_over_the_server_limit_is_413(http: httpx.Client) -> None:
    huge = data_uri(b"\0" * MAX_BODY)
    r = task(http, "vit", "image-classification", huge)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "HFP_SERVER__MAX_BODY_BYTES" in r.json()["error"]["message"]
    assert task(http, "vit", "image-classification", URIS[0]).status_code == 200


def test_no_bad_input_left_a_server_error(http: httpx.Client) -> None:
    """Runs after the bad inputs (file order): they are counted as client errors, none as a server error."""
    lines = [
        line
        for line in http.get("/metrics").text.splitlines()
        if line.startswith("hfp_requests_total") and ('model="vit"' in line or 'model="clip"' in line)
    ]
    assert any('outcome="client_error"' in line for line in lines), lines
    assert not any('outcome="error"' in line for line in lines), lines
