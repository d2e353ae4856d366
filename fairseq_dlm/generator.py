"""Parallel iterative decoding for ``fairseq-generate --task diffusion_lm`` (SPEC §6).

The generator builds canvases ``[<s>, prompt…, <mask>×L, </s>]``, runs ``S`` reparameterised
(or ``cmlm``) denoising steps over the response slots, and returns fairseq-style hypotheses
(``tokens``, ``score``, ``positional_scores``, ``steps``, ``history``).  The math lives in
:mod:`fairseq_dlm.diffusion`; this module only moves tensors between fairseq and it.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from fairseq.dataclass import FairseqDataclass

from .diffusion.denoise import cmlm_step, finalize, gumbel_like, init_state, parse_strategy, propose, reparam_step
from .diffusion.layout import build_canvas
from .diffusion.schedules import mask_rate, num_masked_after_step

logger = logging.getLogger(__name__)


@dataclass
class DiffusionGenerationConfig(FairseqDataclass):
    """Decoding options added to the task (fairseq's ``--iter-decode-*`` flags are reused)."""

    decoding_strategy: str = field(
        default="reparam-uncond-deterministic-cosine",
        metadata={
            "help": "reparam-<uncond|cond>-<deterministic|stochasticX>-<cosine|linear> (X = noise "
            "scale, e.g. stochastic1.0), or cmlm"
        },
    )
    argmax_decoding: bool = field(
        default=False, metadata={"help": "force argmax proposals whatever --decoding-temperature says"}
    )
    decoding_temperature: float = field(
        default=0.0,
        metadata={"help": "0 = argmax proposals (the paper's evaluations); τ > 0 samples ŷ ~ Cat(softmax(logp/τ))"},
    )
    oracle_length: bool = field(
        default=False,
        metadata={"help": "give each canvas the reference response length (evaluation shortcut)"},
    )
    mbr: int = field(
        default=1,
        metadata={"help": "sampled candidates per length (keep the best mean log-prob); needs --decoding-temperature > 0"},
    )
    suppress_special_tokens: bool = field(
        default=False, metadata={"help": "never propose <s>, </s>, <pad>, <unk> or madeupword* symbols"}
    )


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
        max_iter: ``S``, denoising steps per canvas (``--iter-decode-max-iter``).
        strategy: ``--decoding-strategy``.
        sampling, temperature: sample proposals ``ŷ ~ Cat(softmax(logp/τ))`` instead of argmax
            (``--decoding-temperature τ > 0``).
        oracle_length: canvas length from ``sample["target"]``.
        retain_history: return every step's response canvas (``--retain-iter-history``).
    """

    def __init__(
        self,
        dictionary,
        max_iter: int = 10,
        strategy: str = "reparam-uncond-deterministic-cosine",
        sampling: bool = False,
        temperature: float = 1.0,
        oracle_length: bool = False,
        mbr: int = 1,
        retain_history: bool = False,
        suppress_special_tokens: bool = False,
    ):
        if max_iter < 1:
            raise ValueError(f"--iter-decode-max-iter must be ≥ 1, got {max_iter}")
        if mbr > 1 and not sampling:
            raise ValueError("--mbr > 1 needs sampling (--decoding-temperature > 0): argmax candidates are identical")
        self.dictionary = dictionary
        self.pad, self.bos, self.eos = dictionary.pad(), dictionary.bos(), dictionary.eos()
        self.mask = dictionary.index("<mask>")
        if self.mask == dictionary.unk():
            raise ValueError("the dictionary has no <mask> symbol; build the generator from a diffusion_lm task")
        self.max_iter = max_iter
        self.strategy = parse_strategy(strategy)
        self.sampling, self.temperature = sampling, temperature
        self.oracle_length = oracle_length
        self.mbr = mbr
        self.retain_history = retain_history
        self.banned = [self.mask]
        if suppress_special_tokens:
            self.banned += [self.bos, self.eos, self.pad, dictionary.unk()]
            self.banned += [i for i, s in enumerate(dictionary.symbols) if s.startswith("madeupword")]

    @classmethod
    def from_args(cls, dictionary, args, task_cfg=None):
        """Build from fairseq's generation config (or a Namespace) plus the task's decoding options."""
        temperature = float(_opt(args, task_cfg, "decoding_temperature", 0.0))
        sampling = temperature > 0 and not _opt(args, task_cfg, "argmax_decoding", False)
        return cls(
            dictionary,
            max_iter=_opt(args, None, "iter_decode_max_iter", 10),
            strategy=_opt(args, task_cfg, "decoding_strategy", "reparam-uncond-deterministic-cosine"),
            sampling=sampling,
            temperature=temperature,
            oracle_length=_opt(args, task_cfg, "oracle_length", False),
            mbr=_opt(args, task_cfg, "mbr", 1),
            retain_history=bool(_opt(args, None, "retain_iter_history", False)),
            suppress_special_tokens=_opt(args, task_cfg, "suppress_special_tokens", False),
        )

    def response_lengths(self, sample) -> torch.Tensor:
        """``[B]`` canvas lengths: the reference's ``|y|`` (oracle length)."""
        if not self.oracle_length:
            raise ValueError(
                "this model has no length predictor yet: decode with --oracle-length "
                "(canvas length = reference length)"
            )
        target = sample.get("target")
        if target is None:
            raise ValueError("--oracle-length needs reference targets, but this data has none")
        special = target.eq(self.pad) | target.eq(self.eos) | target.eq(self.bos)
        return (~special).sum(dim=1)

    def log_probs(self, models, tokens: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """``[n, V]`` float32 log-probs at the slots, ``<mask>`` (and banned symbols) at ``-inf``;
        an ensemble averages probabilities."""
        out = []
        for model in models:
            logits = model(tokens, positions=slots).float()
            logits[:, self.banned] = float("-inf")
            out.append(torch.log_softmax(logits, dim=-1))
        if len(out) == 1:
            return out[0]
        return torch.logsumexp(torch.stack(out), dim=0) - math.log(len(out))

    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, **kwargs) -> List[List[dict]]:
        """One hypothesis list per example of ``sample`` (the best candidate first)."""
        if prefix_tokens is not None or constraints is not None:
            raise NotImplementedError("--prefix-size and --constraints are not supported by diffusion decoding")
        for m in models:
            m.eval()
        src_tokens = sample["net_input"]["src_tokens"]
        lengths = self.response_lengths(sample)
        bsz, ncand = src_tokens.size(0), self.mbr
        if ncand > 1:
            src_tokens = src_tokens.repeat_interleave(ncand, dim=0)
            lengths = lengths.repeat_interleave(ncand, dim=0)
        canvas, slots = build_canvas(src_tokens, lengths, self.pad, self.bos, self.eos, self.mask)
        state = self.denoise(models, init_state(canvas, slots, keep_history=self.retain_history))
        finals = finalize(state, (self.pad, self.bos, self.eos))
        return [self._best(state, finals, b, ncand) for b in range(bsz)]

    def denoise(self, models, state):
        """Run ``S`` steps on ``state`` (a :class:`~fairseq_dlm.diffusion.denoise.DecodeState`)."""
        strat, steps = self.strategy, self.max_iter
        num_slots = state.slots.sum(dim=1)
        for step in range(1, steps + 1):
            if not state.slots.any():
                break
            logp = self.log_probs(models, state.tokens, state.slots)
            y, s = propose(logp, argmax=not self.sampling, temperature=self.temperature)
            cand_tokens = state.tokens.masked_scatter(state.slots, y)
            cand_scores = torch.zeros_like(state.scores).masked_scatter(state.slots, s)
            if strat.kind == "cmlm":
                uniform = torch.rand(state.tokens.shape, device=state.tokens.device)
                state = cmlm_step(state, cand_tokens, cand_scores, step, steps, uniform)
                continue
            k = num_masked_after_step(num_slots, step, steps, strat.schedule)
            noise = None
            if strat.noise_scale > 0:
                noise = strat.noise_scale * mask_rate(step, steps, strat.schedule) * gumbel_like(state.scores)
            state = reparam_step(state, cand_tokens, cand_scores, k, self.mask, cond=strat.cond, noise=noise)
        return state

    def _best(self, state, finals, b, ncand) -> List[dict]:
        rows = range(b * ncand, (b + 1) * ncand)
        best = max(rows, key=lambda r: (finals[r][2], -r))  # ties go to the lowest index
        tokens, pos_scores, score = finals[best]
        eos = tokens.new_tensor([self.eos])
        hypo = {
            "tokens": torch.cat([tokens, eos]),
            "score": torch.tensor(score),
            "positional_scores": torch.cat([pos_scores, pos_scores.new_zeros(1)]),
            "alignment": None,
            "steps": state.step,
        }
        if state.history is not None:
            slot = state.slots[best]
            hypo["history"] = [
                {"tokens": torch.cat([h[best][slot], eos]), "steps": i} for i, h in enumerate(state.history)
            ]
        return [hypo]
