"""The peer: the reference recipe as users run it (``transformers.Trainer`` with the recipe's TrainingArguments)."""

from __future__ import annotations

import os

from .harness import CountingCollator


def _kwargs_for(cls, **kwargs) -> dict:
    """Drop/rename arguments the installed transformers lacks (4.40 .. 5.x)."""
    import inspect

    params = inspect.signature(cls).parameters
    if "warmup_ratio" in kwargs and "warmup_ratio" not in params:  # transformers 5: a float warmup_steps < 1
        kwargs["warmup_steps"] = kwargs.pop("warmup_ratio")
    if "processing_class" in kwargs and "processing_class" not in params:
        kwargs["tokenizer"] = kwargs.pop("processing_class")
    return kwargs


def peer_model(path: str, pretrained: bool, seed: int):
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    if pretrained:
        return AutoModelForQuestionAnswering.from_pretrained(path)
    return AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(path))


def peer_trainer(a, model, tok, features, prec: str, callbacks=(), inner_collator=None, in_order: bool = False,
                 **train_args):
    """The recipe's Trainer: its TrainingArguments (nothing tuned), the tokenizer passed as the recipe does.

    ``inner_collator`` replaces its default ``DataCollatorWithPadding(tok)``; ``in_order`` reads the features in
    dataset order instead of shuffling (the overhead stage feeds it the batches the other loops get)."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    recipe = dict(output_dir=os.path.join(a.work, "peer"), learning_rate=2e-5, weight_decay=0.01,
                  bf16=prec == "bf16", fp16=prec == "fp16", report_to="none", save_strategy="no", seed=a.seed,
                  use_cpu=a.device == "cpu")
    args = TrainingArguments(**_kwargs_for(TrainingArguments, **{**recipe, **train_args}))
    # Trainer's own default for a tokenizer is DataCollatorWithPadding(tokenizer); wrapped only to count tokens.
    collator = CountingCollator(inner_collator or DataCollatorWithPadding(tok))
    trainer = (_InOrder() if in_order else Trainer)(**_kwargs_for(Trainer, model=model, args=args, train_dataset=features, data_collator=collator,
                                    processing_class=tok, callbacks=list(callbacks)))
    return trainer, collator




def _InOrder():
    """A ``Trainer`` subclass that reads its training set in order (its sampler only; all else as the Trainer)."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class InOrderTrainer(Trainer):
        def _get_train_sampler(self, *args, **kwargs):  # signature differs across transformers versions
            return SequentialSampler(self.train_dataset)

    return InOrderTrainer


def peer_clock(cuda: bool):
    """A ``TrainerCallback`` that reads the clock at every step begin (after the batch was fetched): ``.starts``."""
    from transformers import TrainerCallback

    from .harness import clock_now

    class PeerClock(TrainerCallback):
        def __init__(self):
            self.starts: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.starts.append(clock_now(cuda))

    return PeerClock()
