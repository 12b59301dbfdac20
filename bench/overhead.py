"""Overhead stage: what a training loop adds per step, where a step is almost all overhead.

A tiny BERT (2 layers, hidden 64, random init from a config; the tokenizer of ``tests/fixtures/tiny-bert``) at batch
8 on windows of ``--overhead-max-length`` (128) tokens, so that the model's own work stays small: ms per step, batch start to batch start, of

- a plain PyTorch loop: forward, backward, clip to 1.0, AdamW (fused, as ours and the Trainer), linear scheduler,
  zero_grad -- on the batches of our
  data module's loader (collator, length-grouped sampler), nothing else;
- ``transformers.Trainer`` (its defaults: clipping 1.0, AdamW, linear schedule) on the same batches in the same order;
- ours: ``python -m qa_lightning fit`` (in process, the CLI's callbacks and logger) on the same data.

Rounds alternate plain, Trainer, ours (the machine drifts); each figure is the median over rounds of the rounds'
median step, the ratio the median of the rounds' ratios.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import time

from .harness import TINY_BERT, TINY_DEV, TINY_TRAIN, Skip, clock_now, histogram, summarize
from .peer import peer_clock, peer_model, peer_trainer

TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)


def _model_dir(work: str) -> str:
    """Config of the tiny encoder + the fixture's tokenizer, in a directory every pipeline can load."""
    from transformers import BertConfig

    out = os.path.join(work, "overhead-bert")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(TINY_BERT):
        if name != "config.json":
            shutil.copyfile(TINY_BERT / name, os.path.join(out, name))
    BertConfig(vocab_size=28996, **TINY_SHAPE).save_pretrained(out)
    return out


def _datamodule(a, path: str, train_file: str, batch: int):
    from qa_lightning.data.datamodule import SquadDataModule

    dm = SquadDataModule(model_name_or_path=path, train_file=train_file, validation_file=str(TINY_DEV),
                         max_length=a.overhead_max_length, stride=a.overhead_max_length // 4, batch_size=batch,
                         max_train_samples=a.overhead_samples,
                         cache_dir=os.path.join(a.work, "cache"), seed=a.seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _plain(a, path: str, dm, n: int) -> dict:
    """The plain loop on ``dm``'s training loader (the same batches ours gets)."""
    import torch

    from qa_lightning.hf import optimizer_groups

    dev = torch.device("cuda" if a.device == "cuda" else "cpu")
    model = peer_model(path, False, a.seed).to(dev).train()
    opt = torch.optim.AdamW(optimizer_groups(model, 0.01), lr=2e-5, fused=True)  # as ours and the Trainer
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / n))
    starts, real, padded = [], [], []
    for i, batch in enumerate(dm.train_dataloader()):
        starts.append(clock_now(dev.type == "cuda"))
        if i == n - 1:  # n batch starts, as max_steps=n gives the others
            break
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items() if k != "feature_index"}
        real.append(batch["attention_mask"].sum())
        padded.append(batch["attention_mask"].numel())
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return summarize(starts, real, padded, dm.batch_size, a.warmup_steps)


def _trainer(a, path: str, dm, n: int) -> dict:
    """transformers.Trainer on the same batches: the loader's epoch-0 order, read in order, our collator."""
    from qa_lightning.data.loaders import model_columns
    from qa_lightning.hf import load_tokenizer

    sampler = dm.train_dataloader().sampler
    order = sampler.indices(0)[: n * dm.batch_size]
    train = dm.features["train"]
    feats = train.select(order).select_columns(model_columns(train, dm.tokenizer))
    clock = peer_clock(a.device == "cuda")
    trainer, counter = peer_trainer(a, peer_model(path, False, a.seed), load_tokenizer(path), feats, "fp32",
                                    callbacks=[clock], inner_collator=dm.collator(), in_order=True,
                                    per_device_train_batch_size=dm.batch_size, max_steps=n)
    trainer.train()
    return summarize(clock.starts, counter.real, counter.padded, dm.batch_size, a.warmup_steps)


