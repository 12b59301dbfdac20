"""Where training stands in its epoch: saved in every checkpoint (the data module's ``state_dict``), restored by
its ``load_state_dict``, and the samples a resumed epoch skips."""

from __future__ import annotations

from typing import Callable, Optional

from ..resume import check_same_position


class TrainingPosition:
    """The epoch and the batches done in it, with what they were drawn from (``resume.position_identity``).

    Args:
        identity: returns the identity of this run's training batches (train features and batch order).
    """

    def __init__(self, identity: Callable[[], dict]):
        self.identity = identity
        self.pending: Optional[dict] = None  # the restored position, until its epoch's sampler takes it

    def state(self, trainer, batch_size: int) -> dict:
        """Where in which epoch training stood (batches fully processed); empty outside ``fit``."""
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "batches_done": done, "batch_size": batch_size,
                "world_size": trainer.world_size, "mid_epoch": 0 < done < trainer.num_training_batches,
                **self.identity()}

    def restore(self, state: dict, trainer) -> Optional[str]:
        """Keep ``state`` for :meth:`skip`. Other training batches: a mid-epoch position is a ``QAInputError``, at
        an epoch boundary the returned note says so."""
        self.pending = dict(state) if state else None
        if self.pending and trainer is not None and trainer.state.fn == "fit":
            return check_same_position(state, self.identity(), str(trainer.ckpt_path))
        return None

    def skip(self, epoch: int) -> int:
        """Samples of ``epoch`` consumed before the checkpoint resumed from (once; 0 otherwise)."""
        resume = self.pending
        if not resume or resume.get("epoch") != epoch:
            return 0
        self.pending = None
        return int(resume["batches_done"]) * int(resume["batch_size"]) * int(resume.get("world_size", 1))
