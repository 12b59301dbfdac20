"""Export a trained QAModule as a Hugging Face model directory that ``transformers.pipeline`` loads offline.

    python -m qa_lightning.export CKPT OUT_DIR          # on demand, from any checkpoint of ours
    from qa_lightning.export import export_checkpoint   # same, from Python

The directory holds ``save_pretrained`` of the encoder-with-QA-head and of its tokenizer, plus ``qa_lightning.json``
(the decoding settings and the metrics of the checkpoint, when known), so
``pipeline("question-answering", model=OUT_DIR)`` works with nothing else. At the end of ``fit`` the CLI's
``ExportCallback`` (``callbacks.py``) does this for the best checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Optional

import torch

from .errors import QAInputError
from .hf import load_tokenizer

__all__ = ["save_hf_directory", "export_checkpoint", "main"]


def save_hf_directory(model, tokenizer, out_dir: str, extra: Optional[dict] = None) -> str:
    """``save_pretrained`` model and tokenizer into ``out_dir`` atomically (written aside, then renamed)."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            with open(os.path.join(tmp, "qa_lightning.json"), "w") as fh:
                json.dump(extra, fh, indent=2)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_checkpoint(ckpt_path: str, out_dir: str, model_name_or_path: Optional[str] = None) -> str:
    """Rebuild the model described by a QAModule checkpoint, load its weights, save it as a HF directory.

    Args:
        ckpt_path: a ``.ckpt`` written by ``fit``.
        out_dir: directory to (re)create.
        model_name_or_path: where to read the architecture/tokenizer if not the checkpoint's own setting.
    """
    from transformers import AutoModelForQuestionAnswering

    from .hf import load_config

    if not os.path.isfile(ckpt_path):
        raise QAInputError(f"{ckpt_path}: no such checkpoint file")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or not a checkpoint
        raise QAInputError(f"{ckpt_path}: not a readable checkpoint ({type(err).__name__})") from None
    hp = ckpt.get("hyper_parameters", {})
    name = model_name_or_path or hp.get("model_name_or_path")
    if not name:
        raise QAInputError(f"{ckpt_path}: no model_name_or_path in the checkpoint; pass one")
    model = AutoModelForQuestionAnswering.from_config(load_config(name))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied or buffer-only keys may be absent; real weights must all be there.
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise QAInputError(f"{ckpt_path}: weights do not fit '{name}' (missing {missing[:3]}, unexpected {unexpected[:3]})")
    extra = {"source_checkpoint": os.path.abspath(ckpt_path), "epoch": ckpt.get("epoch"),
             "global_step": ckpt.get("global_step"),
             "n_best": hp.get("n_best", 20), "max_answer_length": hp.get("max_answer_length", 30)}
    return save_hf_directory(model, load_tokenizer(name), out_dir, extra)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qa_lightning.export", description=__doc__.splitlines()[0])
    parser.add_argument("ckpt_path", help="checkpoint written by `python -m qa_lightning fit`")
    parser.add_argument("out_dir", help="directory to write (replaced if it exists)")
    parser.add_argument("--model_name_or_path", default=None, help="architecture/tokenizer source override")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.ckpt_path, args.out_dir, args.model_name_or_path)
    except QAInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"exported to {out}")


if __name__ == "__main__":
    main()
