"""image-classification, zero-shot-image-classification and CLIP embeddings against transformers itself: the
pipelines (ImageClassificationPipeline, ZeroShotImageClassificationPipeline) and the model's own processor and
forward, on the same weights and images, loaded through the real loader."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from hf_provider.errors import InvalidInput, InvalidMedia, TaskNotSupported, TooManyItems
from hf_provider.runtime.tasks import build_handler, supported_tasks
from hf_provider.testing.vision_models import VIT_LABELS

LABELS = ["cat", "dog", "a red car", "house"]


def picture(seed: int, w: int = 48, h: int = 40) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def data_uri(image: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


IMAGES = [picture(i, 40 + 8 * i, 64 - 4 * i) for i in range(4)]


@pytest.fixture(scope="module")
def vit(loaded):
    return loaded("vit")


@pytest.fixture(scope="module")
def clip(loaded):
    return loaded("clip")


def test_tasks_follow_the_architecture(vit, clip) -> None:
    assert supported_tasks(vit) == ["image-classification"]  # no tokenizer: no text task
    assert supported_tasks(clip) == ["embeddings", "zero-shot-image-classification"]
    assert vit.tokenizer is None and vit.image_processor is not None
    with pytest.raises(TaskNotSupported, match="ForImageClassification head") as e:
        build_handler("image-classification", clip)
    assert e.value.supported == ["embeddings", "zero-shot-image-classification"]
    with pytest.raises(TaskNotSupported, match="not a CLIP-like"):
        build_handler("zero-shot-image-classification", vit)
    with pytest.raises(TaskNotSupported, match="no tokenizer"):
        build_handler("embeddings", vit)


def test_bad_parameters_and_inputs_name_the_field(vit, clip) -> None:
    cls = build_handler("image-classification", vit)
    with pytest.raises(InvalidInput, match="function_to_apply"):
        cls.parse(data_uri(IMAGES[0]), {"function_to_apply": "relu"})
    with pytest.raises(InvalidInput, match="unknown parameter"):
        cls.parse(data_uri(IMAGES[0]), {"candidate_labels": ["a"]})
    with pytest.raises(InvalidInput, match="non-empty list"):
        cls.parse([], {})
    with pytest.raises(InvalidMedia) as e:
        cls.parse([data_uri(IMAGES[0]), "data:image/png;base64,AAAA"], {})
    assert e.value.param == "inputs[1]"
    zs = build_handler("zero-shot-image-classification", clip)
    with pytest.raises(InvalidInput, match="'candidate_labels' is required"):
        zs.parse(data_uri(IMAGES[0]), {})
    with pytest.raises(TooManyItems, match=r"101 labels; at most 100 .*batching.max_candidate_labels") as e:
        zs.parse(data_uri(IMAGES[0]), {"candidate_labels": [f"l{i}" for i in range(101)]})
    assert e.value.param == "candidate_labels"
    with pytest.raises(InvalidInput, match="candidate_labels\\[1\\]"):
        zs.parse(data_uri(IMAGES[0]), {"candidate_labels": ["cat", " "]})
    with pytest.raises(
        InvalidInput,
        match=r"'candidate_labels\[1\]' makes a hypothesis of 8\d tokens; this model reads at most 77",
    ):
        zs.parse(data_uri(IMAGES[0]), {"candidate_labels": ["cat", " ".join(["dog"] * 80)]})
    with pytest.raises(InvalidInput, match="hypothesis_template"):
        zs.parse(data_uri(IMAGES[0]), {"candidate_labels": ["cat"], "hypothesis_template": "a {name}"})
    emb = build_handler("embeddings", clip)
    with pytest.raises(InvalidInput, match="modality"):
        emb.parse("a cat", {"modality": "audio"})
    with pytest.raises(InvalidInput, match="inputs\\[1\\]"):
        emb.parse(["a cat", {"type": "input_audio"}], {})
    long = " ".join(["dog"] * 80)
    with pytest.raises(
        InvalidInput, match=r"'inputs\[2\]' is 8\d tokens long; .* at most 77 \(pass .*truncate=true"
    ):
        emb.parse([data_uri(IMAGES[0]), "a cat", long], {})
    assert len(emb.parse([data_uri(IMAGES[0]), long], {"truncate": True})[0][1].data["input_ids"]) == 77
    with pytest.raises(InvalidMedia):  # modality=image: every string is an image
        emb.parse(["a cat"], {"modality": "image"})


@pytest.mark.parametrize("params", [{}, {"top_k": 2}, {"top_k": 50, "function_to_apply": "sigmoid"}])
def test_image_classification_equals_the_pipeline(vit, run, params) -> None:
    from transformers import pipeline

    pipe = pipeline("image-classification", model=str(vit.path), device="cpu", dtype=torch.float32)
    ours = run(build_handler("image-classification", vit), [data_uri(im) for im in IMAGES], params)
    theirs = pipe(IMAGES, **params)
    for o, t in zip(ours, theirs, strict=True):
        assert [x["label"] for x in o] == [x["label"] for x in t]
        np.testing.assert_allclose([x["score"] for x in o], [x["score"] for x in t], atol=1e-4)
    assert len(ours[0]) == min(params.get("top_k", 5), len(VIT_LABELS))


@pytest.mark.parametrize("template", [None, "a blurry picture of {}"])
def test_zero_shot_equals_the_pipeline(clip, run, template) -> None:
    from transformers import pipeline

    pipe = pipeline("zero-shot-image-classification", model=str(clip.path), device="cpu", dtype=torch.float32)
    params: dict = {"candidate_labels": LABELS}
    if template:
        params["hypothesis_template"] = template
    ours = run(build_handler("zero-shot-image-classification", clip), [data_uri(im) for im in IMAGES], params)
    for image, o in zip(IMAGES, ours, strict=True):
        t = pipe(image, **params)
        assert [x["label"] for x in o] == [x["label"] for x in t]
        np.testing.assert_allclose([x["score"] for x in o], [x["score"] for x in t], atol=1e-4)


def test_zero_shot_items_of_different_labels_share_one_batch(clip, run) -> None:
    """One batch holding images asked with different labels: each scored against its own, as alone."""
    zs = build_handler("zero-shot-image-classification", clip)
    asks = [(IMAGES[0], ["cat", "dog"]), (IMAGES[1], ["house", "dog", "tree"]), (IMAGES[2], ["cat", "dog"])]
    items = []
    for image, labels in asks:
        got, resolved, _ = zs.parse(data_uri(image), {"candidate_labels": labels})
        items += got
        assert zs.batch_key(resolved) == zs.batch_key({})  # one key whatever the labels
    batch = zs.preprocess(items, {})
    assert batch["text"]["input_ids"].shape[0] == 4  # unique hypotheses: cat, dog, house, tree
    with torch.inference_mode():
        together = zs.postprocess(batch, zs.forward(batch, {}), {})
    for (image, labels), got in zip(asks, together, strict=True):
        alone = run(zs, data_uri(image), {"candidate_labels": labels})
        assert [x["label"] for x in got] == [x["label"] for x in alone]
        np.testing.assert_allclose([x["score"] for x in got], [x["score"] for x in alone], atol=1e-5)


def reference_embeddings(clip, texts: list[str], images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """The model's own processor + get_*_features, L2-normalized (what OpenAI-style embeddings return)."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(clip.path)
    with torch.inference_mode():
        t = clip.module.get_text_features(**proc(text=texts, return_tensors="pt", padding=True)).pooler_output
        i = clip.module.get_image_features(**proc(images=images, return_tensors="pt")).pooler_output
    norm = torch.nn.functional.normalize
    return norm(t, dim=-1).numpy(), norm(i, dim=-1).numpy()


