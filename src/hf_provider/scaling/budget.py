"""The memory budget of one replica, from what Ray reserves for it.

Every replica runs its own Provider and so its own byte budget; several replicas share a node (and, with a
fractional `num_gpus`, a GPU), so a budget written for one process would be claimed once per replica and
overcommit the machine. Pure: totals are passed in.
"""

from __future__ import annotations

from hf_provider.scaling.config import RaySettings
from hf_provider.units import SizeValue, parse_size


def replica_host_budget(host_budget: SizeValue | None, ray: RaySettings) -> SizeValue | None:
    """`[ray] memory` is what Ray reserved: the budget is that, or `[memory] host_budget` when it is given in
    bytes and smaller, or that fraction of it. Without `[ray] memory`, `host_budget` applies as written."""
    if ray.memory is None:
        return host_budget
    if host_budget is None:
        return ray.memory
    return min(ray.memory, parse_size(host_budget, ray.memory, of="the replica's memory"))


def replica_gpu_budget(
    gpu_budget: SizeValue | None, ray: RaySettings, gpu_totals: dict[int, int]
) -> dict[int, int] | SizeValue | None:
    """With `num_gpus` below 1 the replica shares each GPU it sees: its budget is that share of the GPU (of
    `gpu_budget`'s part of it, when that is a fraction; bytes are kept, capped at the share). A whole GPU or
    more: `gpu_budget` applies as written."""
    if not 0 < ray.num_gpus < 1 or not gpu_totals:
        return gpu_budget
    out = {}
    for i, total in gpu_totals.items():
        share = int(total * ray.num_gpus)
        out[i] = (
            share if gpu_budget is None else min(share, parse_size(gpu_budget, share, of="the GPU share"))
        )
    return out


def torch_threads(ray: RaySettings) -> int:
    """Threads for torch in a replica: its CPUs (a replica given one CPU and torch's default of one thread per
    core would compete with its neighbours for every core of the node)."""
    if ray.torch_threads is not None:
        return ray.torch_threads
    return max(1, int(-(-ray.num_cpus // 1)))
