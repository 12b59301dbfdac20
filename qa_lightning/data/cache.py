"""The feature cache: a fingerprint of everything that changes the features, and atomic save/load of one split.
A split is a folder ``examples/`` + ``features/`` (``datasets.save_to_disk``) + ``report.txt`` + ``manifest.json``
(every file's size and SHA-256, of the first and last MiB for large ones), written aside and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from typing import Any, Callable

from ..files import atomic_path, discard

MANIFEST = "manifest.json"
_EDGE = 1 << 20  # files up to this size are hashed whole; larger ones at both ends (Arrow: schema ... end marker)

# Bump when features.py changes what it produces: old caches are then ignored.
FEATURES_VERSION = "3"  # 2: evaluation splits keep every gold text; 3: long questions cut (question_budget)


def tokenizer_fingerprint(tok) -> str:
    """Stable identity of a tokenizer: its serialised pipeline without the call-time truncation/padding state."""
    spec = json.loads(tok.backend_tokenizer.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def fingerprint(source: str, config_name: str | None, tokenizer: Any, keys: dict) -> str:
    """16 hex digits naming a split's features: source file bytes (or hub name), tokenizer, settings, version."""
    h = hashlib.sha256()
    if os.path.isfile(source):
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
    # Written aside and renamed: a half-written cache is never visible, and concurrent builders leave one copy.
    with atomic_path(path, folder=True) as tmp:
        with _quiet_datasets():
            examples.save_to_disk(os.path.join(tmp, "examples"))
            features.save_to_disk(os.path.join(tmp, "features"))
        with open(os.path.join(tmp, "report.txt"), "w") as fh:
            fh.write(report + "\n")
        with open(os.path.join(tmp, MANIFEST), "w") as fh:  # last: it describes everything above
            json.dump(_scan(tmp), fh, indent=1, sort_keys=True)


def _digest(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= 2 * _EDGE:
            h.update(fh.read())
        else:
            h.update(fh.read(_EDGE))
            fh.seek(size - _EDGE)
            h.update(fh.read(_EDGE))
    return h.hexdigest()


def _scan(root: str) -> dict:
    """{relative path: [size, sha256]} of every file under ``root`` but the manifest."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root)
            if rel != MANIFEST:
                size = os.path.getsize(full)
                out[rel] = [size, _digest(full, size)]
    return out


def verify_split(path: str) -> str | None:
    """None if the cache at ``path`` matches its manifest, else what is wrong (one phrase)."""
    try:
        with open(os.path.join(path, MANIFEST)) as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        return f"no {MANIFEST} (interrupted, or written by an older version)"
    except (OSError, ValueError) as err:
        return f"unreadable {MANIFEST} ({type(err).__name__})"
    for rel, (size, digest) in sorted(manifest.items()):
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            return f"{rel} is missing"
        actual = os.path.getsize(full)
        if actual != size:
            return f"{rel} has {actual} bytes, {size} were written"
        if _digest(full, actual) != digest:
            return f"{rel} does not match its checksum"
    return None


def ensure_split(path: str, build: Callable[[str], None]) -> str:
    """"hit" when a cache matching its manifest is at ``path``; otherwise ``build(path)`` and "built" (a damaged
    cache is moved aside first, with a warning)."""
    if os.path.isdir(path):
        problem = verify_split(path)
        if problem is None:
            return "hit"
        warnings.warn(f"feature cache {path} is damaged ({problem}); rebuilding it", stacklevel=2)
        discard(path)  # a concurrent run's fresh copy lost this way is rebuilt by load_split_cache's fallback
    build(path)
    return "built"


def load_split_cache(path: str, rebuild: Callable[[str], None]):
    """(examples, features, report line) of a split saved by :func:`save_split` (memory-mapped Arrow); one that
    cannot be read (damaged after it was verified) is rebuilt once with ``rebuild(path)``, with a warning."""
    try:
        return _read(path)
    except Exception as err:  # noqa: BLE001 -- Arrow, JSON and OS errors from a damaged folder
        first = str(err).splitlines()[0][:160] if str(err) else ""
        warnings.warn(f"feature cache {path} cannot be read ({type(err).__name__}: {first}); rebuilding it",
                      stacklevel=2)
        discard(path)
        rebuild(path)
        return _read(path)


def _read(path: str):
    import datasets

    examples = datasets.load_from_disk(os.path.join(path, "examples"))
    features = datasets.load_from_disk(os.path.join(path, "features"))
    with open(os.path.join(path, "report.txt")) as fh:
        report = fh.read().strip()
    return examples, features, report
