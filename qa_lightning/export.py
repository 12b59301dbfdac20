"""Export a trained QAModule as a Hugging Face model folder: weights, tokenizer, settings, model card.

    python -m qa_lightning.export CKPT OUT_DIR          # on demand, from any checkpoint of ours
    from qa_lightning.export import export_checkpoint   # same, from Python

The folder holds ``save_pretrained`` of the encoder-with-QA-head and of its tokenizer, ``qa_lightning.json`` (the
windowing and decoding settings the model was trained and evaluated with, its latest metrics and how it was
trained) and ``README.md``, a model card the Hugging Face Hub renders (``card.py``). ``qa_lightning ask`` and
``qa_lightning.infer.QAModel`` read the settings from ``qa_lightning.json``; plain
``AutoModelForQuestionAnswering.from_pretrained(OUT_DIR)`` loads the model. At the end of ``fit`` the CLI's
``ExportCallback`` (``callbacks.py``) exports the best checkpoint. No Lightning is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Optional

import torch

from .errors import QAInputError
from .hf import build_model, load_tokenizer

__all__ = ["SETTINGS_FILE", "DEFAULT_SETTINGS", "inference_settings", "run_metadata", "framework_versions",
           "load_checkpoint",
           "model_from_checkpoint", "save_hf_directory", "export_checkpoint", "main"]

SETTINGS_FILE = "qa_lightning.json"
RUN_KEY = "qa_lightning_run"  # what ExportCallback stores in every checkpoint: metrics, sizes, time, hardware

# The data module's and the module's defaults: what an export without recorded settings was trained with.
DEFAULT_SETTINGS = {"max_length": 384, "stride": 128, "n_best": 20, "max_answer_length": 30,
                    "version_2_with_negative": False, "null_score_diff_threshold": 0.0, "batch_size": 32,
                    "pad_to_multiple_of": 8, "pad_to_max_length": False, "sort_by_length": True}


def inference_settings(module_hp: dict, data_hp: dict) -> dict:
    """Windowing and decoding settings from the module's and the data module's hyper-parameters."""
    out = dict(DEFAULT_SETTINGS)
    for key in ("n_best", "max_answer_length", "null_score_diff_threshold"):
        if module_hp.get(key) is not None:
            out[key] = module_hp[key]
    for key in ("max_length", "stride", "pad_to_multiple_of", "pad_to_max_length"):
        if data_hp.get(key) is not None:
            out[key] = data_hp[key]
    if data_hp:
        out["version_2_with_negative"] = bool(data_hp.get("version_2_with_negative")
                                              or data_hp.get("dataset_name") == "squad_v2")
        out["batch_size"] = data_hp.get("eval_batch_size") or 4 * int(data_hp.get("batch_size") or 8)
        out["sort_by_length"] = bool(data_hp.get("sort_eval_by_length", True))
    return out


def _plain(obj: Any) -> Any:
    """JSON-safe copy of hyper-parameters (paths, namespaces and the like become strings)."""
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def framework_versions() -> dict:
    """Installed versions of the libraries a user needs to reproduce or load the model (no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("qa_lightning", "torch", "transformers", "tokenizers", "lightning", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def run_metadata(module_hp: dict, data_hp: dict, run: Optional[dict] = None, **extra) -> dict:
    """Everything ``qa_lightning.json`` records: the settings (top level), hyper-parameters, metrics, run info."""
    # LightningCLI's private keys (_instantiator, _class_path) are not hyper-parameters
    module_hp, data_hp = ({k: v for k, v in _plain(dict(hp or {})).items() if not k.startswith("_")}
                          for hp in (module_hp, data_hp))
    meta = {**inference_settings(module_hp, data_hp), "base_model": module_hp.get("model_name_or_path"),
            "hyper_parameters": module_hp, "data": data_hp, "versions": framework_versions(), **_plain(run or {})}
    meta.update({k: _plain(v) for k, v in extra.items() if v is not None})
    return meta


def load_checkpoint(ckpt_path: str) -> dict:
    """``torch.load`` a checkpoint on the CPU; a missing or unreadable file is a :class:`QAInputError`."""
    if not os.path.isfile(ckpt_path):
        raise QAInputError(f"{ckpt_path}: no such checkpoint file")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or not a checkpoint
        raise QAInputError(f"{ckpt_path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise QAInputError(f"{ckpt_path}: not a Lightning checkpoint of qa_lightning (no state_dict)")
    return ckpt


def model_from_checkpoint(ckpt: dict, ckpt_path: str, model_name_or_path: Optional[str] = None):
    """Rebuild the QA model a checkpoint describes and load its weights; returns ``(model, tokenizer, name)``."""
    hp = ckpt.get("hyper_parameters", {})
    name = model_name_or_path or hp.get("model_name_or_path")
    if not name:
        raise QAInputError(f"{ckpt_path}: no model_name_or_path in the checkpoint; pass one")
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if not any(k.startswith("qa_outputs.") for k in state):
        raise QAInputError(f"{ckpt_path}: not a question-answering checkpoint (no qa_outputs weights); "
                           "pass a checkpoint written by `python -m qa_lightning fit`")
    model = build_model(name, pretrained=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied or buffer-only keys may be absent; real weights must all be there.
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise QAInputError(f"{ckpt_path}: weights do not fit '{name}' (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), load_tokenizer(name), name


def save_hf_directory(model, tokenizer, out_dir: str, extra: Optional[dict] = None) -> str:
    """``save_pretrained`` model and tokenizer into ``out_dir`` atomically (written aside, then renamed), with
    ``extra`` as ``qa_lightning.json`` and the model card rendered from it as ``README.md``."""
    from .card import render_card

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            with open(os.path.join(tmp, SETTINGS_FILE), "w") as fh:
                json.dump(extra, fh, indent=2, ensure_ascii=False)
            with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as fh:
                fh.write(render_card(extra, os.path.basename(os.path.abspath(out_dir))))
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_checkpoint(ckpt_path: str, out_dir: str, model_name_or_path: Optional[str] = None,
                      run: Optional[dict] = None) -> str:
    """Rebuild the model described by a QAModule checkpoint, load its weights, save it as a HF directory.

    Args:
        ckpt_path: a ``.ckpt`` written by ``fit``.
        out_dir: directory to (re)create.
        model_name_or_path: where to read the architecture/tokenizer if not the checkpoint's own setting.
        run: facts about the run known only at its end (e.g. the total training time), merged over the ones the
            checkpoint recorded.
    """
    ckpt = load_checkpoint(ckpt_path)
    model, tokenizer, _ = model_from_checkpoint(ckpt, ckpt_path, model_name_or_path)
    meta = run_metadata(ckpt.get("hyper_parameters", {}), ckpt.get("datamodule_hyper_parameters", {}),
                        {**ckpt.get(RUN_KEY, {}), **(run or {})}, source_checkpoint=os.path.abspath(ckpt_path),
                        epoch=ckpt.get("epoch"), global_step=ckpt.get("global_step"))
    return save_hf_directory(model, tokenizer, out_dir, meta)


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
