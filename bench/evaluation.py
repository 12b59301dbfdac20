"""Eval stage: ``python -m qa_lightning validate`` on the whole ``--dev-file`` (ours only), and the projected time
of the 3-epoch recipe from it and the train stage's rates.

The evaluation time is from validation start to end: forward passes, gather, decoding, metrics and the prediction
files; the features are tokenized (and cached) before it, as a training run does once.
"""

from __future__ import annotations

import os
import shlex

from .harness import Skip, resolve_model


def bench_eval(a, plan, rows: list, details: list, state: dict) -> None:
    """``validate`` at ours' default precision (``plan``: ``harness.Precisions``)."""
    from .ours import EvalClock, run_fit

    if not os.path.isfile(a.dev_file):
        raise Skip(f"{a.dev_file} not found (set --dev-file)")
    ours_name, _, pretrained = resolve_model(a, a.work)
    options = {"--data.validation_file": a.dev_file}
    cli, _, e2e = run_fit(a, ours_name, pretrained, plan.flag(plan.ours), "eval", options, tuple(shlex.split(a.ours_args)),
                          callbacks=("bench.ours.EvalClock",), subcommand="validate")
    seconds = next(cb for cb in cli.trainer.callbacks if isinstance(cb, EvalClock)).seconds
    n = len(cli.datamodule.features["validation"])
    state["eval_s"], state["eval_features"] = seconds, n
    rows.append(dict(stage=f"eval: {n} features, batch {cli.datamodule.eval_batch_size}, {plan.ours}",
                     pipeline="ours: `python -m qa_lightning validate` (forward + decode + EM/F1 + files)",
                     rate=f"{n / seconds:.0f} features/s", wall=f"{seconds:.1f}", e2e=f"{e2e:.1f}"))
    _projection(a, rows, details, state)


def _projection(a, rows: list, details: list, state: dict) -> None:
    """3 epochs of ``--recipe-features`` at the train stage's rates + one evaluation of the dev set."""
    if "ours_rate" not in state:
        return
    n, ev = 3 * a.recipe_features, state["eval_s"]
    ours, peer = n / state["ours_rate"] + ev, n / state["peer_rate"]
    for label, total, ratio in (("peer: training only (its evaluation not timed)", peer, None),
                                ("ours: training + one evaluation of the dev set", ours, peer / ours)):
        rows.append(dict(stage=f"projection: 3-epoch recipe, {a.recipe_features} x 3 features",
                         pipeline=label, wall=f"{total:.0f}", rate=f"{total / 60:.1f} min",
                         ratio="" if ratio is None else f"{ratio:.2f}x"))
    details.append(f"- projection: {a.recipe_features} x 3 training features at the train stage's median-round rates "
                   f"(ours {state['ours_rate']:.1f}, peer {state['peer_rate']:.1f} features/s) + {ev:.1f} s for one "
                   f"evaluation of {state['eval_features']} features; `fit` validates after every epoch, which adds "
                   f"{2 * ev:.1f} s for the other two")
