"""Compatibility shims for the ``fairseq-fixed`` 0.12.3.1 fork on recent torch (the only one).

fairseq's checkpoint loading calls ``torch.load`` without ``weights_only``: on torch ≥ 2.6 the
default ``weights_only=True`` cannot unpickle the ``argparse.Namespace``/omegaconf objects of older
fairseq checkpoints (ENVIRONMENT.md B1), and ``weights_only=False`` would let a downloaded file run
code.  We do not patch fairseq's files: instead the ``torch`` name *inside*
``fairseq.checkpoint_utils`` is replaced by a proxy whose ``load`` is
:func:`fairseq_dlm.safe_load.torch_load` (``weights_only=True`` with the allow-list of what fairseq
checkpoints hold; ``--trust-checkpoint`` opts out).  Every other module is untouched.

The checkpoint-*file* shims live in :mod:`fairseq_dlm.checkpoints.files`, installed by
:func:`install` too: atomic copies to ``checkpoint_last.pt``/``checkpoint_best.pt`` (a kill
during a save no longer destroys them), a clear error for a truncated or corrupt checkpoint,
and a resume that falls back, with a warning, to the newest complete checkpoint.

**No abort at exit.** fairseq's ``BufferedIterator`` fills its queue from a *daemon* thread
(``BackgroundConsumer``) that collates batches with torch ops (``--num-workers 0``: all of the
collation).  When training stops at ``--max-update`` mid-epoch the thread is still filling; if it is
inside a torch op when the interpreter finalizes, CPython ends the thread with ``pthread_exit``,
whose forced unwinding through torch's C++ frames calls ``std::terminate``: rc 134, "terminate
called without an active exception" after "done training" (intermittent; frequent under load).
:func:`stop_data_threads`, registered with ``atexit`` (which runs before finalization), lets each
such thread finish its current batch and return.
"""
import atexit
import functools
import logging
import queue
import threading
import time

import torch

logger = logging.getLogger(__name__)

_PATCHED = False


class _TorchProxy:
    """Forwards every attribute to ``torch`` except ``load``."""

    def __init__(self, load):
        self._load = load

    def __getattr__(self, name):
        return self._load if name == "load" else getattr(torch, name)


def install() -> None:
    """Load fairseq's checkpoints through the allow-list of :mod:`fairseq_dlm.safe_load`, and install
    the checkpoint-file shims of :mod:`fairseq_dlm.checkpoints.files` (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import fairseq.checkpoint_utils as checkpoint_utils

    from .checkpoints import files as checkpoint_files

    checkpoint_files.install()

    from .safe_load import torch_load

    checkpoint_utils.torch = _TorchProxy(functools.wraps(torch.load)(torch_load))
    atexit.register(stop_data_threads)
    _PATCHED = True


def stop_data_threads(timeout: float = 60.0) -> int:
    """Stop fairseq's ``BackgroundConsumer`` threads (see the module docstring); how many were stopped.

    Each is told to stop after the batch it is collating (its ``_max_len``), and its queue is drained
    so that neither that batch nor the end marker blocks it; it is then joined."""
    from fairseq.data.iterators import BackgroundConsumer

    stopped = 0
    for thread in threading.enumerate():
        if not isinstance(thread, BackgroundConsumer) or not thread.is_alive():
            continue
        thread._max_len = 0  # `count >= _max_len` after its current put: break, then put the end marker
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                while True:
                    thread._queue.get_nowait()
            except queue.Empty:
                pass
            thread.join(0.01)
        if thread.is_alive():
            logger.warning("a data-loading thread did not stop within %.0f s; the process may abort at exit", timeout)
        else:
            stopped += 1
    return stopped


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
