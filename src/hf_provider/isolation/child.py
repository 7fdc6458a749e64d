"""The child side of `isolation = "process"`: load one model in its own process and run whole batches for it.

Started by resilience/worker.py with the 'spawn' start method (a fork after torch has started its threads can
deadlock), so this module imports only what a fresh interpreter needs. The parent tokenizes and queues; a batch
arrives here as its parsed items and parameters, and preprocess, forward and postprocess all run here, so only
token ids go in and JSON-ready results come out (see docs/architecture.md for why the cut is there).

Messages on the pipe (tuples, pickled by multiprocessing):
    parent -> child: ("run", bid, task, items, params, streaming, inject) | ("stop", bid, row, reason) | ("exit",)
    child -> parent: ("ready", description) | ("failed", error) once at start, then per batch
                     ("emit", bid, row, delta) | ("generated", bid, rows) | ("done", bid, results, timings) |
                     ("error", bid, error) | ("fatal", bid, error), after which the child exits: a fatal device
                     error leaves its device context unusable, and only a new process gets a clean one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FATAL_EXIT = 70  # the exit status after a fatal device error (EX_SOFTWARE)


def pack_error(exc: BaseException) -> bytes:
    """The exception as pickled bytes when it survives the trip (its `hfp_phase` tag included), else a
    RuntimeError naming its type: an exception whose __init__ takes other arguments cannot be rebuilt."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        plain = RuntimeError(f"{type(exc).__name__}: {exc}")
        plain.__dict__.update({k: v for k, v in vars(exc).items() if k.startswith("hfp_")})
        return pickle.dumps(plain)


def unpack_error(data: bytes) -> BaseException:
    return pickle.loads(data)


class _Rows:
    """The RowControl of a batch running here: deltas and token counts go to the parent, stops come from it."""

    def __init__(self, send: Any, bid: int, streaming: bool, stops: dict[tuple[int, int], str]) -> None:
        self._send, self._bid, self._streaming, self._stops = send, bid, streaming, stops

    @property
    def streaming(self) -> bool:
        return self._streaming

    def emit(self, row: int, delta: str) -> None:
        self._send(("emit", self._bid, row, delta))

    def stop_reason(self, row: int) -> str | None:
        return self._stops.get((self._bid, row))

    def generated(self, rows: Sequence[int]) -> None:
        self._send(("generated", self._bid, list(rows)))


def facts(handler: Any) -> dict[str, Any]:
    """The handler's cached properties computed here (a sentence-transformers checkpoint's embedding size, whether
    its ids can be padded directly), so the parent's copy, which has no weights, parses exactly as this one."""
    out: dict[str, Any] = {}
    for cls in type(handler).__mro__:
        for name, attr in vars(cls).items():
            if isinstance(attr, functools.cached_property) and name not in out:
                try:
                    value = getattr(handler, name)
                    pickle.dumps(value)
                except Exception:
                    continue
                out[name] = value
    return out


def _load(spec_json: str, path: str, commit: str | None) -> tuple[Any, float | None]:
    from hf_provider.hub.resolve import Resolved
    from hf_provider.runtime.loader import load_model
    from hf_provider.runtime.quantization import apply_quantization
    from hf_provider.runtime.tasks import build_handler, supported_tasks
    from hf_provider.spec import ModelSpec

    spec = ModelSpec.model_validate_json(spec_json)
    kind = "local" if commit is None else "hub"
    resolved = Resolved(Path(path), commit, kind, spec.source, spec.revision)
    model = load_model(spec, resolved=resolved)
    cosine = apply_quantization(model)
    for task in spec.tasks or supported_tasks(model):
        model.handlers[task] = build_handler(task, model, spec.defaults.get(task))
    from hf_provider.optimize.apply import apply_optimize

    apply_optimize(model)  # spec.optimize, as in the parent's thread path (models/manager.py)
    return model, cosine


def describe(model: Any, cosine: float | None) -> dict[str, Any]:
    st = model.sentence_model
    return {
        "pid": os.getpid(),
        "config": model.config,
        "tokenizer": model.tokenizer,
        "image_processor": model.image_processor,
        "generation_config": getattr(model.module, "generation_config", None),
        "architecture": model.architecture,
        "commit": model.commit,
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "weight_bytes": model.weight_bytes,
        "load_seconds": model.load_seconds,
        "st_max_seq_length": getattr(st, "max_seq_length", None) if st is not None else None,
        "has_st": st is not None,
        "quantization_cosine": cosine,
        "facts": {task: facts(h) for task, h in model.handlers.items()},
    }


def main(conn: Any, spec_json: str, path: str, commit: str | None, threads: int) -> None:
    """The child's entry point (a module-level function, so 'spawn' can find it by name)."""
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C reaches the whole process group; the parent closes us
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    try:
        model, cosine = _load(spec_json, path, commit)
        conn.send(("ready", describe(model, cosine)))
    except (BrokenPipeError, EOFError):
        return  # the parent stopped waiting for us (it is closing): nobody to tell
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("failed", pack_error(exc)))
        return
    send_lock = threading.Lock()

    def send(msg: tuple) -> None:
        with send_lock:
            conn.send(msg)

    work: queue.Queue[tuple | None] = queue.Queue()
    stops: dict[tuple[int, int], str] = {}

    def read() -> None:
        # A separate reader, so stop messages for the running batch arrive while it computes.
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the parent is gone: nobody will read our answers
                os._exit(0)
            if msg[0] == "stop":
                stops[(msg[1], msg[2])] = msg[3]
            elif msg[0] == "exit":
                work.put(None)
                return
            else:
                work.put(msg)

    threading.Thread(target=read, name="hfp-child-reader", daemon=True).start()
    while (msg := work.get()) is not None:
        _, bid, task, items, params, streaming, inject = msg
        try:
            results, timings = _run(model, task, items, params, _Rows(send, bid, streaming, stops), inject)
        except BaseException as exc:
            if _fatal(exc):
                send(("fatal", bid, pack_error(exc)))
                os._exit(FATAL_EXIT)
            send(("error", bid, pack_error(exc)))
        else:
            send(("done", bid, results, timings))
        finally:
            for key in [k for k in stops if k[0] == bid]:
                stops.pop(key, None)
    conn.close()


def _run(model: Any, task: str, items: list, params: dict, rows: _Rows, inject: bytes | None):
    import torch

    from hf_provider.reporting.reports import tag
    from hf_provider.runtime.tasks import build_handler

    handler = model.handlers.get(task)
    if handler is None:  # a task added after the load (Provider.add_task)
        handler = model.handlers[task] = build_handler(task, model, model.spec.defaults.get(task))
    timings: dict[str, float] = {}
    phase, t0 = "preprocess", time.perf_counter()
    try:
        data = handler.preprocess(items, params)
        timings["preprocess"], t0, phase = time.perf_counter() - t0, time.perf_counter(), "forward"
        if inject is not None:  # TESTING ONLY: a fault the parent's injector chose for this forward pass
            raise unpack_error(inject)
        with torch.inference_mode():
            outputs = handler.forward(data, params, rows if handler.generative else None)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        timings["forward"], t0, phase = time.perf_counter() - t0, time.perf_counter(), "postprocess"
        results = handler.postprocess(data, outputs, params)
        timings["postprocess"] = time.perf_counter() - t0
    except BaseException as exc:
        tag(exc, phase, len(items))
        raise
    return results, timings


def _fatal(exc: BaseException) -> bool:
    from hf_provider.isolation.runners import is_device_fatal

    return is_device_fatal(exc)
