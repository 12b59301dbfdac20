"""Unpadded ("packed") encoder forward: only the real tokens of a batch go through the encoder (``--model.unpadded``).

    enable_packed_attention(model)             # once: registers the packed attention with transformers
    batch = add_pack_index(collated_batch)     # host side, before the device copy: where the real tokens sit
    out = packed_forward(model, batch)         # .loss, .start_logits, .end_logits in the padded (B, L) layout

The real tokens are laid end to end as one (1, T) sequence, each feature keeping its position ids (column indices)
and token types; attention stays within a feature through SDPA on a jagged nested tensor. The loss leaves padding
positions out of the softmax (transformers' own keeps them, so its value moves with the amount of padding). Needs
transformers >= 5 and ``model_type`` "bert" (MiniLM included); anything else is refused with the reason.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from .data.batching import NON_MODEL_KEYS
from .errors import QAInputError

ATTN_NAME = "qa_packed_sdpa"
PACK_KEYS = ("pack_index", "pack_offsets", "pack_max_len")
SUPPORTED_MODEL_TYPES = ("bert",)  # absolute positions = column index, token types, attention via the registry
# Not passed on as they are: bookkeeping, labels (the loss is ours), the mask (packing replaces it), packing keys
_NOT_PASSED = (*NON_MODEL_KEYS, "start_positions", "end_positions", "attention_mask", *PACK_KEYS)


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers attention function: jagged SDPA when the call carries ``cu_seq_lens_q``, plain SDPA otherwise.

    query/key/value: (1, H, T, D) for a packed call. Returns (1, T, H, D) like transformers' ``sdpa``.
    """
    offsets = kwargs.get("cu_seq_lens_q")
    if offsets is None:  # an ordinary padded call (e.g. the exported model run by hand): the library's SDPA
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    longest = kwargs.get("max_length_q")

    def jagged(x: torch.Tensor) -> torch.Tensor:  # (1, H, T, D) -> (B, H, j, D), j ragged
        return torch.nested.nested_tensor_from_jagged(x[0].transpose(0, 1), offsets, max_seqlen=longest).transpose(1, 2)

    out = F.scaled_dot_product_attention(jagged(query), jagged(key), jagged(value), dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).values().unsqueeze(0), None  # (1, T, H, D)


def enable_packed_attention(model: torch.nn.Module) -> None:
    """Register ``packed_sdpa`` with transformers and make ``model`` use it (padded calls behave as "sdpa")."""
    import transformers

    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise QAInputError(f"--model.unpadded: supports model_type {', '.join(SUPPORTED_MODEL_TYPES)} (absolute "
                           f"positions by column), not {model_type!r}; leave --model.unpadded false")
    modeling = sys.modules[type(model).__module__]
    if not hasattr(modeling, "ALL_ATTENTION_FUNCTIONS"):
        raise QAInputError(f"--model.unpadded needs transformers >= 5 (its {model_type} attention calls the "
                           f"attention-function registry); installed: {transformers.__version__}; leave it false")
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, packed_sdpa)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    model.config._attn_implementation = ATTN_NAME  # read at every forward by each attention layer


def add_pack_index(batch: dict) -> dict:
    """Add where the real tokens are: ``pack_index`` (T,) flat indices into (B, L), ``pack_offsets`` (B+1,) feature
    boundaries in the packed sequence, ``pack_max_len`` (a Python int: no device sync to read it)."""
    ids = batch["input_ids"]  # (B, L)
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    lengths = mask.sum(1)  # (B,)
    out = dict(batch)
    out["pack_index"] = mask.reshape(-1).nonzero().squeeze(1)  # (T,) row-major: each feature's tokens contiguous
    out["pack_offsets"] = F.pad(lengths.cumsum(0), (1, 0))  # (B+1,)
    out["pack_max_len"] = int(lengths.max())
    return out


def qa_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
            end_positions: torch.Tensor) -> torch.Tensor:
    """transformers' QA loss on (B, L) logits: mean of start and end cross-entropies, positions >= L ignored."""
    ignored = start_logits.size(1)
    start_positions, end_positions = start_positions.clamp(0, ignored), end_positions.clamp(0, ignored)
    start = F.cross_entropy(start_logits.float(), start_positions, ignore_index=ignored)
    end = F.cross_entropy(end_logits.float(), end_positions, ignore_index=ignored)
    return (start + end) / 2


def packed_forward(model: torch.nn.Module, batch: dict) -> Any:
    """Run ``model`` on the real tokens of a padded ``batch`` (with ``add_pack_index``'s keys).

    Returns an object with ``start_logits``/``end_logits`` (B, L) (padding positions: the dtype's minimum) and
    ``loss`` (when the batch has labels; padding positions left out of the softmax).
    """
    ids = batch["input_ids"]  # (B, L)
    bsz, length = ids.shape
    index, offsets = batch["pack_index"], batch["pack_offsets"]

    def pack(x: torch.Tensor) -> torch.Tensor:  # (B, L) -> (1, T)
        return x.reshape(-1)[index].unsqueeze(0)

    inputs = {k: v for k, v in batch.items() if k not in _NOT_PASSED and k != "input_ids"}
    inputs = {k: pack(v) if torch.is_tensor(v) and v.shape == ids.shape else v for k, v in inputs.items()}
    out = model(input_ids=pack(ids), position_ids=(index % length).unsqueeze(0), cu_seq_lens_q=offsets,
                cu_seq_lens_k=offsets, max_length_q=batch["pack_max_len"], max_length_k=batch["pack_max_len"],
                **inputs)

    def unpack(x: torch.Tensor) -> torch.Tensor:  # (1, T) -> (B, L)
        full = x.new_full((bsz * length,), torch.finfo(x.dtype).min)
        return full.index_copy(0, index, x[0]).view(bsz, length)

    start, end = unpack(out.start_logits), unpack(out.end_logits)
    loss = None
    if "start_positions" in batch and "end_positions" in batch:
        loss = qa_loss(start, end, batch["start_positions"], batch["end_positions"])
    return SimpleNamespace(loss=loss, start_logits=start, end_logits=end)
