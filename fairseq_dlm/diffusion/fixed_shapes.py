"""Fixed-shape forward passes for ``--batch-invariant`` decoding (SPEC §6.4 item 1).

Per-row decoding already makes every hypothesis a function of its own example, but a float32 or
bf16 kernel may still round differently when the *shape* of its input changes (another batch
size, another padded width, another number of requested logits). Here every network call sees one
of a few fixed shapes that depend only on each row's own length:

* rows are grouped by ``bucket = ⌈n / B⌉ · B`` (``n`` = the row's non-pad tokens, ``B`` = 64),
* each group is cut into micro-batches of exactly ``M`` rows (16), topped up with dummy rows
  ``[<s>, </s>, <pad>…]``,
* callers ask for outputs at every position and pick what they need afterwards.

A row's output then depends on its tokens and ``(B, M)`` only: not on which other rows share its
call, their number or order, or the width of the batch it came in.
"""
from typing import Callable, List

import torch

BUCKET = 64
MICRO_BATCH = 16


def row_lengths(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """``[R]`` index of each row's last non-pad token + 1 (rows are right-padded)."""
    width = tokens.size(1)
    idx = torch.arange(1, width + 1, device=tokens.device).expand_as(tokens)
    return torch.where(tokens.ne(pad), idx, torch.zeros_like(idx)).max(dim=1).values


def map_fixed_shapes(
    tokens: torch.Tensor,
    pad: int,
    filler: List[int],
    fn: Callable[[torch.Tensor], torch.Tensor],
    bucket: int = BUCKET,
    micro_batch: int = MICRO_BATCH,
) -> List[torch.Tensor]:
    """Apply ``fn`` to the rows of ``tokens`` through fixed-shape calls.

    Args:
        tokens: ``[R, W]`` right-padded rows.
        pad: the padding index.
        filler: the leading tokens of a dummy row (e.g. ``[<s>, </s>]``), padded to the bucket.
        fn: ``[M, bucket]`` tokens → a tensor whose first dimension is ``M`` (one output per row).
    Returns:
        ``R`` tensors, ``fn``'s output for each row, in the order of ``tokens``.
    """
    if bucket < len(filler) or micro_batch < 1:
        raise ValueError(f"fixed shapes need bucket ≥ {len(filler)} and micro_batch ≥ 1")
    lengths = row_lengths(tokens, pad).clamp(min=1)
    buckets = ((lengths + bucket - 1) // bucket) * bucket
    out: List[torch.Tensor] = [None] * tokens.size(0)
    for width in sorted(set(buckets.tolist())):
        rows = (buckets == width).nonzero().squeeze(1).tolist()
        for lo in range(0, len(rows), micro_batch):
            chunk = rows[lo:lo + micro_batch]
            batch = tokens.new_full((micro_batch, width), pad)
            keep = min(width, tokens.size(1))
            batch[: len(chunk), :keep] = tokens[chunk, :keep]
            batch[len(chunk):, : len(filler)] = tokens.new_tensor(filler)  # dummy rows
            result = fn(batch)
            for i, r in enumerate(chunk):
                out[r] = result[i]
    return out
