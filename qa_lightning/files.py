"""Atomic writes: a file or folder is written beside its destination and renamed over it once complete.

    with atomic_path("runs/x/predictions.json") as tmp:       # a file: write tmp; fsynced, then renamed
        write(tmp)
    with atomic_path("runs/x/export", folder=True) as tmp:    # a folder: an existing one is replaced
        model.save_pretrained(tmp)

A reader, a crash or a SIGKILL never sees half a file or folder: the old one or the new one. Used for checkpoints
(``callbacks.AtomicCheckpointIO``), the feature cache, the export and the prediction files. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from typing import Iterator

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str, folder: bool = False, keep_existing: bool = False) -> Iterator[str]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block ends without an error
    (and is removed when it raises).

    Args:
        path: the destination file or folder (its parent folders are created).
        folder: the destination is a folder (else a file, fsynced before the rename).
        keep_existing: folders: when ``path`` exists by then (a concurrent writer of the same content won), keep it.
    """
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=parent) if folder else f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    if folder:  # mkdtemp makes it private (0700); the folder it becomes gets the usual permissions
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
    try:
        yield tmp
        if not folder:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        elif not _move_in(tmp, path) and not keep_existing:
            aside = f"{tmp}-old"
            os.replace(path, aside)  # rename, not delete, so the swap leaves no moment without a folder
            os.replace(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def _move_in(tmp: str, path: str) -> bool:
    """Rename the folder ``tmp`` to ``path`` if nothing is there; False when a folder is there (maybe put there
    concurrently)."""
    if os.path.isdir(path):
        return False
    try:
        os.replace(tmp, path)
    except OSError:
        if not os.path.isdir(path):
            raise
        return False
    return True
