"""image-classification (`*ForImageClassification`: ViT and the like) and zero-shot-image-classification
(CLIP-like image-text models), as transformers' ImageClassificationPipeline and
ZeroShotImageClassificationPipeline compute them on the same weights.

Images are decoded and checked in `parse` (a bad one is the caller's 4xx before anything is queued); the
checkpoint's image processor runs in `preprocess`, once per batch, on the collect thread.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.media.images import load_image
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler, int_param
from hf_provider.types import Item, RowControl

DEFAULT_TEMPLATE = "This is a photo of {}."  # ZeroShotImageClassificationPipeline's


def image_tokens(model: LoadedModel) -> int:
    """An image's cost for batching: the patches its vision encoder attends over (plus the class token)."""
    cfg = getattr(model.config, "vision_config", None) or model.config
    size, patch = getattr(cfg, "image_size", None), getattr(cfg, "patch_size", None)
    if isinstance(size, int) and isinstance(patch, int) and patch > 0:
        return (size // patch) ** 2 + 1
    return 256


def clip_like(model: LoadedModel) -> str | None:
    """None when the model embeds texts and images into one space and scores them as CLIP does."""
    import torch

    m = model.module
    if isinstance(m, torch.nn.Module):
        if not all(hasattr(m, a) for a in ("get_image_features", "get_text_features", "logit_scale")):
            return f"{model.architecture} is not a CLIP-like image-text model"
        if hasattr(m, "logit_bias"):  # SigLIP: sigmoid scores, fixed-length padding; not built here yet
            return f"{model.architecture} scores with a sigmoid (SigLIP-like), which is not served yet"
    elif not (hasattr(model.config, "text_config") and hasattr(model.config, "vision_config")):
        # the parent of a worker process holds a stand-in module: the worker checked the real one
        return f"{model.architecture} is not a CLIP-like image-text model"
    if model.image_processor is None:
        return f"{model.architecture} has no image processor in its files"
    if model.tokenizer is None:
        return f"{model.architecture} has no tokenizer in its files"
    return None


def features(out: Any) -> Any:
    """get_image_features / get_text_features: a tensor in transformers 4, an output whose pooler_output is the
    projected embedding in transformers 5."""
    return getattr(out, "pooler_output", out)


def image_value(value: Any) -> Any:
    """OpenAI's content part {"type": "image_url", "image_url": {"url": ...}} (or "image_url": "...") unwrapped."""
    if isinstance(value, dict) and value.get("type") == "image_url":
        ref = value.get("image_url")
        return ref.get("url") if isinstance(ref, dict) else ref
    return value


def pixel_values(model: LoadedModel, images: list[Any]) -> Any:
    """The checkpoint's image processor on a batch of RGB images, on the model's device and dtype (as the
    pipelines' `preprocess`, one image at a time there: the processor treats each image alone)."""
    pixels = model.image_processor(images=images, return_tensors="pt")["pixel_values"]
    return pixels.to(device=model.device, dtype=model.dtype)


class ImageHandler(BaseHandler):
    """Images in, one forward pass over their pixel values."""

    def images(self, inputs: Any, param: str = "inputs") -> tuple[list[Any], bool]:
        single = not isinstance(inputs, list)
        values = [inputs] if single else inputs
        if not values:
            raise InvalidInput(f"'{param}' must be an image or a non-empty list of images", param=param)
        if len(values) > self.max_items:
            raise TooManyItems(
                f"'{param}' has {len(values)} items; at most {self.max_items} are accepted per request",
                param=param,
            )
        media = self.model.media
        return [
            load_image(image_value(v), media, param if single else f"{param}[{i}]")
            for i, v in enumerate(values)
        ], single

    def pixel_values(self, images: list[Any]) -> Any:
        return pixel_values(self.model, images)


class ImageClassification(ImageHandler):
    task = "image-classification"
    allowed_params = frozenset({"top_k", "function_to_apply"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        if not model.architecture.endswith("ForImageClassification"):
            return f"{model.architecture} has no *ForImageClassification head"
        if model.image_processor is None:
            return f"{model.architecture} has no image processor in its files"
        return None

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        # the pipeline's default of 5, cut to the labels there are
        merged["top_k"] = min(int_param(merged, "top_k", 5, 1), self.model.config.num_labels)
        fn = merged.get("function_to_apply", self._default_function())
        if fn not in ("softmax", "sigmoid", "none"):
            raise InvalidInput(
                f"'function_to_apply' must be one of softmax, sigmoid, none; got {fn!r}",
                param="function_to_apply",
            )
        merged["function_to_apply"] = fn
        images, single = self.images(inputs)
        cost = image_tokens(self.model)
        return [Item(data={"image": im}, n_tokens=cost) for im in images], merged, single

    def _default_function(self) -> str:
        """ImageClassificationPipeline's choice from the config."""
        cfg = self.model.config
        problem = getattr(cfg, "problem_type", None)
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or cfg.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        return self.pixel_values([it.data["image"] for it in items])

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        return self.model.module(pixel_values=batch).logits  # optimize backends are exported for text inputs

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        import numpy as np
        import torch

        logits = outputs.float()
        fn = params["function_to_apply"]
        scores = (
            torch.softmax(logits, -1)
            if fn == "softmax"
            else torch.sigmoid(logits)
            if fn == "sigmoid"
            else logits
        )
        labels = self.model.config.id2label
        k = params["top_k"]
        out = []
        for row in scores.cpu().numpy():
            order = np.argsort(-row, kind="stable")[:k]  # ties in label order, as the pipeline's stable sort
            out.append([{"label": labels[int(i)], "score": float(row[i])} for i in order])
        return out


class ZeroShotImageClassification(ImageHandler):
    """Each image against its request's labels. Requests with other labels share a batch: the batch embeds its
    images and the set of all its hypotheses once, and each image is scored against its own."""

    task = "zero-shot-image-classification"
    allowed_params = frozenset({"candidate_labels", "hypothesis_template"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        return clip_like(model)

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        return self.task  # labels and template travel with each item

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        labels = self._labels(merged.get("candidate_labels"))
        template = merged.get("hypothesis_template", DEFAULT_TEMPLATE)
        if not isinstance(template, str):
            raise InvalidInput(
                "'hypothesis_template' must be a string such as 'a photo of {}'", param="hypothesis_template"
            )
        try:
            hypotheses = [template.format(label) for label in labels]
        except (IndexError, KeyError, ValueError):
            raise InvalidInput(
                "'hypothesis_template' must hold one {} where each label goes, and no other braces",
                param="hypothesis_template",
            ) from None
        merged["candidate_labels"], merged["hypothesis_template"] = labels, template
        rows = self.tokenize(hypotheses, truncate=False, limit=1 << 30)  # lengths checked here, per label
        limit = self.text_limit
        for i, row in enumerate(rows):
            if len(row["input_ids"]) > limit:
                raise InvalidInput(
                    f"'candidate_labels[{i}]' makes a hypothesis of {len(row['input_ids'])} tokens; this model "
                    f"reads at most {limit}: shorten the label or the hypothesis_template",
                    param="candidate_labels",
                )
        images, single = self.images(inputs)
        cost = image_tokens(self.model) + sum(len(r["input_ids"]) for r in rows)
        data = {"labels": labels, "hypotheses": hypotheses, "rows": rows}
        return [Item(data={**data, "image": im}, n_tokens=cost) for im in images], merged, single

    @property
    def text_limit(self) -> int:
        text_cfg = getattr(self.model.config, "text_config", None)
        limit = getattr(text_cfg, "max_position_embeddings", None) or self.model.max_length
        return min(limit, self.model.spec.max_length or limit)

    def _labels(self, value: Any) -> list[str]:
        if isinstance(value, str):  # "cat, dog": a comma-separated list, as the text zero-shot pipeline takes
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not value:
            raise InvalidInput(
                "'candidate_labels' is required: a non-empty list of label strings", param="candidate_labels"
            )
        limit = self.model.spec.batching.max_candidate_labels  # the same bound as zero-shot-classification's
        if len(value) > limit:
            raise TooManyItems(
                f"'candidate_labels' has {len(value)} labels; at most {limit} are accepted per request "
                "(models.<name>.batching.max_candidate_labels)",
                param="candidate_labels",
            )
        for i, label in enumerate(value):
            if not isinstance(label, str) or not label.strip():
                raise InvalidInput(
                    f"'candidate_labels[{i}]' must be a non-empty string", param="candidate_labels"
                )
        return value

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        index: dict[str, int] = {}
        rows = []
        for it in items:
            for h, r in zip(it.data["hypotheses"], it.data["rows"], strict=True):
                if h not in index:
                    index[h] = len(rows)
                    rows.append(r)
        return {
            "pixel_values": self.pixel_values([it.data["image"] for it in items]),
            "text": self.pad(rows),
            "label_rows": [[index[h] for h in it.data["hypotheses"]] for it in items],
            "labels": [it.data["labels"] for it in items],
        }

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        m = self.model.module
        images = features(m.get_image_features(pixel_values=batch["pixel_values"]))
        texts = features(m.get_text_features(**batch["text"]))
        return images, texts, m.logit_scale.exp()

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        images, texts, scale = (t.float() for t in outputs)
        # as CLIPModel.forward: cosine similarity times the learned temperature, softmax over the labels
        images = images / images.norm(p=2, dim=-1, keepdim=True)
        texts = texts / texts.norm(p=2, dim=-1, keepdim=True)
        out = []
        for i, (rows, labels) in enumerate(zip(batch["label_rows"], batch["labels"], strict=True)):
            scores = ((texts[rows] @ images[i]) * scale).softmax(dim=-1).cpu().tolist()
            ranked = sorted(zip(scores, labels, strict=True), key=lambda x: -x[0])  # stable, as the pipeline
            out.append([{"score": s, "label": label} for s, label in ranked])
        return out
