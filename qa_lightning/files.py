"""Atomic writes and deletes (checkpoints, feature cache, export, prediction files): a reader, a crash or a SIGKILL
sees the old file or folder or the new one, never half of one.

    with atomic_path("runs/x/export", folder=True) as tmp:   # or a file: atomic_path("runs/x/predictions.json")
        model.save_pretrained(tmp)                           # written beside, then renamed over
    write_json("runs/x/eval_results.json", {"f1": 88.5})
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str, folder: bool = False) -> Iterator[str]:
    """Yield a temporary sibling of ``path`` (a file, fsynced before the rename, or a ``folder``) to write; it
    replaces ``path`` when the block ends without an error and is removed when it raises."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = (tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=os.path.dirname(path)) if folder
           else f"{path}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if folder:
            discard(path)  # a folder is not renamed over a full one
        else:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.replace(tmp, path)
        except OSError:  # a folder appeared there meanwhile: a concurrent writer's, of the same content
            if not (folder and os.path.isdir(path)):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def discard(path: str) -> None:
    """Delete a folder, renamed aside first (atomic: no reader sees it half deleted); nothing if it is gone."""
    aside = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}-old-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, aside)
    except OSError:  # not there, or a concurrent run moved it
        return
    shutil.rmtree(aside, ignore_errors=True)


def write_json(path: str, obj) -> None:
    """Write JSON (indented, UTF-8) atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
