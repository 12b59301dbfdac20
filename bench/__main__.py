"""Benchmark: our Lightning pipeline against the reference recipe (transformers.Trainer), in one process.

    make bench                                   # = python -m bench (CPU, MiniLM, each at its default precision)
    python -m bench --model tiny --steps 3 --ours-steps 4 --rounds 1 --stages train,overhead  # smoke test
    python -m bench --device cuda --model bert-base-shapes --stages train,eval \
        --train-file DATA/squad-dev-articles-00-39.json --dev-file DATA/dev-v1.1.json --tokenizer DATA/bert-base-cased
    python -m bench --learn                      # EM/F1 after one epoch, ours vs the peer (long on a CPU)

Stages (``--stages``), printed as rows of one markdown table, also written to ``--out`` (default
``bench/results-<device>.md``); bench/README.md says exactly what is timed and how. A step is always the interval
from one batch start to the next.

- train: the peer (``reference_train_features`` padded to max_length + the recipe's ``TrainingArguments`` +
  ``transformers.Trainer``) and ours (``python -m qa_lightning fit``, in process, defaults, no validation), in
  ``--rounds`` alternating rounds; the ratio is the median of the rounds' ratios. First row: default against
  default (ours at its automatic precision, the peer at its own: fp32 on a CPU); then the same-precision rows.
- overhead: a tiny BERT at batch 8, where a step is mostly loop overhead: a plain PyTorch loop, the Trainer, ours.
- eval: ``python -m qa_lightning validate`` on ``--dev-file``, and the projected time of the 3-epoch recipe.
- prep: examples/s of ``features.py`` vs the reference functions through the same ``Dataset.map(batched=True)``.
- post: decode + EM/F1 on all dev features with seeded random logits, ours vs ``reference_decode`` as the recipe
  calls it (indexing the features Dataset) + the official evaluation; predictions are asserted identical.

Offline (HF_HUB_OFFLINE=1 unless set); caches and run folders go to a temporary directory. A missing optional input
(the MiniLM package, ../shared data) ends with one "skip:" line and exit status 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .harness import ROOT, Skip, resolve_precision, use_clock
from .evaluation import bench_eval
from .learn import bench_learn
from .overhead import bench_overhead
from .stages import bench_post, bench_prep
from .train import bench_train
from .report import render

SHARED = ROOT.parent / "shared"  # only as command-line defaults


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--model", default="minilm", help="minilm | tiny | bert-base-shapes | a model directory")
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps of the peer per round (train stage)")
    p.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--ours-steps", type=int, default=40,
                   help="timed steps of ours per round (any window after the first batch is a random sample of lengths)")
    p.add_argument("--ours-warmup-steps", type=int, default=None,
                   help="ours' untimed first steps (default: --warmup-steps; on a GPU use one mega-batch, 50, so "
                        "every batch shape has been seen once, as in a real epoch)")
    p.add_argument("--rounds", type=int, default=3, help="train stage: peer, ours alternating this many times")
    p.add_argument("--overhead-steps", type=int, default=60, help="overhead stage: timed steps per run")
    p.add_argument("--overhead-max-length", type=int, default=128, help="overhead stage: tokens per window")
    p.add_argument("--overhead-samples", type=int, default=1000, help="overhead stage: questions of its file")
    p.add_argument("--overhead-file", default=None,
                   help="overhead stage data (default: --train-file, or tests/fixtures/squad_tiny_train.json)")
    p.add_argument("--recipe-features", type=int, default=88729,
                   help="eval stage: training features of the recipe (SQuAD v1.1 train at 384/128) for the projection")
    p.add_argument("--ours-args", default="", help="extra `fit` arguments for ours, e.g. '--data.pad_to_multiple_of 64'")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 on cuda, 16 on cpu")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: each pipeline at its default (the peer: fp32 on cpu, bf16 on GPUs that have it, else "
                   "fp16; ours: its automatic precision, bf16 on CPUs with bf16 instructions) plus the "
                   "same-precision pairs; else both at this one")
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--stride", type=int, default=128)
    p.add_argument("--stages", default="train,overhead,prep,post",
                   help="comma-separated subset of train,overhead,eval,prep,post")
    p.add_argument("--repeats", type=int, default=2, help="prep and post stages: best of N")
    p.add_argument("--train-file", default=str(SHARED / "squad" / "squad-dev-articles-00-39.json"))
    p.add_argument("--eval-file", default=str(SHARED / "squad" / "squad-dev-articles-40-47.json"), help="--learn")
    p.add_argument("--dev-file", default=str(SHARED / "squad" / "dev-v1.1.json"), help="prep and post stages")
    p.add_argument("--tokenizer", default=str(SHARED / "tokenizers" / "bert-base-cased"),
                   help="bert-base-cased tokenizer dir: prep/post stages and --model bert-base-shapes")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time instead of wall time (busy machines; use with --threads 1)")
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
    if min(a.steps, a.ours_steps, a.rounds) < 1 or a.warmup_steps < 0:
        p.error("need --steps, --ours-steps, --rounds >= 1 and --warmup-steps >= 0")
    if a.out is None:
        default_model = {"cpu": "minilm", "cuda": "bert-base-shapes"}[a.device]
        suffix = "" if a.model == default_model else "-" + Path(a.model).name
        a.out = str(ROOT / "bench" / f"results-{a.device}{suffix}{'-learn' if a.learn else ''}.md")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start, load = time.perf_counter(), os.getloadavg()
    # Offline, before transformers/datasets are first imported (they read these at import); the last as the CLI
    # sets it (loaders fork after tokenizing).
    for key, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
    use_clock(a.clock)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    own_work = a.work_dir is None
    a.work = a.work_dir or tempfile.mkdtemp(prefix="qa-bench-")
    os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(a.work, "hf-datasets"))
    rows, details, state = [], [], {}
    try:
        prec = resolve_precision(a)  # harness.Precisions
        if a.learn:
            bench_learn(a, prec, rows, details)
        else:
            stages = [s.strip() for s in a.stages.split(",") if s.strip()]
            unknown = set(stages) - {"train", "overhead", "eval", "prep", "post"}
            if unknown:
                print(f"error: unknown --stages {sorted(unknown)}", file=sys.stderr)
                return 2
            for stage in stages:
                try:
                    {"train": lambda: bench_train(a, prec, rows, details, state),
                     "eval": lambda: bench_eval(a, prec, rows, details, state),
                     "overhead": lambda: bench_overhead(a, rows, details),
                     "prep": lambda: bench_prep(a, rows, details, state),
                     "post": lambda: bench_post(a, rows, details, state)}[stage]()
                except Skip as why:
                    if stage == "train" or not rows:  # the main stage, or nothing measured at all
                        raise
                    print(f"skip: {stage} stage: {why}")
                    details.append(f"- {stage}: skipped ({why})")
    except Skip as why:
        print(f"skip: bench: {why}")
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
