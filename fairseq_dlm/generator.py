"""Parallel iterative decoding for ``fairseq-generate --task diffusion_lm`` (SPEC §6).

The generator builds canvases ``[<s>, prompt…, <mask>×L, </s>]`` (``L`` from the reference with
``--oracle-length``, else the top ``--iter-decode-with-beam`` lengths of the length head), runs
the denoising steps over the response slots, and keeps each example's candidate with the best
mean log-probability.  The math lives in :mod:`fairseq_dlm.diffusion`; this module only moves
tensors between fairseq and it.  Every per-example quantity (length, ``N``, ``k``, random draws,
early exit, selection) is computed per row, so hypotheses do not depend on the batch.
"""
import logging
import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from typing import List, Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from .diffusion.blocks import BlockSchedule
from .diffusion.cycles import CycleSkip
from .diffusion.denoise import (
    ar_step, cmlm_step, finalize, gumbel_from_uniform, init_state, parse_strategy, reparam_step, threshold_step,
)
from .diffusion.fixed_shapes import BUCKET, MICRO_BATCH, map_fixed_shapes
from .diffusion.layout import build_canvas, prompt_tokens
from .diffusion.options import DEFAULTS, DecodingOptions
from .diffusion.length import candidate_lengths, select_best
from .diffusion.rng import RowRandom
from .diffusion.schedules import mask_rate
from .errors import ConfigError
from .step_network import StepNetwork, choose_mode, prompt_side

logger = logging.getLogger(__name__)

PROPOSAL, NOISE, UNMASK = 1, 2, 3  # purposes of per-row random draws
EARLY_EXIT_CHOICES = ChoiceEnum(["exact", "patience", "none"])


@dataclass
class DiffusionGenerationConfig(FairseqDataclass):
    """Decoding options added to the task (fairseq's ``--iter-decode-*`` flags are reused)."""

    decoding_strategy: str = field(
        default=DEFAULTS.strategy,
        metadata={
            "help": "reparam-<uncond|cond>-<deterministic|stochasticX>-<cosine|linear> (X = noise "
            "scale, e.g. stochastic1.0), threshold (confidence-threshold parallel decoding), cmlm, or ar "
            "(left to right, one slot per step; diagnostics)"
        },
    )
    argmax_decoding: bool = field(
        default=False, metadata={"help": "force argmax proposals whatever --decoding-temperature says"}
    )
    decoding_temperature: float = field(
        default=DEFAULTS.temperature,
        metadata={"help": "0 = argmax proposals (the paper's evaluations); τ > 0 samples ŷ ~ Cat(softmax(logp/τ))"},
    )
    oracle_length: bool = field(
        default=DEFAULTS.oracle_length,
        metadata={"help": "give each canvas the reference response length (evaluation shortcut)"},
    )
    mbr: int = field(
        default=DEFAULTS.mbr,
        metadata={"help": "sampled candidates per length (keep the best mean log-prob); needs --decoding-temperature > 0"},
    )
    suppress_special_tokens: bool = field(
        default=DEFAULTS.suppress_special_tokens, metadata={"help": "never propose <s>, </s>, <pad>, <unk> or madeupword* symbols"}
    )
    early_exit: EARLY_EXIT_CHOICES = field(
        default=DEFAULTS.early_exit,
        metadata={
            "help": "exact: a row skips the forward pass while k stays the same and its state (canvas, masked "
            "set, scores) did not change or repeats a state of the last few steps, a cycle it can replay "
            "(lossless; deterministic strategies only); patience: a row stops once its "
            "prediction is unchanged for --exit-patience steps (lossy, argmax only); none: always run "
            "every step (also implied by --iter-decode-force-max-iter)"
        },
    )
    exit_patience: int = field(
        default=DEFAULTS.exit_patience,
        metadata={
            "help": "with --early-exit patience: stop a row after this many consecutive steps whose prediction "
            "(committed tokens, every <mask> replaced by its argmax proposal) did not change, and commit "
            "those proposals"
        },
    )
    confidence_threshold: float = field(
        default=DEFAULTS.confidence_threshold, metadata={"help": "with --decoding-strategy threshold: commit masked slots with p ≥ this"}
    )
    block_length: int = field(
        default=DEFAULTS.block_length, metadata={"help": "semi-autoregressive decoding in blocks of this many slots (0 = off)"}
    )
    prompt_cache_refresh: int = field(
        default=DEFAULTS.prompt_cache_refresh,
        metadata={
            "help": "full-attention models: reuse the prompt's keys/values across steps, recomputing them every R "
            "steps (1 = every step: exact, the default; 0 = only at a row's first step); faster, approximate. "
            "prefix_lm models need no refresh: their prompt cache is exact"
        },
    )
    quantize_dynamic: bool = field(
        default=DEFAULTS.quantize_dynamic,
        metadata={"help": "CPU decoding: the backbone's linear layers in dynamic int8 (torch.ao.quantization."
                          "quantize_dynamic); faster on CPUs, at a quality cost to measure on your model (none on the toy "
                          "task, 3-4 BLEU on the README's Multi30k models)"},
    )
    no_prompt_cache: bool = field(
        default=False,
        metadata={"help": "prefix_lm models: run the backbone over the whole canvas every step (the reference "
                          "the prompt cache is checked against)"},
    )
    batch_invariant: bool = field(
        default=DEFAULTS.batch_invariant,
        metadata={
            "help": f"fixed network shapes (rows bucketed by their own length to multiples of {BUCKET}, "
            f"micro-batches of {MICRO_BATCH} rows, logits at all positions) and deterministic algorithms, so "
            "float32/bf16 kernels give bit-identical hypotheses whatever the batch; slower"
        },
    )


