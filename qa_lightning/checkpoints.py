"""The CLI's side of checkpoints and run folders: where a run writes, which checkpoint it loads, which settings win.

    path, ckpt = resolve_checkpoint(cfg, "fit", run_folders(cfg))      # checked; 'last' = most advanced loadable
    taken = model_settings(ckpt, cfg.model, given={"max_answer_length"})   # checkpoint's values the user did not set

A ``--model.*`` option on the command line wins over the checkpoint's hyper-parameters, which win over config files
and defaults; data settings always come from the config.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from .errors import QAInputError
from .resume import UnusableCheckpoint, find_last_checkpoint, read_checkpoint, training_state, weights_mismatch

_VERSIONED_LOGGERS = ("CSVLogger", "TensorBoardLogger")


def _logger_args(cfg) -> Optional[Any]:
    logger = cfg.trainer.get("logger")
    return logger.get("init_args") if hasattr(logger, "get") else None


def follow_root_dir(cfg) -> None:
    """The logger's ``save_dir`` left at its default "." follows ``--trainer.default_root_dir`` (as Lightning's own
    default logger does), so logs, checkpoints, predictions, export/ and curves all land under the root dir."""
    init, root = _logger_args(cfg), cfg.trainer.get("default_root_dir")
    if init is not None and init.get("save_dir") in (None, ".", "./") and root not in (None, "", "."):
        init.save_dir = str(root)


def check_logger_installed(cfg) -> None:
    """``--trainer.logger TensorBoardLogger`` without TensorBoard: one line saying how to install it (Lightning's
    own message comes wrapped in a long jsonargparse traceback)."""
    loggers = cfg.trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        name = str(logger.get("class_path", "")) if hasattr(logger, "get") else ""
        installed = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
        if name.endswith("TensorBoardLogger") and not installed:
            raise QAInputError("--trainer.logger TensorBoardLogger: TensorBoard is not installed; install it with "
                               "pip install 'qa_lightning[tensorboard]' (or pip install tensorboard)")


def launch_rank_zero() -> bool:
    """True in the process that will be global rank 0 (or a single process); read from the launchers' variables."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return False
    return True


def run_folder(trainer, *parts: str) -> str:
    """This run's folder (the logger's ``version_N``, else the root dir) joined with the non-empty ``parts``.

    Collective under DDP (``trainer.log_dir`` broadcasts rank 0's): call it on every rank, before any branch that
    only rank 0 takes.
    """
    return os.path.join(trainer.log_dir or trainer.default_root_dir, *(p for p in parts if p))


def _versions_root(cfg) -> Optional[Path]:
    """``<save_dir>/<name>`` of a CSV/TensorBoard logger without a set ``version``; None for any other logger."""
    logger, init = cfg.trainer.get("logger"), _logger_args(cfg)
    if init is None or init.get("version") is not None:
        return None
    if not str(logger.get("class_path", "")).endswith(_VERSIONED_LOGGERS):
        return None
    return Path(init.get("save_dir") or ".") / (init.get("name") if init.get("name") is not None else "lightning_logs")


def allocate_version(cfg) -> Optional[Path]:
    """Create ``<save_dir>/<name>/version_N`` with ``os.mkdir`` (atomic: two runs started together get two folders)
    and pin the logger to it. Only rank 0 allocates; the other ranks use rank 0's folder (Lightning broadcasts
    ``trainer.log_dir`` and the checkpoint dir). No-op when the user set ``version`` or another logger."""
    root = _versions_root(cfg)
    if root is None or not launch_rank_zero():
        return None
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[8:]) for p in root.iterdir() if p.name.startswith("version_") and p.name[8:].isdigit()]
    n = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{n}").mkdir()
            break
        except FileExistsError:  # a concurrent run took it: the next one
            n += 1
    _logger_args(cfg).version = n
    folder = root / f"version_{n}"
    atexit.register(_remove_if_empty, folder)  # a run that fails before writing anything leaves no folder
    return folder


def continued_folder(cfg, ckpt_path: Optional[str]) -> Optional[Path]:
    """``fit`` from a checkpoint in ``<save_dir>/<name>/version_N/checkpoints/`` of this run's logger continues that
    run: the logger is pinned to version_N (every rank decides alike), so checkpoints, ``metrics.csv``, the curves
    and the export stay one run. Returns the folder, or None (another place: a new version folder)."""
    root = _versions_root(cfg)
    if ckpt_path is None or root is None:
        return None
    ckpt = Path(ckpt_path).resolve()
    folder = ckpt.parent.parent
    in_run = ckpt.parent.name == "checkpoints" and folder.parent == root.resolve()
    if not in_run or not re.fullmatch(r"version_\d+", folder.name):
        return None
    _logger_args(cfg).version = int(folder.name[len("version_"):])
    return folder


