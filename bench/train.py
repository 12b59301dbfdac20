"""Train stage: the peer and our real ``fit`` path, timed the same way, in alternating rounds.

Each round runs the peer, then ours (peer, ours, peer, ours, ...: the machine's speed drifts, so each ours is
compared with the peer run of the same round); the ratio reported is the median of the rounds' ratios. A step is the
interval from one batch start to the next (everything: loading, hooks, logging, clipping, optimizer, scheduler).

Precisions (``harness.Precisions``): with ``--precision auto`` a round runs the peer at its default, ours at its
automatic precision (what users get: the first row, "default vs default"), then, where the two differ (a CPU with
bf16 instructions: fp32 and bf16), the peer at ours' precision and ours at the peer's, for the same-precision rows.
"""

from __future__ import annotations

import gc
import os
import shlex
import statistics
import time

import numpy as np

from .harness import LIGHTNING_PRECISION, Skip, histogram, peak_memory, resolve_model, summarize
from .peer import peer_clock, peer_model, peer_trainer


def _run_peer(a, prec: str, peer_path: str, pretrained: bool, tok, feats) -> dict:
    """One peer run: the recipe's Trainer on the padded features, ``warmup + steps + 1`` optimizer steps."""
    cuda, res = a.device == "cuda", {}
    with peak_memory(cuda, res):
        t0 = time.perf_counter()
        clock = peer_clock(cuda)
        trainer, counter = peer_trainer(a, peer_model(peer_path, pretrained, a.seed), tok, feats, prec,
                                        callbacks=[clock], per_device_train_batch_size=a.batch_size,
                                        max_steps=a.warmup_steps + a.steps + 1)
        trainer.train()
        res["e2e_s"] = time.perf_counter() - t0
    # batch k is step k: the peer's loader collates in the main process, in order
    res.update(summarize(clock.starts, counter.real, counter.padded, a.batch_size, a.warmup_steps))
    del trainer
    gc.collect()
    return res


def _run_ours(a, prec: str | None, ours_name: str, pretrained: bool, name: str) -> dict:
    """One run of ``python -m qa_lightning fit`` (in process), ``warmup + ours_steps + 1`` batches, no validation;
    ``prec`` None: no ``--trainer.precision`` (the automatic one)."""
    import pyarrow.compute as pc
    import torch

    from .ours import run_fit, speed_options

    cuda, res = a.device == "cuda", {}
    warmup = a.ours_warmup_steps if a.ours_warmup_steps is not None else a.warmup_steps
    with peak_memory(cuda, res):
        cli, clock, res["e2e_s"] = run_fit(a, ours_name, pretrained, prec, name,
                                           speed_options(warmup + a.ours_steps + 1), tuple(shlex.split(a.ours_args)))
    res.update(summarize(clock.starts, clock.real, clock.padded, a.batch_size, warmup))
    res["dropout_off"], res["warmup"] = clock.dropout_off, warmup
    res["lengths"] = pc.list_value_length(cli.datamodule.features["train"].data.column("input_ids")).to_numpy()
    res["features"] = len(cli.datamodule.features["train"])
    del cli
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return res


