"""Per-row step plans: which slots a step ranks, how many stay masked, and when a row is done.

Standard decoding is one block: every step ranks all of ``D`` and leaves
``k_s = floor(N · r_s)`` masked.  Semi-autoregressive decoding (``--block-length B``, SPEC §6.4
item 4) splits ``D`` into ``n = ceil(N / B)`` blocks decoded left to right; block ``j`` gets
``max(1, floor(S/n) + [j < S mod n])`` steps and ranks only its own ``N_j`` slots, so a row takes
``max(S, n)`` steps in all.  Every quantity is per row, so a row's plan never depends on the
other rows of its batch.
"""
import functools
from typing import NamedTuple

import torch

from .schedules import num_masked_after_step


class StepPlan(NamedTuple):
    """What global step ``g`` does to each of the ``R`` rows."""

    domain: torch.Tensor  # [R, W] bool: slots ranked (and decoded) at this step
    k: torch.Tensor  # [R] long: slots of the domain left masked after the step
    local_step: torch.Tensor  # [R] long: step within the block (1-based)
    local_total: torch.Tensor  # [R] long: steps the block gets
    valid: torch.Tensor  # [R] bool: the row still has steps to take
    key: torch.Tensor  # [R] long: (block, k) identity, for lossless early exit


@functools.lru_cache(maxsize=4096)
def _ks(num_slots: int, steps: int, schedule: str):
    """``k_s`` for ``s = 1..steps`` of one block (the schedule's own formula; cached, as every
    batch asks for the same few block sizes)."""
    n = torch.tensor([num_slots])
    return tuple(int(num_masked_after_step(n, s, steps, schedule)) for s in range(1, steps + 1))


class BlockSchedule:
    """Plans for every global step of a batch of canvases.

    Args:
        slots: ``[R, W]`` bool, the response slots ``D`` of each row.
        max_step: ``S``.
        block_length: ``B``; 0 (or ``≥ N``) decodes the whole response as one block.
        schedule: ``cosine`` or ``linear`` (how ``k`` falls within a block).
    """

    def __init__(self, slots: torch.Tensor, max_step: int, block_length: int = 0, schedule: str = "cosine"):
        self.slots = slots
        num = slots.sum(dim=1).tolist()
        rows = []
        for n_slots in num:
            size = block_length if 0 < block_length < n_slots else max(n_slots, 1)
            n_blocks = -(-n_slots // size) if n_slots > 0 else 0
            plan = []
            for j in range(n_blocks):
                steps = max(1, max_step // n_blocks + (1 if j < max_step % n_blocks else 0))
                n_j = min(size, n_slots - j * size)
                ks = _ks(n_j, steps, schedule)
                for s in range(1, steps + 1):
                    plan.append((j * size, j * size + n_j, ks[s - 1], s, steps, j))
            rows.append(plan)
        self.total_steps = max((len(p) for p in rows), default=0)
        pad = (0, 0, 0, 1, 1, -1)
        table = [[p[g] if g < len(p) else pad for p in rows] for g in range(self.total_steps)]
        self._table = torch.tensor(table, dtype=torch.long).reshape(self.total_steps, len(rows), 6)
        self._rank = slots.long().cumsum(dim=1) - 1  # position of each slot within D

    def plan(self, step: int) -> StepPlan:
        """The plan of global step ``step`` (1-based)."""
        t = self._table[step - 1].to(self.slots.device)
        start, end, k, s, total, block = t.unbind(dim=1)
        valid = block.ge(0)
        rank = self._rank
        domain = self.slots & (rank >= start.unsqueeze(1)) & (rank < end.unsqueeze(1)) & valid.unsqueeze(1)
        key = block * (self.slots.size(1) + 1) + k
        return StepPlan(domain, k, s, total, valid, key)
