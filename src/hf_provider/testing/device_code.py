"""The code of the device-bound test model (hf_provider.testing.device_model), copied into the model's folder by
`save_pretrained` and loaded from there by transformers as the model's remote code (`auto_map` in config.json,
`trust_remote_code = true` in the model's spec). So it imports only the standard library, torch and
transformers: it runs in whatever process loads the model (a Ray replica), without hf_provider on the path.

The forward pass stands in for a device (a GPU or a remote accelerator): it waits `batch_seconds` per
`batch_rows` rows of the batch in `time.sleep`, which holds no CPU and releases the GIL, then looks the ids up
in a small embedding table (microseconds), so the outputs are real and depend on the input.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class DeviceBoundConfig(PretrainedConfig):
    model_type = "hfp-device-bound"

    def __init__(
        self,
        vocab_size: int = 1000,
        hidden_size: int = 32,
        batch_seconds: float = 0.02,
        batch_rows: int = 8,
        ballast_bytes: int = 0,
        max_position_embeddings: int = 512,
        **kwargs: Any,
    ) -> None:
        if batch_seconds < 0 or batch_rows < 1 or ballast_bytes < 0:
            raise ValueError("batch_seconds >= 0, batch_rows >= 1 and ballast_bytes >= 0 are required")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.batch_seconds = batch_seconds
        self.batch_rows = batch_rows
        self.ballast_bytes = ballast_bytes  # weights of that size, so placement by model bytes can be shown
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class DeviceBoundModel(PreTrainedModel):
    config_class = DeviceBoundConfig
    main_input_name = "input_ids"

    def __init__(self, config: DeviceBoundConfig) -> None:
        super().__init__(config)
        self.embeddings = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.ballast = torch.nn.Parameter(torch.zeros(config.ballast_bytes // 4), requires_grad=False)
        self.post_init()

    def _init_weights(self, module: Any) -> None:
        if isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=0.02)

    def device_seconds(self, rows: int) -> float:
        """The wait of a batch of `rows`: one `batch_seconds` per `batch_rows` rows started."""
        return self.config.batch_seconds * math.ceil(rows / self.config.batch_rows)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any
    ) -> BaseModelOutput:
        time.sleep(self.device_seconds(int(input_ids.shape[0])))
        return BaseModelOutput(last_hidden_state=self.embeddings(input_ids))
