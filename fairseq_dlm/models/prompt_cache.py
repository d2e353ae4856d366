"""Attention layouts and the prompt key/value cache of the diffusion backbone (issue 12).

Sequences are ``[<s>, prompt…, response…, </s>, <pad>…]``; the *prompt side* is ``<s>`` and the
prompt (``prompt_mask``), everything after it the *response side* (slots and the final ``</s>``).

* ``full`` attention: every non-pad token attends to every non-pad token (XLM-R as pretrained).
* ``prefix_lm``: prompt-side queries attend to prompt-side keys only; response-side queries attend
  to everything.  The prompt's hidden states, hence its keys and values at every layer, then do
  not depend on the response: they are computed **once** per example and reused by every denoising
  step and every length candidate (:class:`PromptKV`), each step running the backbone over the
  response tokens only.  The result is exactly that of the full-sequence forward pass.
* With ``full`` attention the same cache is an approximation (the prompt's states do depend on
  the canvas): :class:`~fairseq_dlm.generator.DiffusionGenerator` refreshes it every R steps.

The cache plugs into HuggingFace's own attention code: the XLM-R self-attention calls
``cache.update(key, value, layer_idx)`` and attends to what it returns, so :class:`PromptKV`
returns the cached prompt keys/values concatenated in front of the response's (and
:class:`RecordKV` stores them during the prompt pass).  Position ids are always explicit: the
slot ``c`` of a row has position ``pad + 1 + c``, whatever tokens precede it (a committed
``<pad>`` inside a response no longer shifts later positions, SPEC §3).
"""
from typing import List, Optional, Tuple

import torch

ATTENTION_STRATEGIES = ("full", "prefix_lm")


def position_ids(tokens: torch.Tensor, pad: int, start: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[B, L]`` positions ``pad + 1 + start + c`` for the ``c``-th column, ``pad`` at ``<pad>`` columns
    past the row's last non-pad token (right padding).  ``start`` ``[B]``: the row's first column's
    offset in its full sequence (0 for a whole sequence)."""
    width = tokens.size(1)
    cols = torch.arange(width, device=tokens.device).unsqueeze(0)
    if start is not None:
        cols = cols + start.unsqueeze(1)
    length = tokens.ne(pad).long().cumsum(dim=1).argmax(dim=1, keepdim=True)  # last non-pad column
    live = torch.arange(width, device=tokens.device).unsqueeze(0) <= length
    return torch.where(live, cols + pad + 1, torch.full_like(cols, pad))


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, Q, K]`` bool (True = may attend) → ``[B, 1, Q, K]`` additive float mask for HF attention."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    low = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, low).unsqueeze(1)


def prefix_lm_allowed(key_valid: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L, L]`` bool: query ``i`` may attend key ``j`` iff ``j`` is not padding and (``i`` is on the
    response side or ``j`` on the prompt side).  ``key_valid``, ``prompt_mask``: ``[B, L]`` bool."""
    response_query = ~prompt_mask.unsqueeze(2)  # [B, L, 1]
    return key_valid.unsqueeze(1) & (response_query | prompt_mask.unsqueeze(1))


class RecordKV:
    """A transformers ``Cache`` stand-in that records every layer's keys/values of one forward pass."""

    def __init__(self):
        self.keys: List[torch.Tensor] = []
        self.values: List[torch.Tensor] = []

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys.append(key_states)
        self.values.append(value_states)
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


class PromptKV:
    """Per-layer prompt keys/values ``[B, heads, P, d]`` and their validity ``[B, P]``.

    As a transformers ``Cache`` stand-in, ``update`` returns ``cat(prompt, new)`` along the sequence
    axis without storing ``new``: the response's keys/values are recomputed every step."""

    def __init__(self, keys: List[torch.Tensor], values: List[torch.Tensor], valid: torch.Tensor):
        self.keys, self.values, self.valid = keys, values, valid

    @classmethod
    def from_record(cls, record: RecordKV, valid: torch.Tensor) -> "PromptKV":
        """The keys/values of a recorded pass over prompt rows; ``valid`` ``[B, P]``: their non-pad positions."""
        return cls(record.keys, record.values, valid)

    def select(self, rows: torch.Tensor) -> "PromptKV":
        """The cache of ``rows`` (``[R]`` long: e.g. each candidate's example)."""
        return PromptKV([k.index_select(0, rows) for k in self.keys], [v.index_select(0, rows) for v in self.values],
                        self.valid.index_select(0, rows))

    def empty_like(self, rows: int) -> "PromptKV":
        """A cache of ``rows`` rows, this one's shapes, all positions invalid (to be :meth:`assign`-ed)."""
        return PromptKV([k.new_zeros((rows, *k.shape[1:])) for k in self.keys],
                        [v.new_zeros((rows, *v.shape[1:])) for v in self.values],
                        self.valid.new_zeros((rows, self.valid.size(1))))

    def assign(self, rows: torch.Tensor, other: "PromptKV") -> None:
        """Overwrite ``rows`` (``[r]`` long) with ``other``'s ``r`` rows (same width)."""
        for mine, theirs in zip(self.keys + self.values, other.keys + other.values):
            mine[rows] = theirs.to(mine.dtype)
        self.valid[rows] = other.valid

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys = torch.cat([self.keys[layer_idx].to(key_states.dtype), key_states], dim=2)
        values = torch.cat([self.values[layer_idx].to(value_states.dtype), value_states], dim=2)
        return keys, values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.valid.size(1)


def response_rows(tokens: torch.Tensor, start: torch.Tensor, pad: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(rows [B, W], columns [B, W])``: each row's tokens from column ``start[b]`` on, left-aligned
    and right-padded with ``pad``; ``columns`` are their indices in ``tokens`` (``-1`` at padding)."""
    width = tokens.size(1)
    last = tokens.ne(pad).long().cumsum(dim=1).argmax(dim=1)  # last non-pad column (a committed <pad> may precede it)
    lengths = last + 1 - start
    w = int(lengths.max()) if lengths.numel() else 0
    offsets = torch.arange(w, device=tokens.device).unsqueeze(0)
    columns = start.unsqueeze(1) + offsets
    live = offsets < lengths.unsqueeze(1)
    gathered = tokens.gather(1, columns.clamp(max=width - 1))
    return torch.where(live, gathered, torch.full_like(gathered, pad)), torch.where(live, columns, -1)
