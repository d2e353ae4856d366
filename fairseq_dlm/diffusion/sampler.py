"""The denoising loop, free of fairseq: plans, proposals, the strategy's update, early exit (SPEC §6).

The network is a function ``denoise_fn(tokens, positions, rows, step) -> logp``:

* ``tokens`` ``[r, W]``: the canvases of the rows taking this step,
* ``positions`` ``[r, W]`` bool: the slots whose log-probabilities the step needs,
* ``rows`` ``[r]``: which rows of the batch these are (for a prompt cache),
* ``step``: the global step (1-based),

and returns ``[n, V]`` float log-probabilities at ``positions`` in row-major order (``<mask>`` and
any banned symbol at ``-inf``).  :class:`Sampler` runs every planned step on a
:class:`~fairseq_dlm.diffusion.denoise.DecodeState`; :class:`fairseq_dlm.generator.DiffusionGenerator`
supplies canvases, lengths and the network.
"""
import logging
import time
from typing import Callable, List, Optional, Tuple

import torch

from .blocks import BlockSchedule
from .cycles import CycleSkip
from .denoise import DecodeState
from .rng import RowRandom
from .strategies import Proposal, StepRandom, Strategy

logger = logging.getLogger(__name__)

PROPOSAL = 1  # purpose of the per-row draws that sample proposals (strategies use 2, 3)
DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
StepCallback = Callable[[DecodeState, torch.Tensor], None]