# option name -> the flag it comes from: fairseq's own generation flags, and the task's names
FAIRSEQ_FLAGS = {"max_iter": "iter_decode_max_iter", "length_beam": "iter_decode_with_beam",
                 "retain_history": "retain_iter_history"}
TASK_FLAGS = {"strategy": "decoding_strategy", "temperature": "decoding_temperature"}


def _opt(args, cfg, name, default=None):
    """A generation option from ``args`` (fairseq's generation config or a Namespace), else the task cfg."""
    value = getattr(args, name, None)
    if value is None and cfg is not None:
        value = getattr(cfg, name, None)
    return default if value is None else value


class DiffusionGenerator:
    """Decodes a batch with a diffusion LM.

    Args:
        dictionary: the task dictionary (``<mask>`` included).
        options: :class:`~fairseq_dlm.diffusion.options.DecodingOptions` (defaults: ``DEFAULTS``);
            keyword arguments override single fields, e.g.
            ``DiffusionGenerator(d, max_iter=6, length_beam=3)``.
    """

    def __init__(self, dictionary, options: Optional[DecodingOptions] = None, **overrides):
        o = replace(options or DEFAULTS, **overrides)
        self.options = o
        self.dictionary = dictionary
        self.pad, self.bos, self.eos = dictionary.pad(), dictionary.bos(), dictionary.eos()
        self.mask = dictionary.index("<mask>")
        if self.mask == dictionary.unk():
            raise ConfigError("the dictionary has no <mask> symbol; build the generator from a diffusion task")
        self.max_iter = o.max_iter
        self.strategy = parse_strategy(o.strategy)
        self.sampling, self.temperature = o.sampling, o.temperature
        self.oracle_length, self.length_beam, self.mbr = o.oracle_length, o.length_beam, o.mbr
        self.retain_history = o.retain_history
        self.deterministic = not o.sampling and self.strategy.kind != "cmlm" and self.strategy.noise_scale == 0
        self.early_exit = o.early_exit == "exact" and self.deterministic
        self.cycle_window = o.cycle_window
        self._warned_long_schedule = False
        self.patience = o.exit_patience if o.early_exit == "patience" else 0
        self.threshold, self.block_length, self.seed = o.confidence_threshold, o.block_length, o.seed
        self.batch_invariant = o.batch_invariant
        if o.batch_invariant:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
            torch.use_deterministic_algorithms(True, warn_only=True)
            logger.info("--batch-invariant: fixed shapes (%d-token buckets, %d-row micro-batches), "
                        "deterministic algorithms", BUCKET, MICRO_BATCH)
        self.banned = [self.mask]
        if o.suppress_special_tokens:
            self.banned += [self.bos, self.eos, self.pad, dictionary.unk()]
            self.banned += [i for i, s in enumerate(dictionary.symbols) if s.startswith("madeupword")]
        self.stats = {"sentences": 0, "nfe": 0, "forward_tokens": 0}
        self._net: Optional[StepNetwork] = None  # the network call of the batch being decoded

    @classmethod
    def from_args(cls, dictionary, args, task_cfg=None):
        """Build from fairseq's generation config (or a Namespace) plus the task's decoding options;
        an option given in neither keeps its ``DEFAULTS`` value."""
        values = {}
        for f in fields(DecodingOptions):
            flag = FAIRSEQ_FLAGS.get(f.name) or TASK_FLAGS.get(f.name, f.name)
            value = _opt(args, None if f.name in FAIRSEQ_FLAGS else task_cfg, flag)
            if value is not None:
                values[f.name] = value
        if _opt(args, task_cfg, "argmax_decoding"):
            values["temperature"] = 0.0
        if _opt(args, None, "iter_decode_force_max_iter"):
            values["early_exit"] = "none"
        if _opt(args, task_cfg, "no_prompt_cache"):
            values["prompt_cache"] = False
        return cls(dictionary, DecodingOptions(**values))

    # --------------------------------------------------------------- lengths
    def oracle_lengths(self, sample) -> torch.Tensor:
        """``[B]`` the reference's ``|y|``."""
        target = sample.get("target")
        if target is None:
            raise ConfigError("--oracle-length needs reference targets, but this data has none")
        special = target.eq(self.pad) | target.eq(self.eos) | target.eq(self.bos)
        return (~special).sum(dim=1)

    def candidates(self, models, sample, hidden: Optional[torch.Tensor] = None):
        """``(lengths [R], owner [R], used_length_head)``: the canvases to decode; ``hidden``: the
        prompts' final states when the prompt cache already computed them (one pass for both)."""
        src = sample["net_input"]["src_tokens"]
        room = models[0].max_positions() - 1 - src.ne(self.pad).sum(dim=1)  # canvas = 1+P + L + 1
        if (room < 1).any():
            ids = sample.get("id")
            bad = (ids if ids is not None else torch.arange(src.size(0), device=src.device))[room < 1].tolist()
            raise ConfigError(
                f"the prompts of example ids {bad[:10]} leave no room for a response within the model's "
                f"{models[0].max_positions()} positions; shorten them"
            )
        if self.oracle_length:
            wanted = self.oracle_lengths(sample)
            lengths = torch.minimum(wanted, room)
            if bool((wanted > room).any()):
                ids = sample.get("id")
                cut = (ids if ids is not None else torch.arange(src.size(0), device=src.device))[wanted > room]
                logger.warning("--oracle-length: the reference of example ids %s is longer than its prompt leaves of "
                               "the model's %d positions; decoded with %s response slots instead of %s",
                               cut[:10].tolist(), models[0].max_positions(), lengths[wanted > room][:10].tolist(),
                               wanted[wanted > room][:10].tolist())
            return lengths, torch.arange(src.size(0), device=src.device), False
        prompt = prompt_tokens(src, self.pad, self.bos, self.eos)
        if self.batch_invariant:
            logits = torch.stack(map_fixed_shapes(prompt, self.pad, [self.bos], models[0].predict_length))
        elif hidden is not None:
            logits = models[0].predict_length(prompt, hidden=hidden)
        else:
            logits = models[0].predict_length(prompt)
            self.stats["forward_tokens"] += int(prompt.ne(self.pad).sum())
        # duplicate lengths decode identically only when decoding is deterministic (SPEC §5)
        lengths, owner = candidate_lengths(logits, self.length_beam, room, dedupe=self.deterministic)
        return lengths, owner, True

    # --------------------------------------------------------------- network
    def log_probs(self, models, tokens: torch.Tensor, positions: torch.Tensor, rows: Optional[torch.Tensor] = None,
                  step: int = 0) -> torch.Tensor:
        """``[n, V]`` float32 log-probs at ``positions``, ``<mask>`` (and banned symbols) at ``-inf``;
        an ensemble averages probabilities.  ``rows``: which candidates ``tokens`` are (the prompt cache's)."""
        out = []
        for model in models:
            if self._net is not None and rows is not None and len(models) == 1 and not self.batch_invariant:
                logits = self._net(tokens, positions, rows, step).float()
            else:
                logits = self._logits(model, tokens, positions, rows).float()
            logits[:, self.banned] = float("-inf")
            # in place: the logits are this call's own, and a fresh [n, V] array costs more than the softmax
            out.append(torch.log_softmax(logits, dim=-1, out=logits))
        if len(out) == 1:
            return out[0]
        return torch.logsumexp(torch.stack(out), dim=0) - math.log(len(out))

    def _logits(self, model, tokens: torch.Tensor, positions: torch.Tensor, rows=None) -> torch.Tensor:
        """``[n, V]`` logits at ``positions`` (row-major), through fixed shapes with ``--batch-invariant``."""
        if not self.batch_invariant:
            if getattr(model, "prefix_lm", False) and self._net is not None and rows is not None:
                return model(tokens, positions=positions, prompt_mask=self._net.prompt_mask[rows])
            return model(tokens, positions=positions)
        per_row = map_fixed_shapes(tokens, self.pad, [self.bos, self.eos], model)  # R × [bucket, V]
        return torch.cat([out[positions[r].nonzero().squeeze(1)] for r, out in enumerate(per_row)])

    def propose(self, logp, rng, rows: List[int], counts: List[int], step: int):
        """``(ŷ, ŝ)`` ``[n]``: argmax, or inverse-CDF sampling with one per-row uniform per slot."""
        if not self.sampling:
            scores, tokens = logp.max(dim=-1)
            return tokens, scores
        probs = torch.softmax(logp / self.temperature, dim=-1)
        cdf = probs.cumsum(dim=-1)
        u = rng.uniform(rows, counts, step, PROPOSAL, logp.device).unsqueeze(1) * cdf[:, -1:]
        tokens = torch.searchsorted(cdf, u).squeeze(1).clamp(max=logp.size(1) - 1)
        return tokens, logp.gather(1, tokens.unsqueeze(1)).squeeze(1)

    def _slot_noise(self, rng, rows, domain, step, purpose):
        """``[R, W]`` U(0,1) on ``domain`` of ``rows`` from per-row streams (zeros elsewhere)."""
        out = torch.zeros(domain.shape, device=domain.device)
        sub = domain[rows]
        u = rng.uniform(rows.tolist(), sub.sum(dim=1).tolist(), step, purpose, domain.device)
        out[rows] = torch.zeros(sub.shape, device=domain.device).masked_scatter(sub, u)
        return out

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, **kwargs) -> List[List[dict]]:
        """One hypothesis list per example of ``sample`` (the best candidate)."""
        if prefix_tokens is not None or constraints is not None:
            raise NotImplementedError("--prefix-size and --constraints are not supported by diffusion decoding")
        for m in models:
            m.eval()
        src = sample["net_input"]["src_tokens"]
        ids = sample.get("id")
        if ids is None:  # fairseq-interactive passes no ids
            ids = torch.arange(src.size(0), device=src.device)
        if self.options.quantize_dynamic:
            from .models.quantize import quantize_dynamic_int8

            for m in models:
                quantize_dynamic_int8(m)
        mode = choose_mode(models[0], self.options, len(models), self.batch_invariant)
        if self.batch_invariant and getattr(models[0], "prefix_lm", False):
            raise ConfigError("--batch-invariant is not supported with a prefix_lm model")
        hidden = example_cache = None
        if mode == "exact":  # the prompt's keys/values once per example, shared by its candidates
            prompt = prompt_tokens(src, self.pad, self.bos, self.eos)
            hidden, example_cache = models[0].prompt_states(prompt)
            self.stats["forward_tokens"] += int(prompt.ne(self.pad).sum())
        lengths, owner, predicted = self.candidates(models, sample, hidden)
        cand = _cumcount(owner.tolist())
        if self.mbr > 1:
            lengths, owner = lengths.repeat_interleave(self.mbr), owner.repeat_interleave(self.mbr)
            cand = [c * self.mbr + j for c in cand for j in range(self.mbr)]
        canvas, slots = build_canvas(src[owner], lengths, self.pad, self.bos, self.eos, self.mask)
        start, prompt_mask = prompt_side(src[owner], self.pad, canvas.size(1))
        self._net = StepNetwork(models[0], mode, start, prompt_mask,
                                None if example_cache is None else example_cache.select(owner),
                                self.options.prompt_cache_refresh, owner)
        rng = RowRandom(self.seed, ids[owner].tolist(), cand)
        try:
            state, used = self.denoise(models, init_state(canvas, slots, keep_history=self.retain_history), rng)
        finally:
            self.stats["forward_tokens"] += self._net.forward_tokens
            self._net = None
        finals = finalize(state, (self.pad, self.bos, self.eos))
        owners = owner.tolist()
        best = select_best([f[2] for f in finals], owners, src.size(0))
        nfe = [0] * src.size(0)
        for r, b in enumerate(owners):
            nfe[b] += int(used[r])
        hypos = []
        for b in range(src.size(0)):
            nfe[b] += int(predicted)
            hypos.append([self._hypo(state, finals, best[b], int(used[best[b]]), nfe[b])])
        self.stats["sentences"] += src.size(0)
        self.stats["nfe"] += sum(nfe)
        return hypos

    def denoise(self, models, state, rng):
        """Run every planned step on ``state``; returns ``(state, forward passes per row [R])``.

        With exact early exit a row replays, without a forward pass, every step whose outcome is
        already known: its state repeats one of the last ``cycle_window`` states within a run of
        steps with the same plan key ``(block, k)`` (see :mod:`fairseq_dlm.diffusion.cycles`)."""
        strat = self.strategy
        schedule = "cosine" if strat.kind == "threshold" else strat.schedule
        plans = BlockSchedule(state.slots, self.max_iter, self.block_length, schedule)
        used = torch.zeros(state.slots.size(0), dtype=torch.long, device=state.slots.device)
        patience = _Patience(state.tokens, self.patience) if self.patience else None
        cycles = CycleSkip(state.tokens, state.masked, state.scores, self.cycle_window) if self.early_exit else None
        start = time.perf_counter()
        for step in range(1, plans.total_steps + 1):
            plan = plans.plan(step)
            # cmlm / ar keep running once every slot is committed: each step re-scores the canvas (official rule)
            active = plan.valid & (plan.domain & state.masked).any(dim=1) if strat.kind == "threshold" else plan.valid
            if patience is not None:
                active = active & ~patience.done
            replay = None
            if cycles is not None:
                replay = cycles.begin(plan.key) & active
                active = active & ~replay
            tokens, masked, scores = state.tokens, state.masked, state.scores
            if active.any():
                new, proposal, proposal_scores = self._step(
                    models, state._replace(history=None), plan, active, rng, step)
                keep = active.unsqueeze(1)
                tokens = torch.where(keep, new.tokens, tokens)
                masked = torch.where(keep, new.masked, masked)
                scores = torch.where(keep, new.scores, scores)
                if patience is not None:  # rows whose prediction settled commit their proposals and stop
                    stop = patience.update(active, torch.where(masked, proposal, tokens))
                    fill = stop.unsqueeze(1) & masked
                    tokens = torch.where(fill, proposal, tokens)
                    scores = torch.where(fill, proposal_scores, scores)
                    masked = masked & ~fill
            if replay is not None and replay.any():
                old_tokens, old_masked, old_scores = cycles.replayed()
                back = replay.unsqueeze(1)
                tokens = torch.where(back, old_tokens, tokens)
                masked = torch.where(back, old_masked, masked)
                scores = torch.where(back, old_scores, scores)
            if cycles is not None:
                cycles.record(tokens, masked, scores)
            state = state._replace(
                tokens=tokens, masked=masked, scores=scores, step=step, history=_extend(state.history, tokens),
            )
            used += active.long()
        self._warn_long_schedule(plans, state.slots, used, cycles, time.perf_counter() - start)
        return state, used

    def _warn_long_schedule(self, plans, slots, used, cycles, seconds):
        """Once per generator: say what a schedule much longer than the responses costs (S ≫ N)."""
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

    def _step(self, models, state, plan, active, rng, step):
        """One step for the ``active`` rows (forward pass on those rows' domain slots only).

        Returns ``(new state, proposals [R, W], proposal scores [R, W])``: the canvas with every
        domain slot of the active rows replaced by its proposal ``ŷ`` (and ``ŝ``; 0 elsewhere)."""
        rows = active.nonzero().squeeze(1)
        sub_tokens, sub_domain = state.tokens[rows], plan.domain[rows]
        logp = self.log_probs(models, sub_tokens, sub_domain, rows, step)
        y, s = self.propose(logp, rng, rows.tolist(), sub_domain.sum(dim=1).tolist(), step)
        cand_tokens, cand_scores = state.tokens.clone(), torch.zeros_like(state.scores)
        cand_tokens[rows] = sub_tokens.masked_scatter(sub_domain, y)
        cand_scores[rows] = torch.zeros_like(state.scores[rows]).masked_scatter(sub_domain, s.float())
        return self._transition(state, cand_tokens, cand_scores, plan, rows, rng, step), cand_tokens, cand_scores

    def _transition(self, state, cand_tokens, cand_scores, plan, rows, rng, step):
        """The strategy's update of ``state`` given the proposals (SPEC §6.2, §6.4)."""
        kind = self.strategy.kind
        if kind == "cmlm":
            uniform = self._slot_noise(rng, rows, plan.domain, step, UNMASK)
            return cmlm_step(state, cand_tokens, cand_scores, plan.local_step, plan.local_total, uniform, plan.domain)
        if kind == "ar":
            return ar_step(state, cand_tokens, cand_scores, plan.local_step, plan.local_total, plan.domain)
        if kind == "threshold":
            return threshold_step(state, cand_tokens, cand_scores, plan.k, self.threshold, plan.domain)
        noise = None
        if self.strategy.noise_scale > 0:
            u = self._slot_noise(rng, rows, plan.domain, step, NOISE)
            rate = torch.tensor(
                [mask_rate(int(s), int(t), self.strategy.schedule) for s, t in zip(plan.local_step, plan.local_total)],
                device=u.device,
            )
            noise = self.strategy.noise_scale * rate.unsqueeze(1) * gumbel_from_uniform(u) * plan.domain
        return reparam_step(state, cand_tokens, cand_scores, plan.k, self.mask, self.strategy.cond, noise, plan.domain)

    def _hypo(self, state, finals, row, steps, nfe) -> dict:
        tokens, pos_scores, score = finals[row]
        eos = tokens.new_tensor([self.eos])
        hypo = {
            "tokens": torch.cat([tokens, eos]),
            "score": torch.tensor(score),
            "positional_scores": torch.cat([pos_scores, pos_scores.new_zeros(1)]),
            "alignment": None,
            "steps": steps,
            "nfe": nfe,
            "canvas": int(state.slots[row].sum()),  # response slots decoded (the chosen length)
        }
        if state.history is not None:
            slot = state.slots[row]
            hypo["history"] = [
                {"tokens": torch.cat([h[row][slot], eos]), "steps": i} for i, h in enumerate(state.history)
            ]
        return hypo


