"""Exact resume and checkpoint trust: RNG states, reading a checkpoint safely, finding the most advanced usable one.

    ckpt = read_checkpoint("last.ckpt")                         # dict, or UnusableCheckpoint(reason)
    found, skipped = find_last_checkpoint(["runs/lightning_logs"])   # most advanced loadable *.ckpt, and skips
    set_rng_states(checkpoint["qa_lightning_rng"])              # saved by collect_rng_states()

The package's only ``.ckpt`` reader: on the CPU, memory-mapped, ``weights_only=True`` (no code runs from the file).
"""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

from .errors import QAInputError

# Data settings a saved mid-epoch position depends on (the feature fingerprint covers file bytes and the tokenizer;
# these name the difference in the message). batch_size, seed and group_by_length fix the epoch's batch order.
POSITION_SETTINGS = ("model_name_or_path", "train_file", "dataset_name", "dataset_config_name", "max_length", "stride",
                     "pad_to_max_length", "max_train_samples", "batch_size", "seed", "group_by_length")


def collect_rng_states() -> dict:
    """Global RNG states as tensors and plain types (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "gauss": float(gauss)},
            "python": {"version": version, "state": list(py_state), "gauss": py_gauss}}


def gather_rng_states(states: dict) -> list[dict]:
    """Every DDP rank's RNG states in rank order (their dropout streams differ), or ``[states]`` in one process."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [states]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, states)
    return gathered


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("torch.cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    np_state = states["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


class UnusableCheckpoint(ValueError):
    """A file that is not a loadable checkpoint of this project; the message says what is wrong and what to do."""


_FIT_CKPT = "pass a checkpoint written by `python -m qa_lightning fit` (e.g. checkpoints/last.ckpt of a run)"


def _load(path: str) -> object:
    size = os.path.getsize(path)
    if size == 0:
        raise UnusableCheckpoint(f"the file is empty (0 bytes; an interrupted copy or write?); {_FIT_CKPT}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory sits at the very end
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head == b"PK\x03\x04":
            raise UnusableCheckpoint(f"truncated: the zip archive torch.save wrote has no end ({size} bytes; an "
                                     f"interrupted copy or write?); use an intact copy or {_FIT_CKPT}")
        raise UnusableCheckpoint(f"not a PyTorch checkpoint (no torch.save zip archive in its {size} bytes); "
                                 f"{_FIT_CKPT}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 -- torch raises many kinds for damaged archives
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UnusableCheckpoint(f"cannot be read safely (torch.load weights_only: {first}); {_FIT_CKPT}") from None


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint as a dict (tensors memory-mapped on the CPU), or :class:`UnusableCheckpoint` saying why not."""
    path = str(path)
    if os.path.isdir(path):
        raise UnusableCheckpoint(f"is a directory, expected a .ckpt file; {_FIT_CKPT}")
    if not os.path.isfile(path):
        raise UnusableCheckpoint("no such checkpoint file (or use 'last' to resume the newest run)")
    ckpt = _load(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UnusableCheckpoint("holds model weights only, not a Lightning checkpoint (no 'state_dict', "
                                 f"'pytorch-lightning_version', optimizer or loop state); {_FIT_CKPT}")
    if "pytorch-lightning_version" not in ckpt:
        raise UnusableCheckpoint(f"not a Lightning checkpoint (no 'pytorch-lightning_version'); {_FIT_CKPT}")
    hparams = ckpt.get("hyper_parameters") or {}
    keys = list(ckpt["state_dict"])
    if "model_name_or_path" not in hparams or not keys or not all(k.startswith("model.") for k in keys):
        name = ckpt.get("hparams_name") or "no qa_lightning hyper-parameters"
        raise UnusableCheckpoint(f"a checkpoint of another LightningModule ({name}; no QAModule "
                                 f"'model_name_or_path' hyper-parameter or 'model.*' weights); {_FIT_CKPT}")
    return ckpt


def training_state(ckpt: dict) -> tuple[int, int]:
    """(global step, epoch) a checkpoint was written at: what ``--ckpt_path last`` ranks by."""
    return int(ckpt.get("global_step") or 0), int(ckpt.get("epoch") or 0)


def weights_mismatch(expected: dict, saved: dict) -> Optional[str]:
    """None when ``saved`` (name -> tensor) has the names and shapes of ``expected`` (a model's ``state_dict()``);
    else one phrase: the first weight of another shape, or the missing and unexpected names (no name assumed)."""
    mine, theirs = ({k: tuple(v.shape) for k, v in state.items()} for state in (expected, saved))
    bad = [k for k in mine if k in theirs and mine[k] != theirs[k]]
    if bad:
        return f"{bad[0]} is {theirs[bad[0]]} there, {mine[bad[0]]} here"
    missing, unexpected = [k for k in mine if k not in theirs], [k for k in theirs if k not in mine]
    parts = [f"{len(names)} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
             for names, what in ((missing, "weights missing there"), (unexpected, "unexpected weights")) if names]
    return "; ".join(parts) or None


def find_last_checkpoint(roots: Iterable[str | Path]) -> tuple[Optional[str], list[tuple[str, str]]]:
    """The loadable ``*.ckpt`` under ``roots`` with the most advanced training state (global step, then epoch;
    ``last.ckpt`` first among equals) and the files that were skipped as unloadable, as ``(path, reason)``.

    File times play no part: a copy (``cp -r``, rsync without ``-t``) gives every file a new one."""
    found = sorted({p.resolve() for root in map(Path, roots) if root.is_dir() for p in root.rglob("*.ckpt")
                    if p.is_file()})
    ranked, skipped = [], []
    for path in found:
        try:
            state = training_state(read_checkpoint(path))
        except UnusableCheckpoint as why:
            skipped.append((str(path), str(why).split(";")[0]))
            continue
        ranked.append((*state, path.name == "last.ckpt", str(path)))
    if not ranked:
        return None, skipped
    return max(ranked)[-1], skipped


def position_identity(features: str, settings: dict) -> dict:
    """What a saved position in an epoch is valid for: the train features' cache name and the batch order."""
    picked = {k: settings.get(k) for k in POSITION_SETTINGS}
    return {"features": features, "order": [picked["batch_size"], picked["seed"], picked["group_by_length"]],
            "settings": picked}


def check_same_position(saved: dict, current: dict, ckpt_path: str = "the checkpoint") -> Optional[str]:
    """Refuse to apply a mid-epoch position to other training batches; returns a note for an epoch-boundary change.
    ``saved``/``current``: ``position_identity`` dicts (the saved one with the position's ``mid_epoch``, ``epoch``
    and ``batches_done``)."""
    same = saved.get("features") == current.get("features") and saved.get("order") == current.get("order")
    if same or not saved.get("features"):
        return None
    old, new = saved.get("settings", {}), current.get("settings", {})
    diff = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))
    diff = diff or "the contents of the training file or of the tokenizer"
    if saved.get("mid_epoch"):
        raise QAInputError(f"--ckpt_path {ckpt_path}: stopped mid-epoch (epoch {saved.get('epoch')}, after "
                           f"{saved.get('batches_done')} batches) with other training batches than this run's "
                           f"({diff}); the saved position would skip the wrong examples: resume with the "
                           "checkpoint's data settings, or start a new run")
    return f"resuming at an epoch boundary with changed training data ({diff}): the next epoch uses the new features"
