"""Absorbing-state forward process with RDM's *coupled* two-timestep sampling (SPEC §4.1).

At timestep ``t`` of ``T`` every maskable token is replaced by ``<mask>`` independently with
probability ``t / T``.  Coupled sampling draws two timesteps per example, ``a = max(t1, t2)``
and ``b = min(t1, t2)``, and builds *nested* masks ``M_b ⊆ M_a``::

    M_a = {i maskable : u_i < a/T}
    M_b = {i ∈ M_a : u'_i ≥ (a-b)/a}     if a != b    (so P(i ∈ M_b) = a/T · b/a = b/T)
    M_b = fresh draw at rate a/T          if a == b
"""
import math
from typing import Optional, Sequence, Tuple

import torch


def maskable_positions(
    tokens: torch.Tensor, prompt_mask: torch.Tensor, pad: int, eos: int, mask_eos: bool = False
) -> torch.Tensor:
    """Positions the forward process may mask (SPEC §4.2).

    Args:
        tokens: ``[B, L]`` concatenated ``[<s>, prompt…, response…, </s>, <pad>…]``.
        prompt_mask: ``[B, L]`` bool, True on ``<s>`` and prompt positions.
        mask_eos: parity mode -- the final ``</s>`` is maskable, as in the official code.
    Returns:
        ``[B, L]`` bool: not prompt, not pad (and not ``</s>`` unless ``mask_eos``).
    """
    maskable = ~prompt_mask & tokens.ne(pad)
    if not mask_eos:
        maskable &= tokens.ne(eos)
    return maskable


def sample_timesteps(
    bsz: int, num_timesteps: int, device=None, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw ``t1, t2 ~ U{1..T}`` i.i.d. and return ``(a, b) = (max, min)``, each ``[B]`` long."""
    t = torch.randint(1, num_timesteps + 1, (2, bsz), device=device, generator=generator)
    return t.max(dim=0).values, t.min(dim=0).values


def fixed_timesteps(bsz: int, num_timesteps: int, ratio: float, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``--mask-ratio-sampler fixed<R>``: plain MLM, ``t1 = t2 = ceil(R·T)``."""
    t = min(max(int(math.ceil(ratio * num_timesteps)), 1), num_timesteps)
    full = torch.full((bsz,), t, dtype=torch.long, device=device)
    return full, full.clone()


def per_example_draws(
    lengths: Sequence[int], ids: Sequence[int], width: int, num_timesteps: int, seed: int, device=None
) -> Tuple[torch.Tensor, torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Validation noise that depends on each example alone, not on its batch.

    Row ``i`` draws, from its own generator seeded ``seed + ids[i]``, its timestep pair and the three
    uniforms of its first ``lengths[i]`` positions (the rest of the ``width`` columns are 1: never
    masked).  Returns ``(t_a [B], t_b [B], (u, u_keep, u_fresh) each [B, width])`` for
    :func:`coupled_masks`."""
    t = torch.empty(2, len(lengths), dtype=torch.long)
    u = torch.ones(3, len(lengths), width)
    for i, (n, example) in enumerate(zip(lengths, ids)):
        g = torch.Generator().manual_seed(seed + int(example))
        t[:, i] = torch.randint(1, num_timesteps + 1, (2,), generator=g)
        u[:, i, :n] = torch.rand(3, n, generator=g)
    t, u = t.to(device), u.to(device)
    return t.max(dim=0).values, t.min(dim=0).values, (u[0], u[1], u[2])


def coupled_masks(
    maskable: torch.Tensor,
    t_a: torch.Tensor,
    t_b: torch.Tensor,
    num_timesteps: int,
    generator: Optional[torch.Generator] = None,
    uniforms: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nested masks for the coupled pair of timesteps (``t_a ≥ t_b``).

    Args:
        maskable: ``[B, L]`` bool.
        t_a, t_b: ``[B]`` long, ``1 ≤ t_b ≤ t_a ≤ T``.
        uniforms: ``(u, u_keep, u_fresh)``, each ``[B, L]`` U(0,1), drawn here when not given
            (see :func:`per_example_draws`).
    Returns:
        ``(mask_a, mask_b)``, each ``[B, L]`` bool, ``mask_b ⊆ mask_a`` when ``t_a != t_b``,
        both ``⊆ maskable``; marginal rates ``t_a/T`` and ``t_b/T``.
    """
    shape, device = maskable.shape, maskable.device
    if uniforms is None:
        uniforms = tuple(torch.rand(shape, device=device, generator=generator) for _ in range(3))
    u, u_keep, u_fresh = uniforms
    rate_a = (t_a.double() / num_timesteps).unsqueeze(1)
    mask_a = (u < rate_a) & maskable
    drop = ((t_a - t_b).double() / t_a.double()).unsqueeze(1)
    nested = mask_a & (u_keep >= drop)
    fresh = (u_fresh < rate_a) & maskable
    same = (t_a == t_b).unsqueeze(1)
    mask_b = torch.where(same, fresh, nested)
    return mask_a, mask_b


def apply_mask(tokens: torch.Tensor, mask: torch.Tensor, mask_idx: int) -> torch.Tensor:
    """``x_t``: ``tokens`` with ``<mask>`` at ``mask`` (``[B, L]``), a new tensor."""
    return tokens.masked_fill(mask, mask_idx)
