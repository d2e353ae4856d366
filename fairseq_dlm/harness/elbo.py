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
    """
    P, C = prompt.numel(), continuation.numel()
    row = torch.cat([prompt.new_tensor([bos]), prompt, continuation, prompt.new_tensor([eos])])
    canvases, masks = [], []
    for l, ranks in [(C, torch.arange(C))] + list(draws):  # first row: everything masked (greedy check)
        masked = torch.zeros(row.numel(), dtype=torch.bool)
        masked[P + 1:P + 1 + C] = ranks < l
        canvases.append(row.masked_fill(masked, mask))
        masks.append(masked)
    tokens, positions = torch.stack(canvases), torch.stack(masks)
    prompt_mask = torch.zeros_like(positions)
    prompt_mask[:, :P + 1] = True
    device = next(model.parameters()).device
    logits = model(tokens.to(device), positions=positions.to(device), prompt_mask=prompt_mask.to(device))
    lprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    targets = row.unsqueeze(0).expand_as(tokens)[positions]
    picked = lprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
    per_row = positions.sum(dim=1).tolist()
    chunks = picked.split(per_row)
    greedy = bool((lprobs[:per_row[0]].argmax(dim=-1) == targets[:per_row[0]]).all())
    bounds = [C / l * float(chunk.sum()) for chunk, (l, _) in zip(chunks[1:], draws)]
    return sum(bounds) / len(bounds), greedy