def _ours(a, path: str, train_file: str, batch: int, n: int, r: int) -> dict:
    from .ours import run_fit, speed_options

    options = {**speed_options(n), "--data.batch_size": batch, "--data.train_file": train_file,
               "--data.max_train_samples": a.overhead_samples, "--data.max_length": a.overhead_max_length,
               "--data.stride": a.overhead_max_length // 4}
    cli, clock, _ = run_fit(a, path, False, "fp32", f"overhead-{r}", options)
    del cli
    return summarize(clock.starts, clock.real, clock.padded, batch, a.warmup_steps)


def bench_overhead(a, rows: list, details: list) -> None:
    batch = 8
    train_file = a.overhead_file or (a.train_file if os.path.isfile(a.train_file) else str(TINY_TRAIN))
    if not os.path.isfile(train_file):
        raise Skip(f"{train_file} not found (set --overhead-file)")
    path = _model_dir(a.work)
    dm = _datamodule(a, path, train_file, batch)
    n_batches = len(dm.train_dataloader())
    n = min(a.warmup_steps + a.overhead_steps + 1, n_batches)  # batch starts of one epoch
    if n - a.warmup_steps < 2:
        raise Skip(f"{train_file}: {n_batches} batches of {batch}, too few for {a.warmup_steps} warm-up steps")
    runs = {"plain": [], "trainer": [], "ours": []}
    for r in range(a.rounds):
        print(f"bench: overhead round {r + 1}/{a.rounds}", flush=True)
        runs["plain"].append(_plain(a, path, dm, n))
        runs["trainer"].append(_trainer(a, path, dm, n))
        runs["ours"].append(_ours(a, path, train_file, batch, n, r))
        gc.collect()
    ms = {k: statistics.median(1e3 * r["median_s"] for r in v) for k, v in runs.items()}
    ratio = {k: statistics.median(o["median_s"] / p["median_s"] for o, p in zip(v, runs["plain"]))
             for k, v in runs.items()}
    stage = f"overhead: tiny BERT (2 layers, hidden 64), batch {batch}, fp32"
    labels = {"plain": "plain PyTorch loop (forward, backward, clip, AdamW, scheduler, zero_grad)",
              "trainer": "transformers.Trainer, same batches", "ours": "ours: `python -m qa_lightning fit`"}
    for k, label in labels.items():
        mean = statistics.median(1e3 * r["mean_s"] for r in runs[k])
        rows.append(dict(stage=stage, pipeline=f"{label}, {len(runs[k][0]['step_s'])} steps x {a.rounds} rounds",
                         rate=f"{ms[k]:.1f} ms/step (mean {mean:.1f})", median=f"{ms[k] / 1e3:.4f}",
                         ratio=f"{ratio[k]:.2f}x the plain loop's time"))
    for k in labels:
        details.append(f"- overhead/{k}: median (mean) ms per step by round: "
                       + ", ".join(f"{1e3 * r['median_s']:.1f} ({1e3 * r['mean_s']:.1f})" for r in runs[k])
                       + f"; steps of all rounds: {histogram([s for r in runs[k] for s in r['step_s']])}"
                       + f"; real/padded tokens per feature {runs[k][0].get('real_len', 0):.1f}/"
                       f"{runs[k][0].get('padded_len', 0):.1f}")
    details.append(f"- overhead: {os.path.basename(train_file)}, first {a.overhead_samples} questions, windows of "
                   f"{a.overhead_max_length}/{a.overhead_max_length // 4}, {n_batches} "
                   f"batches of {batch}; {n} batch starts per run, first {a.warmup_steps} steps untimed; ours' "
                   f"per-step overhead target: within 25% of the plain loop's (ours/plain <= 1.25): "
                   f"{ratio['ours']:.2f}")
