"""Exact resume: the RNG states a checkpoint carries, and finding the newest ``last.ckpt`` of earlier runs.

    checkpoint["qa_lightning_rng"] = collect_rng_states()      # on save
    set_rng_states(checkpoint["qa_lightning_rng"])              # just before the first resumed step
    find_last_checkpoint(["runs/lightning_logs"])               # newest last*.ckpt under these folders

The data module saves its position in the epoch (``SquadDataModule.state_dict``); with the RNG states restored, a
run killed mid-epoch and resumed with ``--ckpt_path last`` ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

__all__ = ["collect_rng_states", "set_rng_states", "find_last_checkpoint"]


def collect_rng_states() -> dict:
    """Global RNG states as tensors and plain types (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "gauss": float(gauss)},
            "python": {"version": version, "state": list(py_state), "gauss": py_gauss}}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("torch.cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    np_state = states["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


def find_last_checkpoint(roots: Iterable[str | Path]) -> Optional[str]:
    """Newest ``last*.ckpt`` under ``roots`` (missing folders are skipped), or None."""
    found = [p for root in map(Path, roots) if root.is_dir() for p in root.rglob("last*.ckpt")]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None
