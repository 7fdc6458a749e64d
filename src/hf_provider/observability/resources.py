"""Resource sampler: process CPU and RSS, system memory, per-model bytes, GPU memory and utilisation.

`sample(now)` takes one sample, sets the gauges and returns history rows; the Observer's background thread
calls it every `sample_interval_s`, tests call it directly. psutil never runs on the request path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psutil

from hf_provider.observability.metrics import Metrics
from hf_provider.observability.nvml import GpuProbe
from hf_provider.observability.store import ResourceRow

log = logging.getLogger(__name__)

ModelBytes = Callable[[], dict[str, dict[str, Any]]]
ModelState = Callable[[], dict[str, dict[str, float]]]


class ResourceSampler:
    def __init__(
        self,
        metrics: Metrics,
        *,
        model_bytes: ModelBytes | None,
        model_state: ModelState,
        gpu: GpuProbe | None = None,
    ) -> None:
        self._m = metrics
        self.model_bytes = model_bytes  # may be set after construction, once the model manager exists
        self._model_state = model_state
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # primes the counter: the first reading is relative to this call
        self.gpu = gpu if gpu is not None else GpuProbe()
        if self.gpu.available:
            metrics.enable_gpu()

    def sample(self, now: float) -> list[ResourceRow]:
        rows: list[ResourceRow] = []
        m = self._m
        try:
            cpu = self._proc.cpu_percent(None)
            rss = float(self._proc.memory_info().rss)
            vm = psutil.virtual_memory()
            m.process_cpu_percent.set(cpu)
            m.process_resident_bytes.set(rss)
            m.system_memory_total_bytes.set(vm.total)
            m.system_memory_available_bytes.set(vm.available)
            rows += [
                (now, "cpu_percent", "", cpu),
                (now, "rss_bytes", "", rss),
                (now, "system_memory_used_bytes", "", float(vm.total - vm.available)),
                (now, "system_memory_total_bytes", "", float(vm.total)),
            ]
        except Exception as exc:
            log.warning("process sample failed: %s", exc)
        rows += self._sample_models(now)
        for g in self.gpu.sample():
            key = str(int(g["index"]))
            for name in ("memory_used_bytes", "memory_total_bytes", "utilization_percent"):
                rows.append((now, f"gpu_{name}", key, g[name]))
            if m.gpu_memory_used_bytes is not None:
                m.child(m.gpu_memory_used_bytes, key).set(g["memory_used_bytes"])
                m.child(m.gpu_memory_total_bytes, key).set(g["memory_total_bytes"])
                m.child(m.gpu_utilization_percent, key).set(g["utilization_percent"])
        return rows

    def _sample_models(self, now: float) -> list[ResourceRow]:
        rows: list[ResourceRow] = []
        m = self._m
        if self.model_bytes is not None:
            try:
                per_model = self.model_bytes() or {}
            except Exception as exc:
                log.warning("model_bytes callback failed: %s", exc)
                per_model = {}
            for model, info in per_model.items():
                weight = info.get("weight_bytes")
                accounted = info.get("accounted_bytes")
                if weight is not None:
                    m.child(m.model_weight_bytes, model).set(weight)
                    rows.append((now, "weight_bytes", model, float(weight)))
                if accounted is not None:
                    m.child(m.model_accounted_bytes, model).set(accounted)
                    rows.append((now, "accounted_bytes", model, float(accounted)))
        try:
            for model, state in self._model_state().items():
                for name, value in state.items():
                    rows.append((now, name, model, float(value)))
        except Exception as exc:
            log.warning("model state sample failed: %s", exc)
        return rows

    def close(self) -> None:
        self.gpu.close()
