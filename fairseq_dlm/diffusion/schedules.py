"""Decoding schedules: how many response slots remain masked after step ``s`` of ``S`` (SPEC §6.2).

``r_s = cos(π·s / (2S))`` (``cosine``) or ``r_s = 1 - s/S`` (``linear``); ``k_s = floor(N · r_s)``
computed as the official code does (``N`` as float32 times ``r_s``, truncated).  ``k_S = 0``.
Examples: N=8, S=4 -> cosine 7, 5, 3, 0; linear 6, 4, 2, 0.
"""
import math

import torch

SCHEDULES = ("cosine", "linear")


def mask_rate(step: int, max_step: int, schedule: str = "cosine") -> float:
    """``r_s`` for ``step`` in ``1..max_step``."""
    if schedule == "cosine":
        return math.cos(math.pi * step / (2 * max_step))
    if schedule == "linear":
        return 1.0 - step / max_step
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def num_masked_after_step(num_slots: torch.Tensor, step: int, max_step: int, schedule: str = "cosine") -> torch.Tensor:
    """``k_s`` per row: ``[B]`` long from ``num_slots`` ``[B]`` (the row's ``N``)."""
    if step >= max_step:
        return torch.zeros_like(num_slots, dtype=torch.long)
    rate = mask_rate(step, max_step, schedule)
    return (num_slots.float() * rate).long()
