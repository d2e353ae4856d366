"""Sequence layouts (SPEC §2.1, §6.1).

Training sequence (one per example, right-padded)::

    src = [p1..pP, </s>]   tgt = [y1..yM, </s>]     (as binarized by fairseq-preprocess)
    x   = [<s>, p1..pP, y1..yM, </s>]               prompt_mask[j] = j < 1+P

Decoding canvas with ``L`` response slots::

    [<s>, p1..pP, <mask>×L, </s>, <pad>…]           slots D = [1+P, 1+P+L)
"""
from typing import Tuple

import torch


def concat_prompt_response(
    src: torch.Tensor, tgt: torch.Tensor, bos: int
) -> Tuple[torch.Tensor, int]:
    """One example: ``x = [<s>] ++ src[:-1] ++ tgt`` (1-D tensors); returns ``(x, 1+P)``."""
    x = torch.cat([src.new_tensor([bos]), src[:-1], tgt])
    return x, src.numel()


def build_canvas(
    src_tokens: torch.Tensor,
    lengths: torch.Tensor,
    pad: int,
    bos: int,
    eos: int,
    mask: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Canvases for a batch of prompts.

    Args:
        src_tokens: ``[B, Ls]`` right-padded ``[p1..pP, </s>]`` rows.
        lengths: ``[B]`` long, number of response slots ``L`` per row (≥ 0).
    Returns:
        ``(canvas, slots)``: ``[B, W]`` long and ``[B, W]`` bool where
        ``W = max_b(1 + P_b + L_b + 1)``; ``slots`` marks ``D``.
    """
    bsz, src_w = src_tokens.shape
    p1 = src_tokens.ne(pad).sum(dim=1)  # 1 + P (the </s> of src becomes the <s> slot)
    end = p1 + lengths  # index of the final </s>
    width = int(end.max().item()) + 1 if bsz > 0 else 1
    pos = torch.arange(width, device=src_tokens.device).unsqueeze(0).expand(bsz, width)
    gathered = src_tokens.gather(1, (pos - 1).clamp(0, src_w - 1))
    canvas = torch.full((bsz, width), pad, dtype=src_tokens.dtype, device=src_tokens.device)
    prompt = (pos >= 1) & (pos < p1.unsqueeze(1))
    slots = (pos >= p1.unsqueeze(1)) & (pos < end.unsqueeze(1))
    canvas = torch.where(prompt, gathered, canvas)
    canvas = canvas.masked_fill(pos == 0, bos).masked_fill(slots, mask)
    canvas = canvas.masked_fill(pos == end.unsqueeze(1), eos)
    return canvas, slots


def prompt_mask_from_lengths(prompt_len: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, width]`` bool, True where ``j < prompt_len[b]`` (``prompt_len = 1 + P``)."""
    pos = torch.arange(width, device=prompt_len.device).unsqueeze(0)
    return pos < prompt_len.unsqueeze(1)


def prompt_tokens(src_tokens: torch.Tensor, pad: int, bos: int, eos: int) -> torch.Tensor:
    """``[B, Ls]`` rows ``[p1..pP, </s>]`` → ``[B, Ls]`` rows ``[<s>, p1..pP]`` (the length head's input)."""
    shifted = torch.cat([src_tokens.new_full((src_tokens.size(0), 1), bos), src_tokens[:, :-1]], dim=1)
    return shifted.masked_fill(shifted.eq(eos), pad)
