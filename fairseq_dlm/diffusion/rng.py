"""Per-row random streams, so random draws never depend on batch composition (SPEC §6.4 item 1).

Every draw for row ``r`` at step ``s`` comes from a generator seeded by
``(seed, example id, candidate, step, purpose)`` and has the row's own length, so a row's
hypothesis is the same whether it is decoded alone, in a batch of 64, or after shuffling.
"""
from typing import List

import torch

_MOD = 2**61 - 1


def mix_seed(*parts: int) -> int:
    """A deterministic 61-bit seed from integers (no Python ``hash`` randomisation)."""
    h = 1469598103934665603
    for p in parts:
        h = (h * 1099511628211 + (int(p) & 0xFFFFFFFFFFFF) + 0x9E3779B97F4A7C15) % _MOD
    return h


class RowRandom:
    """Uniform draws per row.

    Args:
        seed: the run's ``--seed``.
        example_ids: ``[R]`` dataset id of each row's example.
        candidates: ``[R]`` the row's candidate number within its example.
    """

    def __init__(self, seed: int, example_ids: List[int], candidates: List[int]):
        self.seed, self.ids, self.cands = seed, list(example_ids), list(candidates)

    def uniform(self, rows: List[int], counts: List[int], step: int, purpose: int, device) -> torch.Tensor:
        """``[sum(counts)]`` U(0,1) values: ``counts[i]`` for ``rows[i]``, concatenated in order."""
        out = []
        for r, n in zip(rows, counts):
            g = torch.Generator(device=device)
            g.manual_seed(mix_seed(self.seed, self.ids[r], self.cands[r], step, purpose))
            out.append(torch.rand(int(n), generator=g, device=device))
        if not out:
            return torch.zeros(0, device=device)
        return torch.cat(out)
