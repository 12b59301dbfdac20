"""The data module's options: checked before anything is loaded, and the evaluation settings derived from them."""

from __future__ import annotations

import os
from typing import Mapping

from ..errors import QAInputError
from .buckets import parse_bucket_spec
from .features import check_window_args


def check_options(max_length: int, stride: int, length_buckets, batch_size: int, files: dict) -> None:
    """One-line errors for impossible options and missing files (``files``: option name -> path or None)."""
    try:
        check_window_args(max_length, stride)
    except ValueError as err:
        raise QAInputError(f"--data.max_length/--data.stride: {err}") from None
    try:
        parse_bucket_spec(length_buckets, max_length)
    except ValueError as err:
        raise QAInputError(f"--data.length_buckets: {err}") from None
    if batch_size < 1:
        raise QAInputError(f"--data.batch_size must be >= 1, got {batch_size}")
    for name, path in files.items():
        if path is not None and not os.path.isfile(path):
            what = "is a directory, expected a data file" if os.path.isdir(path) else "no such file"
            raise QAInputError(f"--data.{name}: {path}: {what}")


def evaluation_settings(hp: Mapping) -> dict:
    """How a data module with hyper-parameters ``hp`` evaluates (asked by ``SquadDataModule`` and ``export``):
    ``batch_size``, else 4x the training batch (no gradients kept); ``version_2_with_negative``, also for squad_v2."""
    return {"batch_size": int(hp["eval_batch_size"] or 4 * int(hp["batch_size"])),
            "version_2_with_negative": bool(hp["version_2_with_negative"] or hp["dataset_name"] == "squad_v2")}