def bench_train(a, plan, rows: list, details: list, state: dict) -> None:
    from qa_lightning.data.sources import load_split
    from qa_lightning.hf import load_tokenizer
    from tests.reference import reference_train_features

    if not os.path.isfile(a.train_file):
        raise Skip(f"training file {a.train_file} not found (set --train-file)")
    ours_name, peer_path, pretrained = resolve_model(a, a.work)
    t0 = time.perf_counter()  # the peer's features: built once, counted in its first round's end-to-end time
    tok = load_tokenizer(peer_path)
    examples, _ = load_split(a.train_file, "train")
    feats = examples.map(reference_train_features, batched=True, remove_columns=examples.column_names,
                         fn_kwargs=dict(tokenizer=tok, max_length=a.max_length, stride=a.stride))
    prep_s = time.perf_counter() - t0
    # The two defaults first (adjacent: the headline ratio), then the cross pairs for the same-precision rows.
    order = list(dict.fromkeys((("peer", plan.peer), ("ours", plan.ours), ("peer", plan.ours), ("ours", plan.peer))))
    runs: dict = {}  # (pipeline, precision) -> one result per round
    for r in range(a.rounds):
        for who, prec in order:
            print(f"bench: train round {r + 1}/{a.rounds}: {who}, {prec}", flush=True)
            res = (_run_peer(a, prec, peer_path, pretrained, tok, feats) if who == "peer"
                   else _run_ours(a, plan.flag(prec), ours_name, pretrained, f"ours-{prec}-{r + 1}"))
            runs.setdefault((who, prec), []).append(res)
            print(f"bench: train round {r + 1}/{a.rounds}: {who}, {prec}: {res['features_s']:.2f} features/s "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    runs[order[0]][0]["e2e_s"] += prep_s
    peer, ours = runs[("peer", plan.peer)], runs[("ours", plan.ours)]
    if plan.auto:
        _report_defaults(a, plan, peer, ours, rows, details)
    for prec in plan.all:
        _report(a, prec, plan, runs[("peer", prec)], runs[("ours", prec)], len(feats), rows, details)
    details.append(f"- train/ours step-time histogram (all rounds, {plan.ours}): "
                   f"{histogram([s for r in ours for s in r['step_s']])}")
    mid = len(peer) // 2  # the default pair's median-round rates, for the eval stage's projection
    state["peer_rate"] = sorted(r["features_s"] for r in peer)[mid]
    state["ours_rate"] = sorted(r["features_s"] for r in ours)[mid]


def _median_run(runs: list) -> dict:
    return sorted(runs, key=lambda r: r["features_s"])[len(runs) // 2]


def _report_defaults(a, plan, peer: list, ours: list, rows: list, details: list) -> None:
    """Row (1): ours at its automatic precision against the peer at its default, the same round's runs."""
    ratios = [o["features_s"] / p["features_s"] for p, o in zip(peer, ours)]
    ratio = statistics.median(ratios)
    p_med, o_med = _median_run(peer), _median_run(ours)
    rows.append(dict(stage=f"train: batch {a.batch_size}, {a.max_length}/{a.stride}, **default vs default**",
                     pipeline=f"ours at its automatic precision ({plan.ours}) vs the peer at its default "
                     f"({plan.peer}), {len(peer)} rounds", rate=f"{o_med['features_s']:.2f} vs "
                     f"{p_med['features_s']:.2f} features/s", ratio=f"**{ratio:.2f}x**"))
    details.append(f"- train, default vs default (ours {plan.ours}, automatic; the peer {plan.peer}; ratio = ours / "
                   "the peer of the same round): " + "; ".join(
                       f"round {i + 1}: {p['features_s']:.2f} vs {o['features_s']:.2f} features/s = {q:.2f}x"
                       for i, (p, o, q) in enumerate(zip(peer, ours, ratios))) + f"; median {ratio:.2f}x")


def _report(a, prec: str, plan, peer: list, ours: list, n_peer: int, rows: list, details: list) -> None:
    """The same-precision rows: the peer and ours at ``prec``, ratio = median over rounds of ours / the peer."""
    ratios = [o["features_s"] / p["features_s"] for p, o in zip(peer, ours)]
    ratio = statistics.median(ratios)
    stage = f"train: batch {a.batch_size}, {prec}, {a.max_length}/{a.stride}"
    flag = plan.flag(prec)
    label = "ours: `python -m qa_lightning fit` (defaults" + (
        f", --trainer.precision {LIGHTNING_PRECISION[flag]}" if flag and plan.auto else "") + (
        f", {a.ours_args}" if a.ours_args else "") + ")"
    for name, runs, lab in (("peer", peer, "peer: HF Trainer, padded to max_length"), ("ours", ours, label)):
        med = _median_run(runs)
        rows.append(dict(stage=stage, pipeline=f"{lab}, {len(med['step_s'])} steps x {len(runs)} rounds",
                         rate=f"{med['features_s']:.2f} features/s",
                         tokens=f"{med['tokens_s']:.0f}" if "tokens_s" in med else "n/a",
                         median=f"{statistics.median(r['median_s'] for r in runs):.3f}",
                         wall=f"{med['wall_s']:.1f}", e2e=f"{runs[0]['e2e_s']:.1f}",
                         mem=max(runs, key=lambda r: r["peak_mem"])["peak_mem"],
                         ratio="1.00x" if name == "peer" else f"{ratio:.2f}x"))
    details.append(f"- train rounds, {prec} (peer, ours at the same precision; ratio = ours / the peer of the same "
                   "round): " + "; ".join(
                       f"round {i + 1}: {p['features_s']:.2f} vs {o['features_s']:.2f} features/s = {q:.2f}x"
                       for i, (p, o, q) in enumerate(zip(peer, ours, ratios))) + f"; median {ratio:.2f}x")
    for name, runs, warm in (("peer", peer, a.warmup_steps), ("ours", ours, ours[0]["warmup"])):
        for i, r in enumerate(runs):
            details.append(f"- train/{name} {prec} round {i + 1}: {len(r['step_s'])} steps timed after {warm}; step "
                           f"s: {', '.join(f'{s:.3f}' for s in r['step_s'])}; real/padded tokens per feature: "
                           f"{r.get('real_len', 0):.1f}/{r.get('padded_len', 0):.1f}")
    mean_len = float(ours[0]["lengths"].mean())
    details.append(f"- train: real tokens per feature: dataset mean {mean_len:.1f} ({ours[0]['features']} features of "
                   f"ours, {n_peer} of the peer); ours' timed steps {ours[0].get('real_len', 0):.1f}, the peer's "
                   f"{peer[0].get('real_len', 0):.1f} (padded to {peer[0].get('padded_len', 0):.0f}); {prec} runs")
    if any(r["dropout_off"] for r in ours):
        details.append("- train: WARNING: QAModule's encoder was in eval mode during fit (dropout off)")
