"""Length classes and length-beam candidates (SPEC §5, §6.1, §6.4 item 5).

The length head predicts one class per possible response length: class ``c`` ⇔ ``|y| = c + 1``
(target ``max(|y| - 1, 0)``).  For decoding, the top-``k`` classes of each example give
candidate lengths ``L_b = idx_b + 1``, capped at ``max_len`` (the positions left after the
prompt); duplicates created by the cap are dropped, keeping the more probable one.
"""
from typing import List, Tuple

import torch


def length_targets(response_lengths: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B]`` class targets ``clamp(|y| - 1, 0, C - 1)``."""
    return (response_lengths - 1).clamp(min=0, max=num_classes - 1)


def candidate_lengths(
    length_logits: torch.Tensor, beam: int, max_len: torch.Tensor, dedupe: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-``beam`` lengths per example, capped, and de-duplicated when ``dedupe`` (deterministic
    decoding gives equal lengths equal hypotheses; sampled ones differ, so they are kept: SPEC §5).

    Args:
        length_logits: ``[B, C]``.
        beam: candidates per example (``≤ C``).
        max_len: ``[B]`` longest response that fits after each prompt (``≥ 1``).
    Returns:
        ``(lengths, owner)``: ``[R]`` candidate lengths and ``[R]`` the example each belongs to;
        an example's candidates are contiguous, most probable first.
    """
    if beam > length_logits.size(1):
        raise ValueError(f"length beam {beam} is larger than the {length_logits.size(1)} length classes")
    top = length_logits.topk(beam, dim=1).indices + 1  # [B, beam]
    capped = torch.minimum(top, max_len.unsqueeze(1))
    lengths: List[int] = []
    owner: List[int] = []
    for b, row in enumerate(capped.tolist()):
        seen = set()
        for length in row:
            if not dedupe or length not in seen:
                seen.add(length)
                lengths.append(length)
                owner.append(b)
    device = length_logits.device
    return torch.tensor(lengths, dtype=torch.long, device=device), torch.tensor(owner, dtype=torch.long, device=device)


def select_best(scores: List[float], owner: List[int], num_examples: int) -> List[int]:
    """Index of the best candidate row of each example: highest score, ties to the lowest row."""
    best = [-1] * num_examples
    for row, (score, b) in enumerate(zip(scores, owner)):
        if best[b] < 0 or score > scores[best[b]]:
            best[b] = row
    return best
