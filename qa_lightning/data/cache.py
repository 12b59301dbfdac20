"""The feature cache: a fingerprint of everything that changes the features, and atomic save/load of one split.

    path = os.path.join(root, f"validation-{fingerprint(src, None, tok, keys)}")
    save_split(path, examples, features, "dev.json: 10570 examples -> 10822 features")
    examples, features, report = load_split_cache(path)

A split is a folder ``examples/`` + ``features/`` (``datasets.save_to_disk``) + ``report.txt``, written in a temporary
folder beside it and renamed into place, so a half-written cache is never visible and two concurrent builders
(DDP nodes, two runs) are both safe: the first rename wins and the other build is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Optional

from .sources import is_local

__all__ = ["FEATURES_VERSION", "tokenizer_fingerprint", "fingerprint", "save_split", "load_split_cache"]

# Bump when features.py changes what it produces: old caches are then ignored.
FEATURES_VERSION = "1"


def tokenizer_fingerprint(tok) -> str:
    """Stable identity of a tokenizer: its serialised pipeline without the call-time truncation/padding state."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return repr(tok)
    spec = json.loads(backend.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def fingerprint(source: str, config_name: Optional[str], tokenizer: Any, keys: dict) -> str:
    """16 hex digits naming a split's features: source file bytes (or hub name), tokenizer, settings, version."""
    h = hashlib.sha256()
    if is_local(source) and os.path.isfile(source):
        with open(source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(f"hub:{source}:{config_name}".encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(json.dumps({**keys, "v": FEATURES_VERSION}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _quiet_datasets():
    """Hide datasets' progress bars for bookkeeping steps (saving) while keeping the tokenization bar."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def save_split(path: str, examples, features, report: str) -> None:
    """Write examples, features and the one-line preprocessing report to ``path`` atomically."""
    root = os.path.dirname(os.path.abspath(path))
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=root)
    try:
        with _quiet_datasets():
            examples.save_to_disk(os.path.join(tmp, "examples"))
            features.save_to_disk(os.path.join(tmp, "features"))
        with open(os.path.join(tmp, "report.txt"), "w") as fh:
            fh.write(report + "\n")
        try:
            os.replace(tmp, path)  # atomic: a half-written cache is never visible
        except OSError:
            if not os.path.isdir(path):  # a concurrent writer did not win either: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_split_cache(path: str):
    """(examples, features, report line) of a split saved by :func:`save_split` (memory-mapped Arrow)."""
    import datasets

    examples = datasets.load_from_disk(os.path.join(path, "examples"))
    features = datasets.load_from_disk(os.path.join(path, "features"))
    with open(os.path.join(path, "report.txt")) as fh:
        report = fh.read().strip()
    return examples, features, report
