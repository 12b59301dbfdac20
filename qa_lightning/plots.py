"""Learning curves from Lightning's CSV log: train loss and validation EM/F1 against optimizer steps, as a PNG, drawn
after ``fit`` by the ``LearningCurves`` callback (the CLI always adds it)."""

from __future__ import annotations

import csv
import os

import lightning as L

from .checkpoints import run_folder


def validation_points(rows: list[dict], key: str) -> list[tuple[float, float]]:
    """(optimizer step, value) of every row of ``metrics.csv`` that logged ``key``: several validations per epoch with
    ``--trainer.val_check_interval`` below 1, so the curve shows learning within an epoch."""
    return [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def plot_learning_curves(csv_path: str, png_path: str) -> str:
    """Read ``metrics.csv`` and write ``png_path``; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (("train/loss_step", "train loss (step)", {"alpha": 0.35, "lw": 1}),
                              ("train/loss_epoch", "train loss (epoch mean)", {"marker": "o"})):
        pts = validation_points(rows, key)
        if pts:
            ax_loss.plot(*zip(*pts), color="tab:blue", label=label, **style)
    for key, label, color in (("val/exact_match", "exact match", "tab:orange"), ("val/f1", "F1", "tab:green")):
        pts = validation_points(rows, key)
        if pts:
            ax_val.plot(*zip(*pts), "o-", color=color, label=label)
            ax_val.annotate(f"{pts[-1][1]:.1f}", pts[-1], textcoords="offset points", xytext=(4, 4), color=color)
    ends: dict[int, float] = {}  # epoch -> its last step: a dotted line between epochs
    for r in rows:
        if r.get("epoch") not in (None, "") and r.get("step") not in (None, ""):
            epoch = int(float(r["epoch"]))
            ends[epoch] = max(ends.get(epoch, 0.0), float(r["step"]))
    for epoch in sorted(ends)[:-1]:
        ax_val.axvline(ends[epoch], color="grey", lw=0.8, ls=":")
    for ax, ylabel, title in ((ax_loss, "loss", "Training loss"), (ax_val, "score (%)", "Validation (SQuAD)")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


class LearningCurves(L.Callback):
    """Writes ``learning_curves.png`` beside the CSV log's ``metrics.csv`` after ``fit`` (nothing without one)."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        csv_path = run_folder(trainer, "metrics.csv")  # collective: every rank asks
        if not trainer.is_global_zero:
            return
        for lg in trainer.loggers:  # make sure the CSV is complete before reading it
            lg.save()
        if os.path.isfile(csv_path):
            plot_learning_curves(csv_path, os.path.join(os.path.dirname(csv_path), "learning_curves.png"))

