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


