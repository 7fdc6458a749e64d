"""Third-party terminal noise off for the programs that own their terminal: `hfp`, the server, the test-model
builder. transformers' and huggingface_hub's progress bars ("Loading weights", "Writing model shards",
downloads), transformers' warnings, and onnxruntime's advice that it logs on the root logger ("Please consider
to run pre-processing before quantization") become debug records.

Every switch here is process-wide, so only entry points call `quiet_third_party`; a Provider used as a library
leaves them as the host program has them. Debug logging (`hfp --verbose`, `[server] log_level = "debug"`)
skips it, and explicit HF_HUB_DISABLE_PROGRESS_BARS=0 or TRANSFORMERS_VERBOSITY settings are honoured.
"""

from __future__ import annotations

import logging
import os
import sys

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of a boolean variable
_ONNXRUNTIME = f"{os.sep}onnxruntime{os.sep}"


class DemoteOnnxruntime(logging.Filter):
    """onnxruntime calls `logging.warning(...)` (the root logger) for advice that is not ours to act on: its
    records become DEBUG ones, kept only when the root logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "root" or _ONNXRUNTIME not in record.pathname:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_third_party() -> None:
    """Turn the noise off for this process and the processes it starts (idempotent)."""
    bars = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    if bars is None or bars.upper() in _TRUE:  # unset or true; an explicit false asks for the bars
        # the variable covers libraries imported later (huggingface_hub reads it at import, transformers
        # takes its default from it) and child processes; the calls cover those already imported
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "transformers" in sys.modules:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
    if "TRANSFORMERS_VERBOSITY" not in os.environ:
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        if "transformers" in sys.modules:
            from transformers.utils import logging as transformers_logging

            transformers_logging.set_verbosity_error()
    root = logging.getLogger()
    if not any(isinstance(f, DemoteOnnxruntime) for f in root.filters):
        root.addFilter(DemoteOnnxruntime())
