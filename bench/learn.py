"""Learn stage (``--learn``): EM/F1 after fine-tuning, ours against the peer, with the same settings; with
``--precision auto`` (the default) also ours at the peer's precision when its automatic one differs (fp32 vs bf16 on
a CPU with bf16 instructions: the accuracy the automatic precision keeps)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .harness import LIGHTNING_PRECISION, Skip, resolve_model
from .peer import peer_model, peer_trainer
from .ours import EvalClock, run_fit


def _learn_peer(a, prec: str, peer_path: str, pretrained: bool) -> dict:
    """The recipe end to end: features, Trainer, predict, reference decode, official EM/F1 (timed from the JSON)."""
    from qa_lightning.data.sources import load_split
    from qa_lightning.hf import load_tokenizer
    from tests.reference import official_v1_evaluate, reference_decode, reference_train_features
    from tests.reference import reference_validation_features

    ml, st, bs = a.learn_max_length, a.learn_stride, a.learn_batch_size
    t0 = time.perf_counter()
    tok = load_tokenizer(peer_path)
    train_ex, _ = load_split(a.train_file, "train", max_samples=a.learn_train_samples)
    eval_ex, _ = load_split(a.eval_file, "validation", max_samples=a.learn_eval_samples)
    kw = dict(tokenizer=tok, max_length=ml, stride=st)
    train_f = train_ex.map(reference_train_features, batched=True, remove_columns=train_ex.column_names, fn_kwargs=kw)
    eval_f = eval_ex.map(reference_validation_features, batched=True, remove_columns=eval_ex.column_names,
                         fn_kwargs=kw)
    trainer, _ = peer_trainer(a, peer_model(peer_path, pretrained, a.seed), tok, train_f, prec,
                              per_device_train_batch_size=bs, num_train_epochs=a.learn_epochs, learning_rate=a.learn_lr,
                              warmup_ratio=0.1)
    trainer.train()
    t_train = time.perf_counter() - t0
    logits, _, _ = trainer.predict(eval_f.remove_columns(["example_id", "offset_mapping"]))
    preds = reference_decode(logits[0], logits[1], eval_f, eval_ex)
    with open(a.eval_file, encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    keep = set(eval_ex["id"])  # --learn-eval-samples: score the evaluated questions only
    for art in data:
        for para in art["paragraphs"]:
            para["qas"] = [q for q in para["qas"] if q["id"] in keep]
    wall = time.perf_counter() - t0
    return {"metrics": official_v1_evaluate(data, preds), "wall": wall, "eval": wall - t_train,
            "questions": len(eval_ex), "features": len(train_f)}


def _learn_ours(a, prec: str | None, ours_name: str, pretrained: bool, details: list) -> dict:
    """``python -m qa_lightning fit`` with the same settings, validating at the epoch end (``prec`` None: its
    automatic precision)."""
    options = {"--data.validation_file": a.eval_file, "--data.max_length": a.learn_max_length,
               "--data.stride": a.learn_stride, "--data.batch_size": a.learn_batch_size,
               "--model.learning_rate": a.learn_lr, "--model.warmup_ratio": 0.1,
               "--trainer.max_epochs": a.learn_epochs, "--trainer.num_sanity_val_steps": 0}
    for key, value in (("--data.max_train_samples", a.learn_train_samples),
                       ("--data.max_eval_samples", a.learn_eval_samples)):
        if value:
            options[key] = value
    cli, clock, wall = run_fit(a, ours_name, pretrained, prec, f"learn-{prec or 'auto'}", options,
                               callbacks=("bench.ours.EvalClock",))
    if clock.dropout_off:
        details.append("- learn: WARNING: QAModule's encoder was in eval mode during fit (dropout off); the peer "
                       "trains with dropout")
    return {"metrics": cli.model.results["validation"].metrics, "wall": wall,
            "eval": next(cb for cb in cli.trainer.callbacks if isinstance(cb, EvalClock)).seconds}


def bench_learn(a, plan, rows: list, details: list) -> None:
    """One epoch on --learn-train-samples questions of --train-file, EM/F1 on --eval-file: the peer at its default
    precision, ours at its automatic one and, where that differs, ours at the peer's (same seed, same split)."""
    for path, what in ((a.train_file, "--train-file"), (a.eval_file, "--eval-file")):
        if not os.path.isfile(path):
            raise Skip(f"{path} not found (set {what})")
    ours_name, peer_path, pretrained = resolve_model(a, a.work)
    peer = _learn_peer(a, plan.peer, peer_path, pretrained)
    runs = [(f"peer: HF Trainer + reference decode + official eval, {plan.peer}", peer)]
    for prec in dict.fromkeys((plan.ours, plan.peer)):
        flag = plan.flag(prec)
        how = "automatic" if flag is None else f"--trainer.precision {LIGHTNING_PRECISION[prec]}"
        runs.append((f"ours: `python -m qa_lightning fit` (validates at epoch end), {prec} ({how})",
                     _learn_ours(a, flag, ours_name, pretrained, details)))
    details.append(f"- learn: {a.learn_train_samples or 'all'} train questions, {a.learn_max_length}/"
                   f"{a.learn_stride}, {a.learn_epochs} epoch(s), batch {a.learn_batch_size}, lr {a.learn_lr:g}, 10% "
                   f"warm-up then linear decay, weight decay 0.01, seed {a.seed}; evaluated on {peer['questions']} "
                   f"questions of {Path(a.eval_file).name}; {peer['features']} training features (the peer's, "
                   "padded); wall = load + features + train + predict/validate + decode + metric (ours also writes "
                   "its feature cache, checkpoints and prediction files)")
    for label, r in runs:
        m = r["metrics"]
        rows.append(dict(stage=f"learn: {a.model}", pipeline=label, em=f"{m['exact_match']:.2f}", f1=f"{m['f1']:.2f}",
                         train=f"{r['wall'] - r['eval']:.0f}", eval=f"{r['eval']:.0f}", wall=f"{r['wall']:.0f}",
                         ratio=f"{peer['wall'] / r['wall']:.2f}x"))
