"""Length buckets: a fixed, short list of padded lengths, so that a run sees a handful of batch shapes (pure numpy).
Compiled steps and CUDA graphs are specialised to one shape each: a multiple of 8 gives up to 48 shapes at 384
tokens, a few buckets a few. The largest bucket always holds ``max_length``.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np

DEFAULT_AUTO_BUCKETS = 4

BucketSpec = Union[str, Sequence[int], None]


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def parse_bucket_spec(spec: BucketSpec, max_length: int) -> Union[int, list[int], None]:
    """``None`` -> None; ``"auto"`` / ``"auto:N"`` -> N (bucket count); a list -> the sorted explicit buckets;
    anything else, or a list whose largest bucket is below ``max_length``, is a ValueError saying why."""
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "auto":
            return DEFAULT_AUTO_BUCKETS
        if text.startswith("auto:") and text[5:].isdigit() and int(text[5:]) >= 1:
            return int(text[5:])
        if text.startswith("[") or "," in text:  # "128,256,384" or "[128, 256, 384]" given as one string
            try:
                spec = [int(x) for x in text.strip("[]").split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"expected 'auto', 'auto:N' or a list of lengths, got {spec!r}") from None
        else:
            raise ValueError(f"expected 'auto', 'auto:N' or a list of lengths, got {spec!r}")
    buckets = sorted({int(b) for b in spec})
    if not buckets or buckets[0] < 1:
        raise ValueError(f"bucket lengths must be >= 1, got {list(spec)}")
    if buckets[-1] < max_length:
        raise ValueError(f"largest bucket {buckets[-1]} < max_length {max_length}: longer features would not fit; "
                         f"add {max_length} to the list")
    return buckets


def padding_cost(lengths: np.ndarray, buckets: Sequence[int]) -> int:
    """Tokens of padding added when each feature is padded to the smallest bucket >= its length."""
    lengths = np.asarray(lengths, dtype=np.int64)
    target = np.asarray(buckets, dtype=np.int64)[np.searchsorted(buckets, lengths, side="left")]
    return int((target - lengths).sum())


def auto_buckets(lengths: np.ndarray, n: int, max_length: int, multiple: int = 8) -> list[int]:
    """The ``n`` buckets (multiples of ``multiple``, the last one covering ``max_length``) with the least padding:
    exact, a dynamic programme over the C <= ``max_length / multiple`` candidate lengths, O(n * C^2)."""
    multiple = max(1, int(multiple))
    top = _round_up(max(max_length, int(np.max(lengths, initial=1))), multiple)
    cands = np.arange(multiple, top + 1, multiple, dtype=np.int64)  # (C,) possible bucket lengths
    lengths = np.asarray(lengths, dtype=np.int64)
    # count[i], total[i]: features (and their summed lengths) whose smallest candidate is cands[i]
    slot = np.searchsorted(cands, lengths, side="left")
    count = np.bincount(slot, minlength=len(cands)).astype(np.float64)
    total = np.bincount(slot, weights=lengths, minlength=len(cands))
    ccount, ctotal = np.concatenate([[0.0], np.cumsum(count)]), np.concatenate([[0.0], np.cumsum(total)])

    def cost(lo: int, hi: int) -> float:  # features in slots lo..hi all padded to cands[hi]
        return (ccount[hi + 1] - ccount[lo]) * cands[hi] - (ctotal[hi + 1] - ctotal[lo])

    n_c = len(cands)
    k_max = min(n, n_c)
    best = np.full((k_max + 1, n_c), np.inf)  # best[k, j]: least cost of slots 0..j with k buckets, the last at j
    back = np.zeros((k_max + 1, n_c), dtype=np.int64)
    for j in range(n_c):
        best[1, j] = cost(0, j)
    for k in range(2, k_max + 1):
        for j in range(k - 1, n_c):
            options = [best[k - 1, i] + cost(i + 1, j) for i in range(k - 2, j)]
            i = int(np.argmin(options))
            best[k, j], back[k, j] = options[i], i + k - 2
    k = int(np.argmin(best[1:, n_c - 1])) + 1  # fewer buckets when more would not reduce the padding
    chosen, j = [], n_c - 1
    while k >= 1:
        chosen.append(int(cands[j]))
        j, k = int(back[k, j]), k - 1
    return sorted(chosen)


def feature_lengths(features) -> np.ndarray:
    """(F,) token count of every feature, read from the Arrow offsets of ``input_ids`` (no Python rows)."""
    import pyarrow.compute as pc

    return pc.list_value_length(features.data.column("input_ids")).to_numpy()


def buckets_for(spec: BucketSpec, features, max_length: int, multiple: int = 8) -> tuple[list[int], str]:
    """The buckets of ``spec`` (not None, see ``parse_bucket_spec``), "auto" chosen from the lengths of ``features``
    (a ``datasets.Dataset``; None: ``max_length`` alone), and one line for the log: the padding they add."""
    parsed = parse_bucket_spec(spec, max_length)
    lengths = feature_lengths(features) if features is not None else np.zeros(0, dtype=np.int64)
    if isinstance(parsed, list):
        buckets = parsed
    elif len(lengths):
        buckets = auto_buckets(lengths, parsed, max_length, multiple)
    else:
        buckets = [_round_up(max_length, max(1, multiple))]
    if not len(lengths):
        return buckets, f"length buckets {buckets}"
    added = padding_cost(lengths, buckets) / len(lengths)
    return buckets, (f"length buckets {buckets}: {added:.1f} padding tokens per feature "
                     f"(features average {lengths.mean():.1f} tokens)")
