"""Gathering evaluation logits across ranks: collect per batch, all-gather, restore dataset order, de-duplicate.

Every rank all-gathers its batches' logits and feature indices (sizes may differ: the predict sampler does not pad),
restores dataset order and drops the duplicates that ``DistributedSampler`` pads with, so every feature is decoded
exactly once.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def align_logits(logits: torch.Tensor, attention_mask: Optional[torch.Tensor], width: int,
                 pad_left: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, L) logits -> float32 (B, width) with token 0 of each feature first and -inf past its real tokens.

    With left padding (XLNet) the real tokens sit at the end of the row: shift them to the front.
    """
    logits = logits.float()
    if attention_mask is not None:
        logits = logits.masked_fill(attention_mask == 0, float("-inf"))
    bsz, length = logits.shape
    pos = torch.arange(width, device=logits.device).unsqueeze(0).expand(bsz, width)  # (B, W)
    if pad_left is not None:
        pos = pos + pad_left.to(logits.device).unsqueeze(1)
    inside = pos < length
    out = logits.gather(1, pos.clamp(max=length - 1))
    return out.masked_fill(~inside, float("-inf"))


class LogitCollector:
    """Keeps one evaluation epoch's batches (feature indices and start/end logits) on the device."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.batches: list[tuple] = []  # (feature_index, start logits, end logits, attention_mask, pad_left)

    def add(self, batch: dict, start_logits: torch.Tensor, end_logits: torch.Tensor) -> None:
        """One batch: its ``feature_index`` (B,) and the model's (B, L) logits."""
        self.batches.append((batch["feature_index"].detach(), start_logits.detach(), end_logits.detach(),
                             batch.get("attention_mask"), batch.get("pad_left")))

    def gather(self, module, n_features: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ranks' logits in dataset order, aligned to ``width``: start, end (n_features, width) and ``seen``
        (n_features,) bool; the collector is empty afterwards.

        Collective: call it on every rank. Features no rank evaluated (``limit_val_batches``) are not ``seen``.
        """
        device = module.device
        index = torch.zeros(0, dtype=torch.long, device=device)
        start = end = torch.zeros(0, width, device=device)
        if self.batches:  # every batch aligned to one width, so that the epoch's logits concatenate
            index = torch.cat([b[0] for b in self.batches]).to(device)
            start = torch.cat([align_logits(s, mask, width, left) for _, s, _, mask, left in self.batches]).to(device)
            end = torch.cat([align_logits(e, mask, width, left) for _, _, e, mask, left in self.batches]).to(device)
        self.reset()
        world = module.trainer.world_size if module._trainer is not None else 1
        if world > 1:
            count = torch.tensor([len(index)], device=device)
            counts = module.all_gather(count).reshape(-1).tolist()  # (W,)
            most = max(counts)
            pad = most - len(index)
            if pad:  # all_gather needs equal shapes
                index = torch.cat([index, index.new_full((pad,), -1)])
                start = torch.cat([start, start.new_full((pad, width), float("-inf"))])
                end = torch.cat([end, end.new_full((pad, width), float("-inf"))])
            index = module.all_gather(index).reshape(-1)  # (W*most,)
            start = module.all_gather(start).reshape(-1, width)
            end = module.all_gather(end).reshape(-1, width)
        index, start, end = index.cpu().numpy(), start.cpu().numpy(), end.cpu().numpy()
        keep = index >= 0
        index, start, end = index[keep], start[keep], end[keep]
        uniq, first = np.unique(index, return_index=True)  # sorted: dataset order, duplicates dropped
        out_start = np.full((n_features, width), -np.inf, dtype=np.float32)
        out_end = np.full((n_features, width), -np.inf, dtype=np.float32)
        seen = np.zeros(n_features, dtype=bool)
        out_start[uniq], out_end[uniq], seen[uniq] = start[first], end[first], True
        return out_start, out_end, seen
