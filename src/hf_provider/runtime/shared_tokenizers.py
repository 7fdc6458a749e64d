"""One tokenizer per set of tokenizer files in the process, shared by every loaded model built from them.

Why: a swap loads the candidate revision beside the serving one, and most revisions change weights or a README,
not the tokenizer. Building a fast tokenizer parses its tokenizer.json in Rust and in Python while holding the GIL
(45 ms for MiniLM's in one call, about 200 ms of held GIL in all with our FastEncoder copy), and the serving
version's forward pass needs the GIL between every two torch ops: requests stalled for the whole load
(bench/swap.py). Reusing the serving version's tokenizer takes that work out of the swap, and saves the memory of
a second copy for fine-tunes of one base model loaded side by side.

Identity is by file content: a Hub snapshot's files are links to blobs named by their hash, so the same resolved
blob means the same bytes; a local folder's file is the same while its (path, size, mtime) is. Every file of the
checkpoint but its weights and README is part of the key (tokenizer files, and the configs whose values the
loaders copy into the tokenizer, such as max_position_embeddings and max_seq_length).

Sharers also share the lock that serializes calls which rewrite a fast tokenizer's padding and truncation state
(LoadedModel.tokenizer_lock). Nothing in this project sets attributes on a loaded tokenizer; one that did would
change it for every sharer.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

_NOT_TOKENIZER = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt", ".gguf")
_lock = threading.Lock()
_by_key: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()
_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_encoders: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_told_no_handover = (
    False  # under _lock: the hand-over's absence is a fact of the installed version, said once
)


def files_key(folder: Path, kind: str) -> tuple | None:
    """The identity of the tokenizer-relevant files under `folder` for a loader `kind`; None if unreadable."""
    try:
        entries = []
        for p in sorted(Path(folder).rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if rel.startswith((".cache/", ".git/")) or rel.lower().startswith("readme") or not p.is_file():
                continue
            if p.name.endswith(_NOT_TOKENIZER):
                continue
            st = p.stat()
            entries.append((rel, str(p.resolve()), st.st_size, st.st_mtime_ns))
        return (kind, tuple(entries))
    except OSError:
        return None


def shared(key: tuple | None, build: Callable[[], T]) -> T:
    """The live object built for `key`, else `build()` remembered under it (while something uses it)."""
    if key is None:
        return build()
    with _lock:
        found = _by_key.get(key)
    if found is not None:
        return found
    made = build()
    with _lock:
        try:
            return _by_key.setdefault(key, made)
        except TypeError:  # not weak-referenceable: not shared
            return made


def encoder_for(tokenizer: Any, build: Callable[[Any], Any]) -> Any:
    """`build(tokenizer)` (the FastEncoder, or None where it does not mirror the tokenizer) once per tokenizer."""
    with _lock:
        try:
            if tokenizer in _encoders:
                return _encoders[tokenizer]
        except TypeError:  # not weak-referenceable
            return build(tokenizer)
    made = build(tokenizer)
    with _lock:
        return _encoders.setdefault(tokenizer, made)


def lock_for(tokenizer: Any) -> threading.Lock:
    """The encode lock of `tokenizer`, one per tokenizer object, so models sharing it share the lock."""
    with _lock:
        try:
            found = _locks.get(tokenizer)
            if found is None:
                found = _locks[tokenizer] = threading.Lock()
            return found
        except TypeError:  # not weak-referenceable
            return threading.Lock()


@contextmanager
def sentence_transformer_processor(key: tuple | None, folder: Path) -> Iterator[None]:
    """While a SentenceTransformer is built from `folder` (under the loader's lock: one build at a time), its
    Transformer module's `AutoProcessor.from_pretrained` returns the live tokenizer for `key` when there is one.

    sentence-transformers has no argument for a ready tokenizer, so the module's name is swapped for the build.
    Where the module or name moved (another sentence-transformers version) nothing is swapped and the tokenizer
    is loaded as usual (logged once per process); a call for another folder (a build on a thread outside the
    loader) is passed through."""
    st_transformer = _transformer_module()
    if st_transformer is None:
        _no_handover("it has no sentence_transformers.base.modules.transformer")
        yield
        return
    real = getattr(st_transformer, "AutoProcessor", None)
    if real is None or not hasattr(real, "from_pretrained"):
        _no_handover("its Transformer module has no AutoProcessor.from_pretrained")
        yield
        return
    if key is None:  # the folder could not be read: the load reports that itself
        yield
        return
    mine = Path(folder).resolve()
    asked: list[bool] = []

    class _Shared:
        @staticmethod
        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            if not args or Path(str(args[0])).resolve() != mine:
                return real.from_pretrained(*args, **kwargs)
            asked.append(True)
            # the folder differs per snapshot and is in `key` by content; other arguments count as given
            call = (key, repr(args[1:]), repr(sorted(kwargs.items())))
            return shared(call, lambda: real.from_pretrained(*args, **kwargs))

    st_transformer.AutoProcessor = _Shared
    try:
        yield
    finally:
        st_transformer.AutoProcessor = real
    if not asked:  # built without asking for its folder's processor (a module in a subfolder, another loader)
        _no_handover(
            f"a build from {folder} did not ask its Transformer module's AutoProcessor for the folder"
        )


def _transformer_module() -> Any:
    try:
        from sentence_transformers.base.modules import transformer

        return transformer
    except ImportError:
        return None


def _no_handover(why: str) -> None:
    global _told_no_handover
    with _lock:
        if _told_no_handover:
            return
        _told_no_handover = True
    try:
        from importlib.metadata import version

        installed = version("sentence-transformers")
    except Exception:  # a missing or odd distribution must not fail a load over a log line
        installed = "?"
    log.warning(
        "sentence-transformers %s: its models build their own tokenizer (%s), so a swap's candidate parses its "
        "tokenizer files while the serving version runs (runtime/shared_tokenizers.py); said once per process",
        installed,
        why,
    )
