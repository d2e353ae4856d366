"""A Monte-Carlo estimate of the masked-diffusion evidence lower bound of a continuation given a
context: ``log p(y | x) ≥ E_l [ (C / l) Σ_{i ∈ M_l} log p_θ(y_i | x, y_{¬M_l}) ]``, where ``C`` is
the continuation's length, ``l ~ U{1..C}`` the number of masked slots and ``M_l`` a uniformly random
set of ``l`` slots (LLaDA's lower-variance form of the bound; SPEC §4's loss at ``t = l / C``).
Only the continuation is masked; the context is always seen.

The draws come from ``torch.Generator`` streams seeded by ``(seed, key, sample)``: every choice of a
multiple-choice question (the same ``key``, e.g. the context) gets the same mask ratios and the same
slot ranking, so choices are compared under the same noise.
"""
import hashlib
import math
from typing import List, Tuple

import torch


def stream_seed(seed: int, key: str, sample: int) -> int:
    """A 63-bit seed for draw ``sample`` of ``key`` (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256(f"{seed}\0{key}\0{sample}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def mask_draws(length: int, samples: int, seed: int, key: str) -> List[Tuple[int, torch.Tensor]]:
    """``[(l, ranks [length])] * samples``: mask the ``l`` slots of lowest rank.  ``l = ceil(u · length)``
    and the ranks come from one uniform per slot position, so two continuations of one key share
    ``u`` and the order of their common positions."""
    out = []
    for k in range(samples):
        g = torch.Generator().manual_seed(stream_seed(seed, key, k))
        u = float(torch.rand((), generator=g))
        scores = torch.rand(max(length, 1), generator=g)[:length]
        out.append((max(1, min(length, math.ceil(u * length))), scores.argsort().argsort()))
    return out


@torch.no_grad()
def continuation_elbo(model, prompt: torch.Tensor, continuation: torch.Tensor, draws, mask: int, bos: int,
                      eos: int) -> Tuple[float, bool]:
    """``(bound, greedy)`` for one continuation.

    Args:
        model: a diffusion model (``model(tokens, positions, prompt_mask) -> [n, V]`` logits).
        prompt: ``[P]`` context ids (no ``<s>``/``</s>``); continuation: ``[C]`` ids, ``C ≥ 1``.
        draws: :func:`mask_draws` for this continuation's length.
    Returns:
        the mean over draws of ``(C / l) Σ log p`` over the masked slots, and whether the
        continuation is every slot's argmax with the whole continuation masked (one-step greedy).

    Draws that mask the same slots are one forward row (a one-slot continuation, e.g. a choice
    letter, has a single pattern: its bound is exact, ``log p(y | x)``, whatever the draws).
    """
    P, C = prompt.numel(), continuation.numel()
    row = torch.cat([prompt.new_tensor([bos]), prompt, continuation, prompt.new_tensor([eos])])
    patterns: dict = {}  # masked slots -> row of the batch
    which = []  # for the all-masked row (greedy check) and each draw: its batch row
    for l, ranks in [(C, torch.arange(C))] + list(draws):
        which.append(patterns.setdefault(tuple((ranks < l).tolist()), len(patterns)))
    masks = torch.zeros(len(patterns), row.numel(), dtype=torch.bool)
    for slots, i in patterns.items():
        masks[i, P + 1:P + 1 + C] = torch.tensor(slots)
    tokens = row.unsqueeze(0).expand_as(masks).masked_fill(masks, mask)
    prompt_mask = torch.zeros_like(masks)
    prompt_mask[:, :P + 1] = True
    device = next(model.parameters()).device
    logits = model(tokens.to(device), positions=masks.to(device), prompt_mask=prompt_mask.to(device))
    lprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    targets = row.unsqueeze(0).expand_as(masks)[masks]
    picked = lprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
    counts = masks.sum(dim=1).tolist()
    sums = [float(chunk.sum()) for chunk in picked.split(counts)]
    full = which[0]  # every slot masked
    greedy = bool((lprobs.split(counts)[full].argmax(dim=-1) == targets.split(counts)[full]).all())
    bounds = [C / l * sums[i] for i, (l, _) in zip(which[1:], draws)]
    return sum(bounds) / len(bounds), greedy
