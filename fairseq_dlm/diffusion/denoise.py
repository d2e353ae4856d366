"""One denoising step of the reparameterised sampler and of the ``cmlm`` / ``ar`` baselines (SPEC §6.2).

State per row: canvas ``x``, masked set ``M ⊆ D`` and scores ``σ`` (log-prob at commit time).
Given the network's proposal ``(ŷ, ŝ)`` on the slots ``D`` and the number ``k`` of slots that
must stay masked after the step, the reparameterised step is::

    z   = ŝ on D, +1000 elsewhere            (stochasticX: z += X·r_s·g, g ~ Gumbel(0, 1))
    Low = {i : z_i < sort(z)[k]}             (the k lowest; fewer on ties)
    R   = Low (uncond)  |  Low ∩ {ŷ = x} ∩ {ŝ < σ} (cond)
    (¬M ∩ R) ∪ (M ∩ Low): x ← <mask>, σ ← -inf
    M \\ Low:             x ← ŷ,      σ ← ŝ
    M ← (M ∩ Low) ∪ R
"""
import math
from typing import List, NamedTuple, Optional, Tuple

import torch

FAR = 1000.0


class DecodeState(NamedTuple):
    """Decoding state (all ``[B, W]``); each step returns ``state._replace(...)``."""

    tokens: torch.Tensor  # canvas x
    masked: torch.Tensor  # bool, M
    scores: torch.Tensor  # float, σ
    slots: torch.Tensor  # bool, D
    step: int = 0
    history: Optional[List[torch.Tensor]] = None


def init_state(canvas: torch.Tensor, slots: torch.Tensor, keep_history: bool = False) -> DecodeState:
    """``M = D``, ``σ = 0`` (SPEC §6.1)."""
    scores = torch.zeros(canvas.shape, dtype=torch.float, device=canvas.device)
    return DecodeState(canvas, slots.clone(), scores, slots, 0, [canvas.clone()] if keep_history else None)


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise ``-log(-log(u + 1e-8) + 1e-8)`` from uniforms ``u``."""
    return -torch.log(-torch.log(u + 1e-8) + 1e-8)


def lowest_k(z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[B, W]`` bool: ``z < sort(z)[k]`` per row (``k`` ``[B]``, 0-based order statistic)."""
    cutoff = z.sort(dim=-1).values.gather(1, k.clamp(max=z.size(1) - 1).unsqueeze(1))
    return z < cutoff


def reparam_step(
    state: DecodeState,
    cand_tokens: torch.Tensor,
    cand_scores: torch.Tensor,
    k: torch.Tensor,
    mask_idx: int,
    cond: bool = False,
    noise: Optional[torch.Tensor] = None,
    domain: Optional[torch.Tensor] = None,
) -> DecodeState:
    """One reparameterised step.

    Args:
        cand_tokens, cand_scores: ``[B, W]`` proposal ``ŷ, ŝ`` (read only on the domain).
        k: ``[B]`` domain slots to leave masked after the step.
        noise: ``[B, W]`` already-scaled noise ``X·r_s·g`` for stochastic strategies.
        domain: ``[B, W]`` bool, the slots this step ranks (default ``D``; one block with
            ``--block-length``); masked slots outside it stay masked, committed ones stay.
    """
    x, masked, sigma = state.tokens, state.masked, state.scores
    domain = state.slots if domain is None else domain
    z = torch.where(domain, cand_scores.float(), torch.full_like(sigma, FAR))
    if noise is not None:
        z = z + noise
    low = lowest_k(z, k) & domain
    if cond:
        remask = low & cand_tokens.eq(x) & (cand_scores < sigma)
    else:
        remask = low
    to_mask = (~masked & remask) | (masked & low)
    commit = masked & domain & ~low
    x = torch.where(commit, cand_tokens, x).masked_fill(to_mask, mask_idx)
    sigma = torch.where(commit, cand_scores.float(), sigma).masked_fill(to_mask, float("-inf"))
    masked = (masked & ~domain) | (masked & low) | remask
    return _advance(state, x, masked, sigma)


