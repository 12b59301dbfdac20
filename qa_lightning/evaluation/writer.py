"""The result files of an evaluation, written atomically into a run folder.

    write_outputs(run_dir, result, {"epoch": 0, "step": 100, "split": "validation"})
    # -> ["predictions.json", "nbest_predictions.json", "eval_results.json"] (+ "null_odds.json" for SQuAD v2)
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional

from ..files import write_json
from .postprocess import EvalResult

__all__ = ["write_outputs"]

log = logging.getLogger(__name__)


def write_outputs(out_dir: str, result: EvalResult, info: Optional[dict] = None, say: bool = False) -> list[str]:
    """Write the prediction files and, when scored, ``eval_results.json`` (metrics + ``info``); returns the names.

    One line "SPLIT: wrote NAMES to DIR" goes to the log, and with ``say`` to stderr too.
    """
    files = {"predictions.json": result.predictions, "nbest_predictions.json": result.nbest}
    if result.null_odds is not None:
        files["null_odds.json"] = result.null_odds
    if result.metrics:
        files["eval_results.json"] = {**result.metrics, **(info or {}), "examples": result.examples}
    for name, obj in files.items():
        write_json(os.path.join(out_dir, name), obj)
    line = f"{(info or {}).get('split', 'evaluation')}: wrote {', '.join(files)} to {out_dir}"
    log.info(line)
    if say:
        print(line, file=sys.stderr)
    return list(files)