class Sampler:
    """Runs a strategy's steps over a batch of canvases.

    Args:
        strategy: the update rule (:mod:`.strategies`).
        max_iter: ``S``, steps per block.
        block_length: semi-autoregressive blocks of this many slots (0 = one block).
        temperature: 0 = argmax proposals; ``τ > 0`` samples ``ŷ ~ Cat(softmax(logp / τ))``.
        early_exit: ``exact`` (lossless replay of repeated states; deterministic decoding only),
            ``patience`` (a row stops once its prediction is stable for ``exit_patience`` steps) or
            ``none``.
        exit_patience: ``P`` of ``patience``.
        cycle_window: ``exact`` replays states repeating with a period up to this.
    """

    def __init__(self, strategy: Strategy, max_iter: int, block_length: int = 0, temperature: float = 0.0,
                 early_exit: str = "exact", exit_patience: int = 2, cycle_window: int = 8):
        self.strategy, self.max_iter, self.block_length = strategy, max_iter, block_length
        self.temperature = temperature
        self.deterministic = temperature == 0 and strategy.deterministic
        self.exact_exit = early_exit == "exact" and self.deterministic
        self.patience = exit_patience if early_exit == "patience" else 0
        self.cycle_window = cycle_window
        self._warned_long_schedule = False

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def propose(self, logp: torch.Tensor, rng: RowRandom, rows: List[int], counts: List[int], step: int):
        """``(ŷ, ŝ)`` ``[n]``: argmax, or inverse-CDF sampling with one per-row uniform per slot."""
        if not self.sampling:
            scores, tokens = logp.max(dim=-1)
            return tokens, scores
        probs = torch.softmax(logp / self.temperature, dim=-1)
        cdf = probs.cumsum(dim=-1)
        u = rng.uniform(rows, counts, step, PROPOSAL, logp.device).unsqueeze(1) * cdf[:, -1:]
        tokens = torch.searchsorted(cdf, u).squeeze(1).clamp(max=logp.size(1) - 1)
        return tokens, logp.gather(1, tokens.unsqueeze(1)).squeeze(1)

    def run(self, denoise_fn: DenoiseFn, state: DecodeState, rng: RowRandom,
            on_step: Optional[StepCallback] = None) -> Tuple[DecodeState, torch.Tensor]:
        """Every planned step on ``state``; returns ``(state, forward passes per row [R])``.

        ``on_step(state, active)``, if given, is called with the initial state (``active`` None), then
        after every step with the new state and the ``[R]`` bool rows that ran the network at it (a
        live view; it must not modify the tensors).

        With exact early exit a row replays, without a forward pass, every step whose outcome is
        already known: its state repeats one of the last ``cycle_window`` states within a run of
        steps with the same plan key ``(block, k)`` (see :mod:`.cycles`)."""
        strat = self.strategy
        plans = BlockSchedule(state.slots, self.max_iter, self.block_length, strat.schedule)
        used = torch.zeros(state.slots.size(0), dtype=torch.long, device=state.slots.device)
        patience = _Patience(state.tokens, self.patience) if self.patience else None
        cycles = CycleSkip(state.tokens, state.masked, state.scores, self.cycle_window) if self.exact_exit else None
        start = time.perf_counter()
        if on_step is not None:
            on_step(state, None)
        for step in range(1, plans.total_steps + 1):
            plan = plans.plan(step)
            active = plan.valid
            if strat.stops_when_committed:
                active = active & (plan.domain & state.masked).any(dim=1)
            if patience is not None:
                active = active & ~patience.done
            replay = None
            if cycles is not None:
                replay = cycles.begin(plan.key) & active
                active = active & ~replay
            tokens, masked, scores = state.tokens, state.masked, state.scores
            if active.any():
                new, proposal = self._step(denoise_fn, state._replace(history=None), plan, active, rng, step)
                keep = active.unsqueeze(1)
                tokens = torch.where(keep, new.tokens, tokens)
                masked = torch.where(keep, new.masked, masked)
                scores = torch.where(keep, new.scores, scores)
                if patience is not None:  # rows whose prediction settled commit their proposals and stop
                    stop = patience.update(active, torch.where(masked, proposal.tokens, tokens))
                    fill = stop.unsqueeze(1) & masked
                    tokens = torch.where(fill, proposal.tokens, tokens)
                    scores = torch.where(fill, proposal.scores, scores)
                    masked = masked & ~fill
            if replay is not None and replay.any():
                old_tokens, old_masked, old_scores = cycles.replayed()
                back = replay.unsqueeze(1)
                tokens = torch.where(back, old_tokens, tokens)
                masked = torch.where(back, old_masked, masked)
                scores = torch.where(back, old_scores, scores)
            if cycles is not None:
                cycles.record(tokens, masked, scores)
            history = None if state.history is None else state.history + [tokens.clone()]
            state = state._replace(tokens=tokens, masked=masked, scores=scores, step=step, history=history)
            used += active.long()
            if on_step is not None:
                on_step(state, active)
        self._warn_long_schedule(plans, state.slots, used, cycles, time.perf_counter() - start)
        return state, used

    def _step(self, denoise_fn: DenoiseFn, state: DecodeState, plan, active: torch.Tensor, rng: RowRandom,
              step: int) -> Tuple[DecodeState, Proposal]:
        """One step for the ``active`` rows (network on those rows' domain slots only): the new
        state and the proposal (``[R, W]``: every domain slot of the active rows replaced by ``ŷ``)."""
        rows = active.nonzero().squeeze(1)
        sub_tokens, sub_domain = state.tokens[rows], plan.domain[rows]
        logp = denoise_fn(sub_tokens, sub_domain, rows, step)
        y, s = self.propose(logp, rng, rows.tolist(), sub_domain.sum(dim=1).tolist(), step)
        cand_tokens, cand_scores = state.tokens.clone(), torch.zeros_like(state.scores)
        cand_tokens[rows] = sub_tokens.masked_scatter(sub_domain, y)
        cand_scores[rows] = torch.zeros_like(state.scores[rows]).masked_scatter(sub_domain, s.float())
        proposal = Proposal(cand_tokens, cand_scores)
        return self.strategy.step(state, proposal, plan, StepRandom(rng, rows, plan.domain, step)), proposal

    def _warn_long_schedule(self, plans: BlockSchedule, slots: torch.Tensor, used: torch.Tensor,
                            cycles: Optional[CycleSkip], seconds: float) -> None:
        """Once per sampler: say what a schedule much longer than the responses costs (S ≫ N)."""
        longest = int(slots.sum(dim=1).max()) if slots.numel() else 0
        if self._warned_long_schedule or plans.total_steps <= 2 * max(longest, 1):
            return
        self._warned_long_schedule = True
        rows = max(used.numel(), 1)
        passes = used.sum().item() / rows
        if cycles is not None:
            values = f"only {cycles.runs.sum().item() / rows:.1f}"
            note = "exact early exit replayed the steps that repeat a state or a short cycle"
        else:
            values = f"at most {longest + 1}"
            note = "no exact early exit: it is off, patience is used, or the strategy samples"
        logger.warning(
            "--iter-decode-max-iter %d is long for responses of at most %d tokens: k (the slots left masked) "
            "took %s distinct values over a candidate's %d steps, and the other steps can only re-rank as many "
            "committed slots. This batch took %.1f forward passes per candidate (%.0f%% of the steps; %s) and "
            "%.1f s for %d candidates. S ≈ the response length (about %d here) decodes in about N passes.",
            plans.total_steps, longest, values, plans.total_steps, passes, 100 * passes / plans.total_steps, note,
            seconds, used.numel(), longest,
        )


class _Patience:
    """Per-row bookkeeping of ``--early-exit patience P`` (SPEC §6.4 item 2, lossy).

    A row's *prediction* after a step is its canvas with every ``<mask>`` replaced by the step's
    proposal. A row stops once P consecutive steps left the prediction unchanged."""

    def __init__(self, tokens: torch.Tensor, patience: int):
        self.patience = patience
        self.prev = tokens.clone()  # [R, W]; holds <mask>es, which are never proposed
        self.stable = torch.zeros(tokens.size(0), dtype=torch.long, device=tokens.device)  # [R]
        self.done = torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)  # [R]

    def update(self, active: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """Record the ``[R, W]`` predictions of the ``[R]`` active rows; return the rows to stop now."""
        same = (prediction == self.prev).all(dim=1)
        self.stable = torch.where(active, torch.where(same, self.stable + 1, 0), self.stable)
        self.prev = torch.where(active.unsqueeze(1), prediction, self.prev)
        stop = active & (self.stable >= self.patience)
        self.done |= stop
        return stop
