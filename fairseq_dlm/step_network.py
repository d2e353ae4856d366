"""The network call of one denoising step: the whole canvas, or the response over a prompt cache.

:class:`StepNetwork` is what :class:`~fairseq_dlm.generator.DiffusionGenerator` asks for logits.
It is the only way decoding reaches a network.  Four modes (see
:mod:`fairseq_dlm.models.prompt_cache` for the attention layouts):

* ``off`` — the backbone over the whole canvas every step (the reference; ``full`` models with
  ``--prompt-cache-refresh 1``, the default, any model with ``--no-prompt-cache``, ensembles);
* ``fixed`` — ``--batch-invariant``: ``off`` through the fixed shapes of
  :mod:`fairseq_dlm.diffusion.fixed_shapes` (full-attention models only);
* ``exact`` — a ``prefix_lm`` model: the prompt's keys/values are computed once per *example* (from
  the length head's pass when the length head is used) and shared by all its length candidates and
  steps; each step runs the backbone over ``[response slots, </s>]`` only.  Same hypotheses as ``off``;
* ``refresh`` — a ``full`` model with ``--prompt-cache-refresh R`` (R ≠ 1): the prompt's keys/values
  are recorded when a row has none yet or when ``(s - 1) % R == 0`` (``R = 0``: only its first
  step), and otherwise reused (stale) while each step runs the response only — an approximation in
  the spirit of Fast-dLLM's prefix cache.  The length candidates of an example share one prompt
  computation: at a refresh the example's first due candidate runs its whole canvas, and the
  prompt keys/values it records serve its other candidates too, which run their response only.
  (Under full attention the prompt's states depend on the canvas, so sharing them is part of the
  approximation; ``R = 1`` stays exact and shares nothing.)
"""
import logging
from typing import Optional, Sequence

import torch

from .diffusion.fixed_shapes import map_fixed_shapes
from .errors import ConfigError

logger = logging.getLogger(__name__)


class StepNetwork:
    """Logits for the active rows of a step.

    Args:
        model: an ``xlmr_diffusion`` model, or any callable ``model(tokens [r, W], positions=[r, W] bool,
            prompt_mask=[r, W] bool) -> [n, V]`` logits (then only ``off`` and ``fixed`` are possible).
        mode: ``off``, ``fixed``, ``exact`` or ``refresh``.
        start: ``[R]`` the first slot column of each candidate row (= 1 + prompt length).
        prompt_mask: ``[R, W]`` bool, the prompt side of each canvas (``<s>`` and the prompt).
        cache: ``exact``: the candidates' :class:`~fairseq_dlm.models.prompt_cache.PromptKV` (``[R]`` rows).
        refresh: ``refresh``: R.
        owner: ``refresh``: ``[R]`` each row's example (its length candidates share a prompt
            computation); ``None``: every row its own.
        pad: the padding index (counts the tokens run; ``fixed``: pads the buckets).
        filler: ``fixed``: the leading tokens of a dummy row (``[<s>, </s>]``).
    """

    def __init__(self, model, mode: str, start: torch.Tensor, prompt_mask: torch.Tensor, cache=None,
                 refresh: int = 1, owner=None, pad: Optional[int] = None, filler: Sequence[int] = ()):
        self.model, self.mode, self.start, self.prompt_mask = model, mode, start, prompt_mask
        self.pad, self.filler = pad, list(filler)
        self.cache, self.refresh = cache, refresh
        self.owner = torch.arange(start.numel(), device=start.device) if owner is None else owner
        self.width = int(start.max()) if start.numel() else 0  # refresh cache: the widest prompt side of any row
        self.fresh = torch.zeros(start.numel(), dtype=torch.bool, device=start.device)  # rows with a cache
        self.forward_tokens = 0  # tokens run through the backbone (a cost measure)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, step: int) -> torch.Tensor:
        """``[n, V]`` logits at ``positions`` of ``tokens`` (``[r, W]``: the canvases of ``rows``)."""
        if self.mode in ("off", "fixed"):
            self.forward_tokens += int(tokens.ne(self.pad).sum()) if self.pad is not None else tokens.numel()
            if self.mode == "fixed":  # outputs at every position of fixed-shape calls, then the ones asked for
                per_row = map_fixed_shapes(tokens, self.pad, self.filler, self.model)  # r × [bucket, V]
                return torch.cat([out[positions[r].nonzero().squeeze(1)] for r, out in enumerate(per_row)])
            return self.model(tokens, positions=positions, prompt_mask=self.prompt_mask[rows])
        if self.mode == "exact":
            return self._cached(tokens, positions, rows, self._rows(rows))
        due = ~self.fresh[rows]
        if self.refresh > 0 and (step - 1) % self.refresh == 0:
            due = torch.ones_like(due)
        if not due.any():
            return self._cached(tokens, positions, rows, self._rows(rows))
        lead = self._leaders(rows, due)
        if lead.all():
            return self._record(tokens, positions, rows)
        # mixed: the leaders run whole (recording), their examples' other due candidates take the
        # leaders' fresh prompt keys/values, and every non-leader runs over its cache; row-major order kept
        out = torch.empty(int(positions.sum()), self.model.output_dim, dtype=torch.float, device=tokens.device)
        slot_row = torch.arange(tokens.size(0), device=tokens.device).unsqueeze(1).expand_as(positions)[positions]
        full, rest = lead.nonzero().squeeze(1), (~lead).nonzero().squeeze(1)
        out[lead[slot_row]] = self._record(tokens[full], positions[full], rows[full]).float()
        follow = due & ~lead
        if follow.any():
            examples = self.owner[rows]
            source = (examples[follow].unsqueeze(1) == examples[full].unsqueeze(0)).int().argmax(dim=1)
            self.cache.assign(rows[follow], self.cache.select(rows[full][source]))
            self.fresh[rows[follow]] = True
        out[~lead[slot_row]] = self._cached(tokens[rest], positions[rest], rows[rest],
                                            self.cache.select(rows[rest])).float()
        return out

    def _leaders(self, rows: torch.Tensor, due: torch.Tensor) -> torch.Tensor:
        """``[r]`` bool: the due rows that run whole — the first due candidate of each example."""
        examples = self.owner[rows]
        order = torch.arange(rows.numel(), device=rows.device)
        earlier = (examples.unsqueeze(1) == examples.unsqueeze(0)) & (order.unsqueeze(0) < order.unsqueeze(1))
        return due & ~(earlier & due.unsqueeze(0)).any(dim=1)

    def _rows(self, rows: torch.Tensor):
        """The cache of ``rows`` (``nonzero`` order); all rows, the common case, without a copy."""
        return self.cache if rows.numel() == self.start.numel() else self.cache.select(rows)

    def _cached(self, tokens, positions, rows, cache):
        logits, count = self.model.forward_cached(tokens, self.start[rows], cache, positions)
        self.forward_tokens += count
        return logits

    def _record(self, tokens, positions, rows):
        """The whole canvas of ``rows``, keeping its prompt keys/values for the later steps."""
        logits, kv = self.model.forward_recording(tokens, positions, self.start[rows],
                                                  self.prompt_mask[rows], width=self.width)
        self.forward_tokens += int(tokens.ne(self.model.pad).sum())
        if self.cache is None:
            self.cache = kv.empty_like(self.start.numel())
        self.cache.assign(rows, kv)
        self.fresh[rows] = True
        return logits