class FunctionDenoiser:
    """Any ``denoise_fn(tokens [B, L]) -> log-probs (or logits) [B, L, V]`` as a network the
    generator can decode with (``generator.generate([FunctionDenoiser(fn)], sample)``): a stub in
    tests, or a model outside fairseq.  It has no length head, so decode with ``oracle_length``
    (or give it ``length_fn(prompt [B, P1]) -> [B, C]`` length logits).

    Args:
        denoise_fn: the network; rows are canvases ``[<s>, prompt…, slots…, </s>, <pad>…]``.
        max_positions: tokens per sequence it accepts (``<s>``/``</s>`` included).
        length_fn: optional length predictor.
    """

    def __init__(self, denoise_fn, max_positions: int = 512, length_fn=None):
        self.denoise_fn, self._max_positions, self.length_fn = denoise_fn, max_positions, length_fn

    def __call__(self, tokens: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.denoise_fn(tokens)
        return out if positions is None else out[positions]

    def eval(self):
        return self

    def max_positions(self) -> int:
        return self._max_positions

    def predict_length(self, prompt: torch.Tensor) -> torch.Tensor:
        if self.length_fn is None:
            raise ConfigError("this denoise_fn has no length predictor: decode with oracle_length=True or pass length_fn")
        return self.length_fn(prompt)


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


def _cumcount(owner: List[int]) -> List[int]:
    """The index of each row among the rows of its example (rows of an example are contiguous)."""
    out, prev, n = [], None, 0
    for b in owner:
        n = n + 1 if b == prev else 0
        out.append(n)
        prev = b
    return out


def _extend(history, tokens):
    return None if history is None else history + [tokens.clone()]
