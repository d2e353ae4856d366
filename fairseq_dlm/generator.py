"""Parallel iterative decoding for ``fairseq-generate --task diffusion_lm`` (SPEC §6).

The generator builds canvases ``[<s>, prompt…, <mask>×L, </s>]`` (``L`` from the reference with
``--oracle-length``, else the top ``--iter-decode-with-beam`` lengths of the length head), runs
the denoising steps over the response slots, and keeps each example's candidate with the best
mean log-probability.  The loop is :class:`fairseq_dlm.diffusion.sampler.Sampler` and the update
rules are :mod:`fairseq_dlm.diffusion.strategies`; this module is the fairseq adapter: lengths,
canvases, the network (one :class:`~fairseq_dlm.step_network.StepNetwork` per model, behind the
sampler's ``denoise_fn``) and hypotheses.  Every per-example quantity (length, ``N``, ``k``, random
draws, early exit, selection) is computed per row, so hypotheses do not depend on the batch.
"""
import logging
import math
import os
from dataclasses import replace
from typing import List, Optional

import torch

from .diffusion.denoise import finalize, init_state
from .diffusion.fixed_shapes import BUCKET, MICRO_BATCH, map_fixed_shapes
from .diffusion.function_model import FunctionDenoiser  # noqa: F401  (public: decode with any function)
from .diffusion.layout import build_canvas, prompt_tokens
from .diffusion.length import candidate_lengths, select_best
from .diffusion.options import DEFAULTS, RUNTIME_DEFAULTS, DecodingOptions, RuntimeOptions, split_options
from .diffusion.rng import RowRandom
from .diffusion.sampler import Sampler
from .diffusion.strategies import build_strategy
from .errors import ConfigError
from .reranking import rerank_scores
from .step_network import StepNetwork, choose_mode, prompt_side

logger = logging.getLogger(__name__)


