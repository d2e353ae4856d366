"""Compatibility shims for the ``fairseq-fixed`` 0.12.3.1 fork on recent torch (the only one).

torch ≥ 2.6 defaults ``torch.load(weights_only=True)``, which cannot unpickle the
``argparse.Namespace``/omegaconf objects inside fairseq checkpoints (ENVIRONMENT.md B1:
``Unsupported global: GLOBAL argparse.Namespace``).  Upstream fairseq fixed this in 2025; the
fork did not.  We do not patch fairseq's files: instead the ``torch`` name *inside*
``fairseq.checkpoint_utils`` is replaced by a proxy whose ``load`` defaults to
``weights_only=False``.  Every other module, and every explicit ``weights_only=`` argument, is
untouched.  Only load checkpoints you trust (pickle can execute code), as with any fairseq
checkpoint.

The checkpoint-*file* shims live in :mod:`fairseq_dlm.compat_checkpoints`, installed by
:func:`install` too: atomic copies to ``checkpoint_last.pt``/``checkpoint_best.pt`` (a kill
during a save no longer destroys them), a clear error for a truncated or corrupt checkpoint,
and a resume that falls back, with a warning, to the newest complete checkpoint.
"""
import functools

import torch

_PATCHED = False


class _TorchProxy:
    """Forwards every attribute to ``torch`` except ``load``."""

    def __init__(self, load):
        self._load = load

    def __getattr__(self, name):
        return self._load if name == "load" else getattr(torch, name)


def install() -> None:
    """Scope the ``weights_only=False`` default to fairseq's own checkpoint loading, and install
    the checkpoint-file shims of :mod:`fairseq_dlm.compat_checkpoints` (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import fairseq.checkpoint_utils as checkpoint_utils

    from . import compat_checkpoints

    compat_checkpoints.install()

    @functools.wraps(torch.load)
    def _load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)

    checkpoint_utils.torch = _TorchProxy(_load)
    _PATCHED = True


def complete_batches(indices, batches, num_tokens_vec, max_tokens=None, max_sentences=None):
    """Add back the examples that fairseq-fixed's compiled ``batch_by_size`` drops.

    With ``required_batch_size_multiple > 1`` the fork's ``data_utils_fast`` silently discards the
    final ``n mod multiple`` examples (e.g. 3 of 3, 4 of 100): validation and ``fairseq-generate``
    would skip references without a word.  This returns ``batches`` plus the missing indices (in
    their original order) as extra batches that respect ``max_tokens`` / ``max_sentences``.

    Args:
        indices: ``[N]`` the ordered, filtered indices handed to ``batch_by_size``.
        batches: its result, a list of index arrays.
        num_tokens_vec: ``[N]`` token counts aligned with ``indices``.
    """
    import numpy as np

    covered = np.concatenate(batches) if len(batches) else np.zeros(0, dtype=np.int64)
    keep = ~np.isin(indices, covered)
    if not keep.any():
        return batches
    missing, sizes = np.asarray(indices)[keep], np.asarray(num_tokens_vec)[keep]
    out, start, longest = list(batches), 0, 0
    for i in range(len(missing)):
        longest_i = max(longest, int(sizes[i]))
        n = i - start + 1
        over_tokens = max_tokens is not None and max_tokens > 0 and longest_i * n > max_tokens
        over_sents = max_sentences is not None and max_sentences > 0 and n > max_sentences
        if (over_tokens or over_sents) and i > start:
            out.append(missing[start:i])
            start, longest_i = i, int(sizes[i])
        longest = longest_i
    out.append(missing[start:])
    return out
