"""Optional adapter for NVIDIA's management library (`pip install nvidia-ml-py`, imported as `pynvml`).

Every pynvml call lives here. Missing package, missing driver or no GPU all mean the same thing to callers:
`GpuProbe.available` is False and `sample()` returns an empty list; nothing raises.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

INSTALL_HINT = "GPU metrics need nvidia-ml-py: pip install 'hf-provider[gpu]'"


class GpuProbe:
    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml  # lazily: an optional dependency
        except ImportError:
            log.debug("pynvml not installed; no GPU series. %s", INSTALL_HINT)
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
        except Exception as exc:  # NVMLError subclasses: no driver, no device, permissions
            log.info("NVML unavailable (%s); no GPU series", exc)
            self._handles = []

    @property
    def available(self) -> bool:
        return self._nvml is not None and bool(self._handles)

    def sample(self) -> list[dict[str, float]]:
        """Per GPU: index, memory_used_bytes, memory_total_bytes, utilization_percent; [] on failure."""
        if not self.available:
            return []
        out = []
        for i, h in enumerate(self._handles):
            try:
                mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
                util = self._nvml.nvmlDeviceGetUtilizationRates(h)
                out.append(
                    {
                        "index": i,
                        "memory_used_bytes": float(mem.used),
                        "memory_total_bytes": float(mem.total),
                        "utilization_percent": float(util.gpu),
                    }
                )
            except Exception as exc:
                log.debug("NVML sample of GPU %d failed: %s", i, exc)
        return out

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown failed: %s", exc)
            self._nvml = None