def cmlm_step(
    state: DecodeState,
    cand_tokens: torch.Tensor,
    cand_scores: torch.Tensor,
    local_step: torch.Tensor,
    local_total: torch.Tensor,
    uniform: torch.Tensor,
    domain: Optional[torch.Tensor] = None,
) -> DecodeState:
    """``cmlm``: each masked slot is unmasked with probability ``1/(S-s+1)`` and takes ``ŷ``.

    ``local_step``/``local_total`` are ``[B]`` (``s``, ``S``); ``uniform`` is ``[B, W]`` U(0,1);
    at ``s = S`` every remaining slot of the domain is unmasked.  Every domain slot's score
    becomes this step's ``ŝ``, committed or not (the official rule, SPEC §11.10: a hypothesis is
    scored by its *last* step's confidences, which decides length-beam selection).
    """
    domain = state.slots if domain is None else domain
    prob = 1.0 / (local_total - local_step + 1).float()
    commit = state.masked & domain & (uniform < prob.unsqueeze(1))
    return _commit_rescored(state, commit, cand_tokens, cand_scores, domain)


def ar_step(
    state: DecodeState,
    cand_tokens: torch.Tensor,
    cand_scores: torch.Tensor,
    local_step: torch.Tensor,
    local_total: torch.Tensor,
    domain: Optional[torch.Tensor] = None,
) -> DecodeState:
    """``ar`` (diagnostics, SPEC §6.2): commit the leftmost masked slot(s), left to right.

    One slot per step while ``S - s + 1 ≥`` the masked slots left (so ``S ≥ N`` is strictly
    left-to-right, one slot per step); with fewer steps than slots, ``ceil(left / (S - s + 1))``
    leftmost slots per step, so that nothing is left masked after step ``S`` (the official code
    leaves ``<mask>`` tokens then).  Scores follow the ``cmlm`` rule: the last step's ``ŝ``.
    """
    domain = state.slots if domain is None else domain
    open_ = state.masked & domain
    left = open_.sum(dim=1)
    steps_left = (local_total - local_step + 1).clamp(min=1)
    take = torch.div(left + steps_left - 1, steps_left, rounding_mode="floor")  # ceil(left / steps_left)
    rank = open_.long().cumsum(dim=1)  # 1 for the leftmost masked slot, 2 for the next, ...
    commit = open_ & (rank <= take.unsqueeze(1))
    return _commit_rescored(state, commit, cand_tokens, cand_scores, domain)


def _commit_rescored(state: DecodeState, commit, cand_tokens, cand_scores, domain) -> DecodeState:
    """``commit`` slots take ``ŷ``; every ``domain`` slot's score becomes this step's ``ŝ`` (cmlm, ar)."""
    x = torch.where(commit, cand_tokens, state.tokens)
    sigma = torch.where(domain, cand_scores.float(), state.scores)
    return _advance(state, x, state.masked & ~commit, sigma)


def threshold_step(
    state: DecodeState,
    cand_tokens: torch.Tensor,
    cand_scores: torch.Tensor,
    k: torch.Tensor,
    threshold: float,
    domain: Optional[torch.Tensor] = None,
) -> DecodeState:
    """Confidence-threshold parallel decoding (SPEC §6.4 item 3), no re-masking.

    Commits every masked domain slot with ``exp(ŝ) ≥ threshold``, and more, most confident
    first, until at most ``k`` remain masked; at least one slot per step while any is masked.
    """
    domain = state.slots if domain is None else domain
    open_ = state.masked & domain
    conf = torch.where(open_, cand_scores.float(), torch.full_like(state.scores, float("-inf")))
    n_open = open_.sum(dim=1)
    need = torch.where(n_open > 0, (n_open - k).clamp(min=1), torch.zeros_like(n_open))
    order = conf.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.size(1), device=order.device).expand_as(order))
    commit = open_ & ((rank < need.unsqueeze(1)) | (conf >= math.log(threshold)))
    x = torch.where(commit, cand_tokens, state.tokens)
    sigma = torch.where(commit, cand_scores.float(), state.scores)
    return _advance(state, x, state.masked & ~commit, sigma)


def _advance(state: DecodeState, x, masked, sigma) -> DecodeState:
    history = state.history
    if history is not None:
        history = history + [x.clone()]
    return state._replace(tokens=x, masked=masked, scores=sigma, step=state.step + 1, history=history)


def finalize(state: DecodeState, special: Tuple[int, ...]) -> List[Tuple[torch.Tensor, torch.Tensor, float]]:
    """Per row ``(tokens, positional_scores, score)``: ``D`` minus ``special`` tokens, mean σ."""
    out = []
    for b in range(state.tokens.size(0)):
        slot = state.slots[b]
        toks, sc = state.tokens[b][slot], state.scores[b][slot]
        keep = torch.ones_like(toks, dtype=torch.bool)
        for sym in special:
            keep &= toks.ne(sym)
        toks, sc = toks[keep], sc[keep]
        score = sc.mean().item() if toks.numel() > 0 else float("-inf")
        out.append((toks, sc, score))
    return out