class DiffusionGenerator:
    """Decodes a batch with a diffusion LM.

    Args:
        dictionary: the task dictionary (``<mask>`` included).
        options: :class:`~fairseq_dlm.diffusion.options.DecodingOptions` (default: ``DEFAULTS``).
        runtime: :class:`~fairseq_dlm.diffusion.options.RuntimeOptions` (default: ``RUNTIME_DEFAULTS``).
        reranker: an external fairseq model that picks each example's candidate by its mean
            log-likelihood instead of the diffusion score (:mod:`fairseq_dlm.reranking`).
        overrides: single fields of either, e.g. ``DiffusionGenerator(d, max_iter=6, length_beam=3)``.
    """

    def __init__(self, dictionary, options: Optional[DecodingOptions] = None,
                 runtime: Optional[RuntimeOptions] = None, reranker=None, **overrides):
        decoding, running, unknown = split_options(overrides)
        if unknown:
            raise TypeError(f"DiffusionGenerator got unknown option(s) {', '.join(unknown)}")
        o = replace(options or DEFAULTS, **decoding)
        self.options, self.runtime = o, replace(runtime or RUNTIME_DEFAULTS, **running)
        self.reranker = reranker
        self.pad, self.bos, self.eos = dictionary.pad(), dictionary.bos(), dictionary.eos()
        self.mask = dictionary.index("<mask>")
        if self.mask == dictionary.unk():
            raise ConfigError("the dictionary has no <mask> symbol; build the generator from a diffusion task")
        strategy = build_strategy(o.strategy, self.mask, o.confidence_threshold)
        self.sampler = Sampler(strategy, o.max_iter, o.block_length, o.temperature, o.early_exit, o.exit_patience,
                               o.cycle_window)
        if self.runtime.batch_invariant:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
            torch.use_deterministic_algorithms(True, warn_only=True)
            logger.info("--batch-invariant: fixed shapes (%d-token buckets, %d-row micro-batches), "
                        "deterministic algorithms", BUCKET, MICRO_BATCH)
        self.banned = [self.mask]
        if o.suppress_special_tokens:
            self.banned += [self.bos, self.eos, self.pad, dictionary.unk()]
            self.banned += [i for i, s in enumerate(dictionary.symbols) if s.startswith("madeupword")]
        self.stats = {"sentences": 0, "nfe": 0, "forward_tokens": 0}

    @classmethod
    def from_args(cls, dictionary, args, task_cfg=None, reranker=None):
        """Build from fairseq's generation config (or a Namespace) plus the task's decoding options
        (``from_flags`` of the two option classes)."""
        return cls(dictionary, DecodingOptions.from_flags(args, task_cfg), RuntimeOptions.from_flags(args, task_cfg),
                   reranker)

    @classmethod
    def from_task(cls, task, **chosen):
        """The decoding settings saved in ``task``'s config, with the ``chosen`` fields replaced."""
        return cls(task.target_dictionary, DecodingOptions.from_flags(None, task.cfg),
                   RuntimeOptions.from_flags(None, task.cfg), **chosen)

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
        if self.options.oracle_length:
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
        if self.runtime.batch_invariant:
            logits = torch.stack(map_fixed_shapes(prompt, self.pad, [self.bos], models[0].predict_length))
        elif hidden is not None:
            logits = models[0].predict_length(prompt, hidden=hidden)
        else:
            logits = models[0].predict_length(prompt)
            self.stats["forward_tokens"] += int(prompt.ne(self.pad).sum())
        # duplicate lengths decode identically only when decoding is deterministic (SPEC §5)
        lengths, owner = candidate_lengths(logits, self.options.length_beam, room, dedupe=self.sampler.deterministic)
        return lengths, owner, True

    # --------------------------------------------------------------- network
    def denoise_fn(self, nets: List[StepNetwork]):
        """The sampler's ``denoise_fn(tokens, positions, rows, step) -> [n, V]`` float32 log-probs
        (``<mask>`` and banned symbols at ``-inf``); an ensemble averages probabilities."""
        def denoise(tokens: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, step: int) -> torch.Tensor:
            out = []
            for net in nets:
                logits = net(tokens, positions, rows, step).float()
                logits[:, self.banned] = float("-inf")
                # in place: the logits are this call's own, and a fresh [n, V] array costs more than the softmax
                out.append(torch.log_softmax(logits, dim=-1, out=logits))
            if len(out) == 1:
                return out[0]
            return torch.logsumexp(torch.stack(out), dim=0) - math.log(len(out))
        return denoise

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, on_step=None,
                 **kwargs) -> List[List[dict]]:
        """One hypothesis list per example of ``sample`` (the best candidate).

        ``on_step(state, active)``: called before the first and after every denoising step with the
        :class:`~fairseq_dlm.diffusion.denoise.DecodeState` of all candidates (rows: each example's
        candidates in turn, in the order of its hypothesis' ``"candidates"``) and the ``[R]`` bool
        rows that ran the network at that step (see :meth:`Sampler.run`)."""
        if prefix_tokens is not None or constraints is not None:
            raise NotImplementedError("--prefix-size and --constraints are not supported by diffusion decoding")
        for m in models:
            m.eval()
        src = sample["net_input"]["src_tokens"]
        ids = sample.get("id")
        if ids is None:  # fairseq-interactive passes no ids
            ids = torch.arange(src.size(0), device=src.device)
        if self.runtime.quantize_dynamic:
            from .models.quantize import quantize_dynamic_int8

            for m in models:
                quantize_dynamic_int8(m)
        o, run = self.options, self.runtime
        mode = choose_mode(models[0], run, len(models))
        hidden = example_cache = None
        if mode == "exact":  # the prompt's keys/values once per example, shared by its candidates
            prompt = prompt_tokens(src, self.pad, self.bos, self.eos)
            hidden, example_cache = models[0].prompt_states(prompt)
            self.stats["forward_tokens"] += int(prompt.ne(self.pad).sum())
        lengths, owner, predicted = self.candidates(models, sample, hidden)
        cand = _cumcount(owner.tolist())
        if o.mbr > 1:
            lengths, owner = lengths.repeat_interleave(o.mbr), owner.repeat_interleave(o.mbr)
            cand = [c * o.mbr + j for c in cand for j in range(o.mbr)]
        canvas, slots = build_canvas(src[owner], lengths, self.pad, self.bos, self.eos, self.mask)
        start, prompt_mask = prompt_side(src[owner], self.pad, canvas.size(1))
        cache = None if example_cache is None else example_cache.select(owner)
        nets = [StepNetwork(m, mode, start, prompt_mask, cache, run.prompt_cache_refresh, owner, pad=self.pad,
                            filler=[self.bos, self.eos]) for m in models]
        rng = RowRandom(o.seed, ids[owner].tolist(), cand)
        try:
            state, used = self.sampler.run(self.denoise_fn(nets), init_state(canvas, slots, o.retain_history), rng,
                                           on_step)
        finally:
            self.stats["forward_tokens"] += sum(net.forward_tokens for net in nets)
        finals = finalize(state, (self.pad, self.bos, self.eos))
        owners = owner.tolist()
        reranked = None
        if self.reranker is not None:  # the external model's mean log-likelihood picks the candidate
            reranked = rerank_scores(self.reranker, src[owner], [f[0] for f in finals], self.pad, self.eos)
        best = select_best(reranked or [f[2] for f in finals], owners, src.size(0))
        nfe, rows_of = [0] * src.size(0), [[] for _ in range(src.size(0))]
        for r, b in enumerate(owners):
            nfe[b] += int(used[r])
            rows_of[b].append(r)
        hypos = []
        for b, rows in enumerate(rows_of):
            nfe[b] += int(predicted)
            hypos.append([self._hypo(state, finals, best[b], int(used[best[b]]), nfe[b])])
            hypos[-1][0]["candidates"] = [  # every candidate of the example; "chosen" indexes the kept one
                {"length": int(state.slots[r].sum()), "score": finals[r][2], "steps": int(used[r]),
                 **({} if reranked is None else {"rerank_score": reranked[r]})} for r in rows]
            hypos[-1][0]["chosen"] = rows.index(best[b])
            if reranked is not None:
                hypos[-1][0]["rerank_score"] = reranked[best[b]]
        self.stats["sentences"] += src.size(0)
        self.stats["nfe"] += sum(nfe)
        return hypos

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


def _cumcount(owner: List[int]) -> List[int]:
    """The index of each row among the rows of its example (rows of an example are contiguous)."""
    out, prev, n = [], None, 0
    for b in owner:
        n = n + 1 if b == prev else 0
        out.append(n)
        prev = b
    return out
