"""Export a trained QAModule as a Hugging Face model folder: weights, tokenizer, settings, model card.
Besides ``save_pretrained`` of model and tokenizer, the folder holds ``qa_lightning.json`` (the windowing and
decoding settings the model was evaluated with, its latest metrics, how it was trained), which ``ask`` and
``QAModel`` read, and ``README.md``, the model card (``card.py``).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from typing import Any, Optional

from .data.options import evaluation_settings
from .errors import OneLineParser, QAInputError
from .files import atomic_path
from .hf import build_model, load_tokenizer
from .resume import UnusableCheckpoint, read_checkpoint, weights_mismatch

SETTINGS_FILE = "qa_lightning.json"
RUN_KEY = "qa_lightning_run"  # what ExportCallback stores in every checkpoint: metrics, sizes, time, hardware

# What inference (QAModel, ask) needs to window and decode as evaluation did.
SETTINGS = ("max_length", "stride", "n_best", "max_answer_length", "version_2_with_negative",
            "null_score_diff_threshold", "batch_size", "pad_to_multiple_of", "pad_to_max_length")
# The hyper-parameters (of the module and the data module) they come from.
_HPARAMS = (*SETTINGS, "eval_batch_size", "dataset_name")


def inference_settings(module_hp: dict, data_hp: dict) -> dict:
    """The :data:`SETTINGS` a model was trained and evaluated with, from the module's and the data module's
    hyper-parameters; one not recorded takes its constructor default (``inspect``: imports Lightning, only then)."""
    hp = {**module_hp, **data_hp}
    if any(k not in hp for k in _HPARAMS):
        from .data.datamodule import SquadDataModule
        from .module import QAModule

        hp = {**{k: p.default for cls in (QAModule, SquadDataModule)
                 for k, p in inspect.signature(cls.__init__).parameters.items()}, **hp}
    return {**{k: hp[k] for k in SETTINGS if k in hp}, **evaluation_settings(hp)}


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


def model_from_checkpoint(ckpt_path: str, model_name_or_path: Optional[str] = None):
    """Read a QAModule checkpoint safely, build the QA model its settings describe and load its weights into it;
    returns ``(model, tokenizer, checkpoint)``. Any problem is one :class:`QAInputError` naming the file."""
    try:
        ckpt = read_checkpoint(ckpt_path)
    except UnusableCheckpoint as why:
        raise QAInputError(f"{ckpt_path}: {why}") from None
    hp = ckpt["hyper_parameters"]
    name = model_name_or_path or hp["model_name_or_path"]
    model = build_model(name, pretrained=False, **{k: hp[k] for k in ("attn_implementation", "dropout") if k in hp})
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items()}  # read_checkpoint: all are model.*
    problem = weights_mismatch(model.state_dict(), state)
    if problem:
        raise QAInputError(f"{ckpt_path}: its weights do not fit the model '{name}' built from its settings "
                           f"({problem}); pass a checkpoint written by `python -m qa_lightning fit`")
    model.load_state_dict(state)
    return model.eval(), load_tokenizer(name), ckpt


def save_hf_directory(model, tokenizer, out_dir: str, extra: Optional[dict] = None) -> str:
    """``save_pretrained`` model and tokenizer into ``out_dir`` atomically (written aside, then renamed), with
    ``extra`` as ``qa_lightning.json`` and the model card rendered from it as ``README.md``."""
    from .card import render_card

    with atomic_path(out_dir, folder=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            with open(os.path.join(tmp, SETTINGS_FILE), "w") as fh:
                json.dump(extra, fh, indent=2, ensure_ascii=False)
            with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as fh:
                fh.write(render_card(extra, os.path.basename(os.path.abspath(out_dir))))
    return out_dir


def export_checkpoint(ckpt_path: str, out_dir: str, model_name_or_path: Optional[str] = None,
                      run: Optional[dict] = None) -> str:
    """Rebuild the model a ``fit`` checkpoint describes (architecture/tokenizer from ``model_name_or_path`` if
    given), load its weights, save it as a HF directory; ``run``: facts known only at the run's end (e.g. the
    total training time), merged over the ones the checkpoint recorded."""
    model, tokenizer, ckpt = model_from_checkpoint(ckpt_path, model_name_or_path)
    meta = run_metadata(ckpt.get("hyper_parameters", {}), ckpt.get("datamodule_hyper_parameters", {}),
                        {**ckpt.get(RUN_KEY, {}), **(run or {})}, source_checkpoint=os.path.abspath(ckpt_path),
                        epoch=ckpt.get("epoch"), global_step=ckpt.get("global_step"))
    return save_hf_directory(model, tokenizer, out_dir, meta)


def run(argv: list[str]) -> None:
    """``python -m qa_lightning export CKPT OUT_DIR``; raises :class:`QAInputError` for user mistakes."""
    parser = OneLineParser(prog="python -m qa_lightning export", description=__doc__.splitlines()[0])
    parser.add_argument("ckpt_path", help="checkpoint written by `python -m qa_lightning fit`")
    parser.add_argument("out_dir", help="directory to write (replaced if it exists)")
    parser.add_argument("--model_name_or_path", default=None, help="architecture/tokenizer source override")
    args = parser.parse_args(argv)
    print(f"exported to {export_checkpoint(args.ckpt_path, args.out_dir, args.model_name_or_path)}")
