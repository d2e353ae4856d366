"""Candidate reranking by an external fairseq model (``--external-reranker CHECKPOINT``).

Non-autoregressive translation decodes several candidates per source (a length beam, MBR samples)
and must pick one; fairseq's iterative refinement can let an autoregressive model choose
(``--iter-decode-with-external-reranker``).  Here the reranker is any fairseq encoder-decoder
checkpoint trained on the same data folder (fairseq's ``transformer`` with ``--task translation``):
each candidate ``y`` of source ``x`` is scored by its mean teacher-forced log-probability
``(1/(|y|+1)) · Σ_t log p(y_t | y_<t, x)`` over its tokens and ``</s>``, and the best one per example
is kept.  Token ids are shared: the reranker's task reads the same dictionary (the diffusion task
only appends ``<mask>``, which no hypothesis contains).
"""
import logging
from typing import List

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)


def load_reranker(path: str, data: str, trust: bool = False):
    """The model of the fairseq checkpoint ``path``, its task reading the data folder ``data``."""
    from .checkpoints import load_fairseq_model

    models, _ = load_fairseq_model(path, "--external-reranker", {"data": data}, trust=trust,
                                   hint="train the reranker (e.g. --arch transformer) on this data folder")
    model = models[0]
    if not hasattr(model, "encoder") or not hasattr(model, "decoder"):
        raise ConfigError(f"--external-reranker {path}: a {type(model).__name__} is not an encoder-decoder model; "
                          "give an autoregressive translation model (e.g. --arch transformer)")
    logger.info("reranking candidates with %s (%s)", path, type(model).__name__)
    return model


@torch.no_grad()
def rerank_scores(model, src_tokens: torch.Tensor, hypotheses: List[torch.Tensor], pad: int, eos: int) -> List[float]:
    """Mean log-probability of each hypothesis (``[n]`` token tensors, no ``</s>``) given its source.

    Args:
        src_tokens: ``[R, Ls]`` right-padded sources ``[x…, </s>]``, one row per hypothesis.
    """
    if not hypotheses:
        return []
    width = max(h.numel() for h in hypotheses) + 1
    prev = src_tokens.new_full((len(hypotheses), width), pad)
    target = src_tokens.new_full((len(hypotheses), width), pad)
    for r, h in enumerate(hypotheses):
        prev[r, 0] = eos  # an autoregressive decoder starts from </s>
        prev[r, 1:h.numel() + 1] = h
        target[r, :h.numel()] = h
        target[r, h.numel()] = eos
    src_lengths = src_tokens.ne(pad).sum(dim=1)
    device = next(model.parameters()).device
    out = model(src_tokens.to(device), src_lengths.to(device), prev.to(device))
    logp = model.get_normalized_probs(out, log_probs=True).float()  # [R, width, V]
    target = target.to(device)
    picked = logp.gather(2, target.unsqueeze(2)).squeeze(2)
    keep = target.ne(pad)
    return (picked.masked_fill(~keep, 0).sum(dim=1) / keep.sum(dim=1)).tolist()
