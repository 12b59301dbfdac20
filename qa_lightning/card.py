"""The model card (``README.md``) of an export: YAML front matter the Hugging Face Hub reads, and a readable body.
The front matter's ``model-index`` carries the latest exact match and F1 (the Hub shows them). Pure Python + PyYAML.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import yaml

from .hf import resolve_model_path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _model_name(meta: dict, folder: str) -> str:
    hub = (meta.get("hub_model_id") or "").strip()
    if hub:
        return hub
    base = os.path.basename(str(meta.get("base_model") or folder).rstrip("/")) or "model"
    return f"{base}-squad{'-v2' if meta.get('version_2_with_negative') else ''}"


def _dataset(meta: dict) -> dict:
    data = meta.get("data", {})
    v2 = bool(meta.get("version_2_with_negative"))
    kind = "squad_v2" if v2 else "squad"
    split = (meta.get("metrics") or {}).get("split", "validation")
    local = data.get("validation_file") if split == "validation" else data.get(f"{split}_file")
    if local:
        name = f"{os.path.basename(local)} (SQuAD {'v2.0' if v2 else 'v1.1'} format)"
    else:
        name = data.get("dataset_name") or kind
    return {"type": kind, "name": name, "split": split}


def model_index(meta: dict, folder: str) -> Optional[list]:
    """The Hub's ``model-index`` entry with exact match and F1, or None when no metrics were recorded."""
    metrics = meta.get("metrics") or {}
    if "f1" not in metrics:
        return None
    em = metrics.get("exact_match", metrics.get("exact"))
    values = [{"type": "exact_match", "value": round(float(em), 2), "name": "Exact Match"},
              {"type": "f1", "value": round(float(metrics["f1"]), 2), "name": "F1"}]
    return [{"name": _model_name(meta, folder),
             "results": [{"task": {"type": "question-answering", "name": "Extractive Question Answering"},
                          "dataset": _dataset(meta), "metrics": values}]}]


def _front_matter(meta: dict, folder: str) -> str:
    front: dict = {"library_name": "transformers", "pipeline_tag": "question-answering",
                   "tags": ["question-answering", "extractive-qa", "squad", "qa_lightning", "pytorch-lightning"]}
    base = str(meta.get("base_model") or "")
    # Only a real hub id: the Hub rejects a card whose base_model is not one (a local folder, a model package).
    if base and _HUB_ID.match(base) and not os.path.exists(base) and resolve_model_path(base) == base:
        front["base_model"] = base
    data = meta.get("data", {})
    if not any(data.get(f"{s}_file") for s in ("train", "validation")) and data.get("dataset_name"):
        front["datasets"] = [data["dataset_name"]]
    index = model_index(meta, folder)
    if index:
        front["model-index"] = index
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n"


def _results(meta: dict) -> list[str]:
    m = meta.get("metrics") or {}
    if "f1" not in m:
        return ["No evaluation was recorded for this model (it was exported without a validation run)."]
    em = m.get("exact_match", m.get("exact"))
    lines = [f"Latest evaluation, split `{m.get('split', 'validation')}` ({m.get('examples', '?')} questions, "
             f"epoch {m.get('epoch', '?')}, optimizer step {m.get('step', '?')}):", "",
             "| metric | value |", "| --- | --- |", f"| exact match | {float(em):.2f} |", f"| F1 | {float(m['f1']):.2f} |"]
    for key in ("HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1", "best_f1_thresh"):
        if key in m:
            lines.append(f"| {key} | {float(m[key]):.2f} |")
    return lines


def _usage(meta: dict, folder: str) -> list[str]:
    lines = ["```bash", f'python -m qa_lightning ask --model {folder} --question "Who wrote it?" --context "..."',
             f"python -m qa_lightning ask --model {folder} < questions.jsonl   # {{\"id\", \"question\", \"context\"}} "
             "per line", "```", "", "```python", "from qa_lightning.infer import QAModel", "",
             f'qa = QAModel.from_pretrained("{folder}")   # the settings below are its defaults',
             'best = qa.answer("Who wrote it?", context)  # .text, .start, .end (characters), .score', "```"]
    if meta.get("hub_model_id"):
        lines += ["", "From the Hub, download the folder first: `huggingface_hub.snapshot_download("
                      f"\"{meta['hub_model_id']}\", local_dir=\"{folder}\")`."]
    lines += ["", f"With plain transformers: `AutoModelForQuestionAnswering.from_pretrained(\"{folder}\")` and "
                  f"`AutoTokenizer.from_pretrained(\"{folder}\")`; decode with the settings below to get the same answers."]
    return lines


def _table(rows: dict) -> list[str]:
    return ["| setting | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows.items() if v is not None]


def render_card(meta: dict, folder: str = "export") -> str:
    """Model card text for an export whose ``qa_lightning.json`` is ``meta``; ``folder`` names it in the snippets."""
    hp, data = meta.get("hyper_parameters", {}), meta.get("data", {})
    v2 = bool(meta.get("version_2_with_negative"))
    out = [_front_matter(meta, folder), f"# {_model_name(meta, folder)}", "",
           f"Extractive question answering (SQuAD {'v2.0, with unanswerable questions' if v2 else 'v1.1'}): "
           f"`{meta.get('base_model')}` fine-tuned with qa_lightning (PyTorch Lightning).", "", "## Results", ""]
    out += _results(meta) + ["", "## Use it", ""] + _usage(meta, folder) + ["", "## Training data", ""]
    files = {k: data.get(k) for k in ("train_file", "validation_file")}
    if any(files.values()):
        out += [f"- {k}: `{v}`" for k, v in files.items() if v]
    else:
        out.append(f"- dataset: `{data.get('dataset_name')}` ({data.get('dataset_config_name') or 'default'})")
    for split, report in (meta.get("data_sizes") or {}).items():
        out.append(f"- {split}: {report}")
    run = {"train batch size (per device)": data.get("batch_size"), "devices": meta.get("devices"),
           "max epochs": meta.get("max_epochs"), "max steps": meta.get("max_steps"),
           "gradient accumulation": meta.get("accumulate_grad_batches"), "precision": meta.get("precision")}
    keep = ("learning_rate", "weight_decay", "warmup_ratio", "warmup_steps", "adam_epsilon", "dropout",
            "attn_implementation", "compile")
    out += ["", "## Training procedure", ""] + _table({**{k: hp.get(k) for k in keep}, **run})
    secs = meta.get("train_seconds")
    out += ["", f"Training time: {secs / 60:.1f} min on {meta.get('hardware', 'unknown hardware')}." if secs is not None
            else "Training time: not recorded.", "", "## Windowing and decoding settings", "",
            "What evaluation used; `qa_lightning ask` and `QAModel` use them by default (`qa_lightning.json`).", ""]
    out += _table({k: meta.get(k) for k in ("max_length", "stride", "n_best", "max_answer_length",
                                             "version_2_with_negative", "null_score_diff_threshold")})
    out += ["", "## Framework versions", ""] + [f"- {k} {v}" for k, v in (meta.get("versions") or {}).items()]
    return "\n".join(out) + "\n"