def test_clip_embeds_texts_and_images_in_order_as_its_own_forward(clip, run) -> None:
    texts = ["a photo of a cat", "a dog on a red car in the garden"]
    ref_t, ref_i = reference_embeddings(clip, texts, IMAGES[:2])
    emb = build_handler("embeddings", clip)
    mixed = [texts[0], data_uri(IMAGES[0]), {"type": "image_url", "image_url": {"url": data_uri(IMAGES[1], "JPEG")}},
             {"type": "text", "text": texts[1]}]  # fmt: skip
    got = run(emb, mixed)
    np.testing.assert_allclose(got[0], ref_t[0], atol=1e-4)
    np.testing.assert_allclose(got[1], ref_i[0], atol=1e-4)
    np.testing.assert_allclose(got[3], ref_t[1], atol=1e-4)
    jpeg = reference_embeddings(
        clip, texts, [Image.open(io.BytesIO(base64.b64decode(mixed[2]["image_url"]["url"].split(",")[1])))]
    )[1]
    np.testing.assert_allclose(got[2], jpeg[0], atol=1e-4)
    assert got[0].shape == (16,)
    # the text space and the image space are one: a text and an image compare by cosine
    assert -1.0 <= float(got[0] @ got[1]) <= 1.0
    half = run(emb, [texts[0], data_uri(IMAGES[0])], {"dimensions": 8, "normalize": False})
    assert half[0].shape == (8,) and half[1].shape == (8,)
    # modality=text: a string that looks like an image is embedded as text
    as_text = run(emb, "data:image/png;base64,AAAA", {"modality": "text"})
    assert as_text.shape == (16,)
