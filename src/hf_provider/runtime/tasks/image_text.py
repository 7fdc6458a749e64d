"""embeddings of a CLIP-like model: texts and images, in one request and one batch, into the one space its two
towers share (the projections `get_text_features` / `get_image_features`), from the one weight set that also
serves zero-shot-image-classification.

Which inputs are images: bytes, PIL images, strings that are `data:image/...` URIs, and OpenAI content parts
({"type": "image_url", "image_url": {"url": ...}}); other strings are texts. `modality` ("text" or "image")
says so for every string instead, so a text that starts with "data:image/" or an image URL can be sent.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import Any

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.media.images import is_image_reference, load_image
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import bool_param, int_param
from hf_provider.runtime.tasks.embeddings import Embeddings
from hf_provider.runtime.tasks.vision import clip_like, features, image_tokens, image_value, pixel_values
from hf_provider.types import Item, RowControl

MODALITIES = ("auto", "text", "image")


class ImageTextEmbeddings(Embeddings):
    allowed_params = frozenset({"normalize", "dimensions", "truncate", "modality"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        return clip_like(model)

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        return (params.get("normalize", True), params.get("dimensions"))  # what postprocess reads

    @functools.cached_property
    def hidden_size(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def text_limit(self) -> int:
        limit = self.model.config.text_config.max_position_embeddings
        return min(limit, self.model.spec.max_length or limit)

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        merged["normalize"] = bool_param(merged, "normalize", True)
        merged["dimensions"] = int_param(merged, "dimensions", None, 1, self.hidden_size)
        modality = merged.pop("modality", "auto")
        if modality not in MODALITIES:
            raise InvalidInput(
                f"'modality' must be one of {', '.join(MODALITIES)}; got {modality!r}", param="modality"
            )
        single = not isinstance(inputs, list)
        values = [inputs] if single else inputs
        if not values:
            raise InvalidInput("'inputs' must be a non-empty string, image, or list of them", param="inputs")
        if len(values) > self.max_items:
            raise TooManyItems(
                f"'inputs' has {len(values)} items; at most {self.max_items} are accepted per request",
                param="inputs",
            )
        items: list[Item | None] = [None] * len(values)
        texts: list[tuple[int, str]] = []
        cost = image_tokens(self.model)
        for i, value in enumerate(values):
            param = "inputs" if single else f"inputs[{i}]"
            kind, v = self._classify(value, modality, param)
            if kind == "text":
                texts.append((i, v))
            else:
                items[i] = Item(data={"image": load_image(v, self.model.media, param)}, n_tokens=cost)
        if texts:
            truncate, limit = merged.get("truncate", False), self.text_limit
            # without truncation, lengths are checked here, so an error names the input by its own index
            rows = self.tokenize([t for _, t in texts], truncate, limit=limit if truncate else 1 << 30)
            for (i, _), row in zip(texts, rows, strict=True):
                if len(row["input_ids"]) > limit:
                    raise InvalidInput(
                        f"'inputs[{i}]' is {len(row['input_ids'])} tokens long; this model's text tower reads at "
                        f"most {limit} (pass parameter truncate=true to cut it)",
                        param="inputs",
                        task=self.task,
                    )
                items[i] = Item(data=row, n_tokens=len(row["input_ids"]))
        return [it for it in items if it is not None], merged, single

    @staticmethod
    def _classify(value: Any, modality: str, param: str) -> tuple[str, Any]:
        if isinstance(value, dict):
            kind = value.get("type")
            if kind == "text" and isinstance(value.get("text"), str):
                value = value["text"]
            elif kind == "image_url" and isinstance(image_value(value), str):
                return "image", image_value(value)
            else:
                raise InvalidInput(
                    f"'{param}' must be a string, {{'type': 'text', 'text': ...}} or "
                    "{'type': 'image_url', 'image_url': {'url': ...}}",
                    param=param,
                )
        elif not isinstance(value, str):
            if is_image_reference(value):
                return "image", value
            raise InvalidInput(
                f"'{param}' must be a text or an image, got {type(value).__name__}", param=param
            )
        elif modality == "image" or (modality == "auto" and is_image_reference(value)):
            return "image", value
        if not value.strip():
            raise InvalidInput(f"'{param}' is empty", param=param)
        return "text", value

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        image_at = [i for i, it in enumerate(items) if "image" in it.data]
        text_at = [i for i, it in enumerate(items) if "image" not in it.data]
        return {
            "n": len(items),
            "image_at": image_at,
            "text_at": text_at,
            "pixel_values": pixel_values(self.model, [items[i].data["image"] for i in image_at])
            if image_at
            else None,
            "text": self.pad([items[i].data for i in text_at]) if text_at else None,
        }

    @functools.cached_property
    def graphs(self) -> None:
        return None  # two towers, two shapes: eager

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        import torch

        m = self.model.module
        parts = []
        if batch["text"] is not None:
            parts.append((batch["text_at"], features(m.get_text_features(**batch["text"]))))
        if batch["pixel_values"] is not None:
            parts.append(
                (batch["image_at"], features(m.get_image_features(pixel_values=batch["pixel_values"])))
            )
        out = torch.empty(
            (batch["n"], parts[0][1].shape[-1]), dtype=parts[0][1].dtype, device=parts[0][1].device
        )
        for at, vecs in parts:  # back in the order of the items
            out[torch.tensor(at, device=out.device)] = vecs
        return out
