"""The model card of an export (qa_lightning/card.py): front matter huggingface_hub parses, metrics in the
model-index, the facts a user needs in the body. The card of a real fit's export: ``test_export.py``."""

from __future__ import annotations

import torch
import yaml

from qa_lightning.card import render_card
from qa_lightning.export import run_metadata
from conftest import TINY_BERT

RUN = {"train_seconds": 372.4, "hardware": "CPU (AMD EPYC, 2 cores), 1 process(es)", "precision": "32-true",
       "devices": 1, "max_epochs": 1, "data_sizes": {"train": "train.json: 4000 examples -> 4105 features"},
       "metrics": {"split": "validation", "step": 250, "epoch": 0, "examples": 1589, "exact_match": 44.46,
                   "f1": 59.61}}
MODULE = {"model_name_or_path": "bert-base-cased", "learning_rate": 8e-5, "warmup_ratio": 0.1, "dropout": 0.0,
          "n_best": 20, "max_answer_length": 30}
DATA = {"train_file": "data/train.json", "validation_file": "data/heldout.json", "max_length": 256, "stride": 96,
        "batch_size": 16}


def parse(text):
    from huggingface_hub import ModelCard

    return ModelCard(text)


def test_card_parses_with_huggingface_hub_and_carries_the_metrics():
    card = parse(render_card(run_metadata(MODULE, DATA, RUN), "export"))
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["exact_match"].metric_value == 44.46 and results["f1"].metric_value == 59.61
    assert results["f1"].dataset_type == "squad" and results["f1"].dataset_split == "validation"
    assert "heldout.json" in results["f1"].dataset_name and card.data.pipeline_tag == "question-answering"
    assert card.data.base_model == "bert-base-cased"


def test_card_body_has_data_hyper_parameters_time_hardware_versions_and_usage():
    text = render_card(run_metadata(MODULE, DATA, RUN), "export")
    body = text.split("---\n", 2)[2]
    for fact in ("`bert-base-cased`", "data/train.json", "data/heldout.json", "4000 examples -> 4105 features",
                 "| learning_rate | 8e-05 |", "| warmup_ratio | 0.1 |", "| dropout | 0.0 |",
                 "| train batch size (per device) | 16 |", "| max_length | 256 |", "| stride | 96 |",
                 "Training time: 6.2 min on CPU (AMD EPYC, 2 cores)", "1589 questions", "optimizer step 250",
                 "| exact match | 44.46 |", "| F1 | 59.61 |", f"- torch {torch.__version__}",
                 "python -m qa_lightning ask --model export", 'QAModel.from_pretrained("export")',
                 "AutoModelForQuestionAnswering.from_pretrained"):
        assert fact in body, fact


def test_v2_card_and_model_package_base_and_no_metrics():
    run = {**RUN, "metrics": {"split": "validation", "exact": 61.0, "exact_match": 61.0, "f1": 64.5,
                              "HasAns_f1": 70.1, "NoAns_f1": 58.9, "best_f1": 65.0}}
    meta = run_metadata({**MODULE, "model_name_or_path": str(TINY_BERT)}, {**DATA, "version_2_with_negative": True},
                        run)
    card = parse(render_card(meta, "export"))
    assert {r.dataset_type for r in card.data.eval_results} == {"squad_v2"}
    assert "| HasAns_f1 | 70.10 |" in card.text and "| NoAns_f1 | 58.90 |" in card.text
    assert card.data.base_model is None  # a local folder is not a hub id: the Hub would reject the card
    bare = render_card(run_metadata(MODULE, DATA, {}), "export")
    assert "model-index" not in yaml.safe_load(bare.split("---\n")[1]) and "No evaluation was recorded" in bare