_SAID = set()


def _once(level: int, message: str, *args) -> None:
    """Log ``message`` once per process (the mode is chosen for every batch)."""
    if message not in _SAID:
        _SAID.add(message)
        logger.log(level, message, *args)


def choose_mode(model, options, models_count: int) -> str:
    """``off``, ``fixed``, ``exact`` or ``refresh`` for this model and these
    :class:`~fairseq_dlm.diffusion.options.RuntimeOptions` (logs why a cache is off)."""
    batch_invariant = options.batch_invariant
    if not hasattr(model, "forward_cached"):
        return "fixed" if batch_invariant else "off"
    prefix = bool(model.exact_prompt_cache)  # prefix_lm attention: the prompt's states ignore the response
    if batch_invariant and prefix:
        raise ConfigError("--batch-invariant is not supported with a prefix_lm model")
    if prefix and options.prompt_cache_refresh != 1:
        _once(logging.WARNING, "--prompt-cache-refresh %d is for full-attention models: this prefix_lm model's "
              "prompt cache is exact already (computed once per example); the flag is ignored",
              options.prompt_cache_refresh)
    if models_count > 1 or batch_invariant:
        if prefix or options.prompt_cache_refresh != 1:
            _once(logging.WARNING, "prompt cache off: not supported with %s",
                  "an ensemble" if models_count > 1 else "--batch-invariant")
        return "fixed" if batch_invariant else "off"
    if not options.prompt_cache:
        return "off"
    if prefix:
        return "exact"
    return "off" if options.prompt_cache_refresh == 1 else "refresh"


def prompt_side(src_tokens: torch.Tensor, pad: int, width: int):
    """``(start [R], prompt_mask [R, W])`` of canvases built from ``src_tokens`` ``[R, Ls]`` (rows
    ``[p1..pP, </s>]``): the first response column ``1 + P`` and the prompt side ``[<s>, p1..pP]``."""
    start = src_tokens.ne(pad).sum(dim=1)
    cols = torch.arange(width, device=src_tokens.device).unsqueeze(0)
    return start, cols < start.unsqueeze(1)
