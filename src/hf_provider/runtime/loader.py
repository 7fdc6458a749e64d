"""The only place that calls `from_pretrained`.

A checkpoint is loaded once, as the most capable model class its config names (a T5ForConditionalGeneration, a
BertForTokenClassification...); every task handler then shares that one `nn.Module`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoTokenizer

from hf_provider.errors import ModelLoadError, ProviderError
from hf_provider.hub.resolve import Resolved, resolve
from hf_provider.memory.estimate import module_bytes
from hf_provider.runtime import processors, shared_tokenizers
from hf_provider.runtime.device import pick_device, pick_dtype
from hf_provider.runtime.foreground import yield_point
from hf_provider.runtime.model import LoadedModel
from hf_provider.spec import ModelSpec

log = logging.getLogger(__name__)

# One from_pretrained at a time in this process: transformers swaps globals while it loads (torch.nn.init
# functions in no_init_weights, PreTrainedModel.tie_weights in no_tie_weights) and restores them in `finally`.
# Two loads on two threads interleave the save and the restore, leaving the no-op versions installed for good:
# every later model then skips weight tying (an untied, uninitialized LM head) and initialization.
_LOAD_LOCK = threading.Lock()

# Architecture-name suffix -> Auto class. Order matters: the first suffix that matches wins.
_AUTO_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    ("ForSequenceClassification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "AutoModelForTokenClassification"),
    ("ForImageClassification", "AutoModelForImageClassification"),
    ("ForQuestionAnswering", "AutoModelForQuestionAnswering"),
    ("ForMaskedLM", "AutoModelForMaskedLM"),
    ("ForCausalLM", "AutoModelForCausalLM"),
    ("LMHeadModel", "AutoModelForCausalLM"),
)


def auto_class_for(config: transformers.PretrainedConfig) -> type:
    archs = getattr(config, "architectures", None) or []
    arch = archs[0] if archs else ""
    if is_speech_seq2seq(config):  # Whisper & co: an encoder-decoder whose encoder reads audio features
        return transformers.AutoModelForSpeechSeq2Seq
    if getattr(config, "is_encoder_decoder", False):
        return transformers.AutoModelForSeq2SeqLM
    for suffix, name in _AUTO_BY_SUFFIX:
        if arch.endswith(suffix):
            return getattr(transformers, name)
    if arch.endswith("ForConditionalGeneration"):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def is_speech_seq2seq(config: transformers.PretrainedConfig) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES

    return getattr(config, "model_type", None) in MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES


def _has_safetensors(path: Path) -> bool:
    return any(path.glob("*.safetensors"))


def load_model(spec: ModelSpec, *, resolved: Resolved | None = None) -> LoadedModel:
    """Resolve the spec's source to an exact snapshot and load its weights.

    Task handlers are attached by the caller (`attach_tasks` in `models/serving.py`).
    """
    t0 = time.perf_counter()
    resolved = resolved or resolve(spec.source, spec.revision)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    path = resolved.path
    try:
        with _LOAD_LOCK:
            if (path / "modules.json").exists():
                loaded = _load_sentence_transformer(spec, path, device, dtype)
            else:
                loaded = _load_transformers(spec, path, device, dtype)
    except ProviderError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(
            f"could not load model {spec.name!r} from {spec.source!r}: {e}", model=spec.name
        ) from e
    module, tokenizer, config, st, image_processor = loaded
    feature_extractor = _feature_extractor(spec, path, config)
    yield_point()  # a swap's load steps aside for forward passes between its steps (runtime/foreground.py)
    module.eval()
    from hf_provider.runtime.tasks.encoding import fast_encoder

    return LoadedModel(
        spec=spec,
        path=path,
        commit=resolved.commit,
        module=module,
        config=config,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        weight_bytes=module_bytes(st if st is not None else module),
        architecture=(getattr(config, "architectures", None) or [type(module).__name__])[0],
        sentence_model=st,
        feature_extractor=feature_extractor,
        load_seconds=time.perf_counter() - t0,
        # models built from the same tokenizer files share the tokenizer, its lock and its encoder (see
        # runtime/shared_tokenizers.py: a swap's candidate then builds none)
        tokenizer_lock=shared_tokenizers.lock_for(tokenizer),
        fast_encoder=None if tokenizer is None else shared_tokenizers.encoder_for(tokenizer, fast_encoder),
        image_processor=image_processor,
    )


def _load_transformers(spec: ModelSpec, path: Path, device: torch.device, dtype: torch.dtype):
    config = AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    yield_point()
    cls = auto_class_for(config)
    module = cls.from_pretrained(
        path,
        config=config,
        dtype=dtype,
        trust_remote_code=spec.trust_remote_code,
        use_safetensors=True if _has_safetensors(path) else None,
    ).to(device)
    yield_point()
    tokenizer = None  # a vision model (ViT) has none
    if processors.has_tokenizer(path):
        key = shared_tokenizers.files_key(path, f"auto-tokenizer/remote-code={spec.trust_remote_code}")
        tokenizer = shared_tokenizers.shared(
            key, lambda: AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
        )
    return module, tokenizer, config, None, processors.load_image_processor(path, spec.trust_remote_code)


def _feature_extractor(spec: ModelSpec, path: Path, config: transformers.PretrainedConfig) -> Any:
    """A speech model's feature extractor (log-mel spectrograms for Whisper), from the snapshot's
    preprocessor_config.json; None for other models."""
    if not is_speech_seq2seq(config):
        return None
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"model {spec.name!r} is a speech model but its feature extractor (preprocessor_config.json) could "
            f"not be loaded: {e}",
            model=spec.name,
        ) from e


def _load_sentence_transformer(spec: ModelSpec, path: Path, device: torch.device, dtype: torch.dtype):
    from sentence_transformers import SentenceTransformer

    key = shared_tokenizers.files_key(path, f"st-processor/remote-code={spec.trust_remote_code}")
    yield_point()
    with shared_tokenizers.sentence_transformer_processor(key, path):
        st = SentenceTransformer(
            str(path),
            device=str(device),
            trust_remote_code=spec.trust_remote_code,
            local_files_only=True,
            model_kwargs={"dtype": dtype, "use_safetensors": True if _has_safetensors(path) else None},
        )
    first = st[0]
    module = first.auto_model
    return module, first.tokenizer, module.config, st, None