def reroot_record(state: dict, dirpath: str, copy: Optional[Callable[[str, str], None]] = None) -> list[str]:
    """Point a ModelCheckpoint record (its ``state_dict``) saved under another ``dirpath`` at this run's ``dirpath``:
    each ``<old dirpath>/NAME`` becomes ``<dirpath>/NAME`` (Lightning restores the record only for an unchanged
    ``dirpath``, so a copied or moved run folder would lose its best checkpoint). A file found only at the old place
    is carried over with ``copy(old, new)`` (rank 0; other ranks pass None). Returns the lines to print."""
    old = str(state["dirpath"]).rstrip(os.sep)
    notes: list[str] = []

    def move(path):
        if not path or not str(path).startswith(old + os.sep):
            return path
        new = os.path.join(dirpath, str(path)[len(old) + 1:])
        if copy is not None and not os.path.isfile(new):
            if os.path.isfile(path):
                copy(str(path), new)
                notes.append(f"carried the checkpoint {path} of the resumed run over to {new}")
            else:
                notes.append(f"warning: the resumed run's best-checkpoint record names {path}, which no longer "
                             "exists (nor in this run's folder): the best model of the earlier epochs is lost")
        return new

    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = move(state[key])
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    state["dirpath"] = dirpath
    return notes


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when empty
    except OSError:
        pass


def run_folders(cfg) -> list[Path]:
    """Where earlier runs of this config keep checkpoints: each run logs to a new version folder, so Lightning's own
    "last" (which looks in the *new* run's folder) would silently start from scratch."""
    roots = []
    if cfg.get("checkpoint") and cfg.checkpoint.get("dirpath"):
        roots.append(Path(cfg.checkpoint.dirpath))
    init = _logger_args(cfg)
    if init:
        save_dir = init.get("save_dir") or cfg.trainer.get("default_root_dir") or "."
        roots.append(Path(save_dir) / (init.get("name") or "lightning_logs"))
    # Lightning's own places under the root dir -- not the whole root, which may be the repository with a venv in it
    base = Path(cfg.trainer.get("default_root_dir") or ".")
    return roots + [base / "lightning_logs", base / "checkpoints"]


def resolve_checkpoint(cfg, subcommand: str, folders: Iterable[Path]) -> tuple[Optional[str], Optional[dict]]:
    """Check ``cfg.ckpt_path`` (a file, or 'last': the loadable checkpoint of earlier runs with the highest global
    step, then epoch; ``last.ckpt`` among equals) and read it.

    Sets ``cfg.ckpt_path`` to the file found; returns ``(path, checkpoint dict)``, or ``(None, None)`` when there is
    nothing to load. Raises :class:`QAInputError` for a file that is not a checkpoint of this project."""
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, "best", "hpc", "registry") or str(ckpt).startswith("registry:"):
        return None, None
    if ckpt != "last":
        try:
            return str(ckpt), read_checkpoint(ckpt)
        except UnusableCheckpoint as why:
            raise QAInputError(f"--ckpt_path {ckpt}: {why}") from None
    found, skipped = find_last_checkpoint(folders)
    for path, why in skipped:
        print(f"--ckpt_path last: skipped {path}: {why}", file=sys.stderr)
    if found is None:
        if subcommand != "fit":
            raise QAInputError("--ckpt_path last: no loadable checkpoint under the run directories "
                               f"({', '.join(map(str, folders))}); pass a path")
        cfg.ckpt_path = None  # nothing to resume: a fresh start, said so
        print("--ckpt_path last: no checkpoint of an earlier run found; starting from scratch", file=sys.stderr)
        return None, None
    ckpt = read_checkpoint(found)
    step, epoch = training_state(ckpt)
    taken = f"{found} (global step {step}, epoch {epoch}: the most advanced training state under the run folders)"
    print(f"Resuming from {taken}" if subcommand == "fit" else f"--ckpt_path last: using {taken}", file=sys.stderr)
    cfg.ckpt_path = found
    return found, ckpt


def given_model_keys(args: Iterable[str]) -> set[str] | None:
    """``--model.X`` options on the command line (None: ``--model`` as a whole, i.e. every key)."""
    keys: set[str] = set()
    for arg in args:
        if arg == "--model" or arg.startswith("--model="):
            return None
        if arg.startswith("--model."):
            keys.add(arg[len("--model."):].split("=", 1)[0].removeprefix("init_args."))
    return keys


def model_settings(ckpt: dict, model_cfg, given: set[str] | None) -> dict:
    """The checkpoint's model hyper-parameters that replace configured values (command-line ones always win)."""
    if given is None:
        return {}
    hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    taken = {k: v for k, v in hparams.items() if k not in given and k in model_cfg and model_cfg.get(k) != v}
    name = taken.get("model_name_or_path")
    configured = model_cfg.get("model_name_or_path")
    if name is not None and not os.path.exists(str(name)) and configured and os.path.isdir(str(configured)):
        del taken["model_name_or_path"]  # the run's model folder moved: the configured folder stands in
        print(f"the checkpoint's model folder {name} does not exist; using {configured}", file=sys.stderr)
    return taken


def check_weights_fit(model, ckpt: dict, path: str) -> None:
    """Refuse a checkpoint whose weights have other names or shapes than the model built for this run."""
    detail = weights_mismatch(model.state_dict(), ckpt["state_dict"])
    if detail is not None:
        trained = (ckpt.get("hyper_parameters") or {}).get("model_name_or_path")
        raise QAInputError(f"--ckpt_path {path}: its weights do not fit this run's model (another architecture: "
                           f"{detail}); it was trained with --model.model_name_or_path {trained}: pass that (or a "
                           "checkpoint of this model)")
