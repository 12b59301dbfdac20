"""Train stage: optimizer steps of the peer and of our real ``fit`` path, timed the same way, side by side."""

from __future__ import annotations

import gc
import os
import time

from .harness import LIGHTNING_PRECISION, TINY_DEV, Skip, StepClock, peak_memory, resolve_model
from .peer import peer_model, peer_trainer


def lightning_trainer(a, prec: str, name: str, callbacks=(), monitor=None, **kwargs):
    """As the CLI builds it: CSV logs, ModelCheckpoint (save_last), LearningRateMonitor, CrashSafety (atomic
    checkpoints), gradient clipping at 1.0 (the recipe's max_grad_norm)."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from qa_lightning.callbacks import CrashSafety
    from qa_lightning.cli import TRAINER_DEFAULTS

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

    from qa_lightning.data import SquadDataModule
    from qa_lightning.data.sources import load_split
    from qa_lightning.hf import load_tokenizer
    from qa_lightning.module import QAModule
    from tests.reference import reference_train_features

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


