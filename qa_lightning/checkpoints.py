"""The CLI's side of checkpoints and run folders: where a run writes, which checkpoint it loads, which settings win.

    follow_root_dir(cfg)                        # the default logger writes under --trainer.default_root_dir
    allocate_version(cfg)                       # lightning_logs/version_N created atomically (concurrent runs)
    path, ckpt = resolve_checkpoint(cfg, "fit", run_folders(cfg))      # checked; 'last' = newest loadable
    taken = model_settings(ckpt, cfg.model, given={"max_answer_length"})   # checkpoint's values the user did not set
    check_weights_fit(model, ckpt, path)       # another architecture: one line, not a size-mismatch traceback

The policy for settings that differ from a checkpoint's (README "Multi-GPU, multi-node, resume"): every
``--model.*`` option given on the command line wins; the checkpoint's model hyper-parameters replace the values of
config files and defaults (printed when they differ); a checkpoint's model folder that no longer exists gives way to
the configured one. Data settings always come from the config; a mid-epoch resume on other training batches is
refused (``resume.check_same_position``).
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from .errors import QAInputError
from .resume import UnusableCheckpoint, find_last_checkpoint, read_checkpoint, weights_mismatch

__all__ = ["follow_root_dir", "allocate_version", "run_folders", "resolve_checkpoint", "given_model_keys",
           "model_settings", "check_weights_fit"]

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


def _launch_rank_zero() -> bool:
    """True in the process that will be global rank 0 (or a single process); read from the launchers' variables."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return False
    return True


def allocate_version(cfg) -> Optional[Path]:
    """Create ``<save_dir>/<name>/version_N`` with ``os.mkdir`` (atomic: two runs started together get two folders)
    and pin the logger to it. Only rank 0 allocates; the other ranks use rank 0's folder (Lightning broadcasts
    ``trainer.log_dir`` and the checkpoint dir). No-op when the user set ``version`` or another logger."""
    logger, init = cfg.trainer.get("logger"), _logger_args(cfg)
    if init is None or init.get("version") is not None or not _launch_rank_zero():
        return None
    if not str(logger.get("class_path", "")).endswith(_VERSIONED_LOGGERS):
        return None
    root = Path(init.get("save_dir") or ".") / (init.get("name") if init.get("name") is not None else "lightning_logs")
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[8:]) for p in root.iterdir() if p.name.startswith("version_") and p.name[8:].isdigit()]
    n = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{n}").mkdir()
            break
        except FileExistsError:  # a concurrent run took it: the next one
            n += 1
    init.version = n
    folder = root / f"version_{n}"
    atexit.register(_remove_if_empty, folder)  # a run that fails before writing anything leaves no folder
    return folder


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
    """Check ``cfg.ckpt_path`` (a file, or 'last': the newest loadable checkpoint of earlier runs) and read it.

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
    print(f"Resuming from {found}" if subcommand == "fit" else f"--ckpt_path last: using {found}", file=sys.stderr)
    cfg.ckpt_path = found
    return found, read_checkpoint(found)


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
