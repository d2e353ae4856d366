"""Lossless skipping of repeated decoding states (``--early-exit exact``, SPEC §6.4 item 2).

A deterministic step is a function of the row's state ``(x, M, σ)`` and its plan key
``(block, k)``.  So if, within a run of steps with one key, the state after step ``t`` equals the
state after step ``t - p``, the row is periodic with period ``p`` until the key changes: the state
after every later step ``u`` of the run is the state after ``u - p``, and no forward pass is
needed to know it.  ``p = 1`` is a fixed point.  At constant ``k`` the ``uncond`` strategy
re-ranks committed slots by the network's score at their *unmasked* positions, so rows often
alternate between two states (re-mask slot a, commit slot b; re-mask b, commit a) instead of
settling; with ``S ≫ N`` most steps are such repeats.

:class:`CycleSkip` keeps the last ``window + 1`` states of every row (so periods up to
``window`` are found) and says, before each step, which rows can replay it from that ring.
Everything is per row, so whether a row skips never depends on the other rows of its batch.
"""
import torch

_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
             torch.bfloat16: torch.int16}


def _bits(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` reinterpreted as integers, so that equality is bit equality (``-0.0 ≠ 0.0``)."""
    return scores.view(_INT_VIEW[scores.dtype])


class CycleSkip:
    """Per-row ring of past states and the period each row is known to repeat with.

    Use: ``replay = cycles.begin(key)`` before step ``t`` (``key`` ``[R]``, the step's plan key);
    rows in ``replay`` take ``cycles.replayed()`` as their state after the step instead of running
    it; then ``cycles.record(tokens, masked, scores)`` with every row's state after the step.

    Args:
        tokens, masked, scores: ``[R, W]`` the initial state (after step 0).
        window: longest period looked for (1 = fixed points only).
    """

    def __init__(self, tokens: torch.Tensor, masked: torch.Tensor, scores: torch.Tensor, window: int = 8):
        if window < 1:
            raise ValueError(f"the cycle window must be ≥ 1, got {window}")
        self.window = window
        self._score_dtype = scores.dtype
        size = window + 1
        self.tokens = tokens.new_zeros((size,) + tuple(tokens.shape))
        self.masked = masked.new_zeros((size,) + tuple(masked.shape))
        self.bits = _bits(scores).new_zeros((size,) + tuple(scores.shape))
        self._store(0, tokens, masked, scores)
        rows = tokens.size(0)
        self.step = 0
        self.key = None
        self.run = torch.zeros(rows, dtype=torch.long, device=tokens.device)  # steps ≤ t with key_t, consecutive
        self.period = torch.zeros_like(self.run)  # 0 = not known to repeat
        self.runs = torch.zeros_like(self.run)  # constant-key runs begun so far (statistics)

    def _store(self, step, tokens, masked, scores):
        slot = step % (self.window + 1)
        self.tokens[slot] = tokens
        self.masked[slot] = masked
        self.bits[slot] = _bits(scores)

    def begin(self, key: torch.Tensor) -> torch.Tensor:
        """Start the next step with plan keys ``key`` ``[R]``; ``[R]`` bool: rows that may replay it."""
        self.step += 1
        same = torch.zeros_like(key, dtype=torch.bool) if self.key is None else key.eq(self.key)
        self.key = key
        self.run = torch.where(same, self.run + 1, torch.ones_like(self.run))
        self.runs += (~same).long()
        return same & self.period.gt(0)

    def replayed(self):
        """``(tokens, masked, scores)`` ``[R, W]``: each row's state ``period`` steps back (for the
        rows with a period; the others get some stored state, to be ignored)."""
        size = self.window + 1
        slot = (self.step - self.period.clamp(min=1)) % size
        rows = torch.arange(slot.numel(), device=slot.device)
        bits = self.bits[slot, rows]
        return self.tokens[slot, rows], self.masked[slot, rows], bits.view(self._score_dtype)

    def record(self, tokens: torch.Tensor, masked: torch.Tensor, scores: torch.Tensor) -> None:
        """Every row's state after the current step: find its shortest period, then store it."""
        size = self.window + 1
        bits = _bits(scores.to(self._score_dtype))
        same = (self.tokens == tokens).all(-1) & (self.masked == masked).all(-1) & (self.bits == bits).all(-1)
        lag = (self.step - torch.arange(size, device=tokens.device)) % size  # slot j holds the state `lag` steps back
        ok = same & lag.ge(1).unsqueeze(1) & (lag.unsqueeze(1) <= self.run.unsqueeze(0))  # [size, R]
        lags = torch.where(ok, lag.unsqueeze(1).expand_as(ok), torch.full_like(ok, size, dtype=torch.long))
        shortest = lags.min(dim=0).values
        self.period = torch.where(shortest < size, shortest, torch.zeros_like(shortest))
        self._store(self.step, tokens, masked, scores)
