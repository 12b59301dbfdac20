"""plots.py: the learning curves of a run, drawn from its metrics.csv against optimizer steps (several validation
points per epoch with ``--trainer.val_check_interval`` below 1)."""

from __future__ import annotations

import csv

from qa_lightning.plots import plot_learning_curves, validation_points


def test_validation_points_follow_optimizer_steps(tmp_path):
    path = tmp_path / "metrics.csv"
    rows = [{"epoch": 0, "step": s, "val/f1": f, "val/exact_match": f - 10, "train/loss_step": ""}
            for s, f in ((24, 20.0), (49, 35.5), (74, 44.0), (99, 51.2))]
    rows += [{"epoch": 0, "step": s, "val/f1": "", "val/exact_match": "", "train/loss_step": 3.0 - s / 50}
             for s in range(9, 100, 10)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with path.open() as fh:
        read = list(csv.DictReader(fh))
    assert validation_points(read, "val/f1") == [(24.0, 20.0), (49.0, 35.5), (74.0, 44.0), (99.0, 51.2)]
    assert plot_learning_curves(str(path), str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 10_000
