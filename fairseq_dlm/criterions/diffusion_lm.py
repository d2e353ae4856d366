"""``--criterion diffusion_lm``: the reparameterised absorbing-diffusion loss (SPEC §4).

Per batch of ``B`` examples: draw a coupled pair of timesteps per example, build nested masks
over the maskable (response) positions, run the network on the ``2B`` noised sequences and
weight each sequence's masked cross-entropy by ``w(t) / N`` (see
:func:`fairseq_dlm.diffusion.weighting.reweighted_loss`).  In training ``sample_size`` is 1, so
fairseq averages micro-batch losses over GPUs and ``--update-freq`` (as the official HF Trainer
does).  In validation each example's noise comes from its own seed (``VALID_SEED + id``) and the
loss is summed with ``sample_size = 2B``: the validation loss is the mean over sequences, the same
whatever the batching.  Counts stay tensors until ``reduce_metrics`` (no GPU→CPU sync per step).
"""
import math
import re
from dataclasses import dataclass, field

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..errors import ConfigError
from .logging_utils import summer
from ..diffusion.noising import (
    apply_mask, coupled_masks, fixed_timesteps, maskable_positions, per_example_draws, sample_timesteps,
)
from ..diffusion.weighting import reweighted_loss

NUM_BUCKETS = 5
VALID_SEED = 20230823


@dataclass
class DiffusionLMCriterionConfig(FairseqDataclass):
    num_diffusion_timesteps: int = field(default=50, metadata={"help": "T, training timesteps"})
    mask_ratio_sampler: str = field(
        default="diffusion",
        metadata={"help": "'diffusion' (t ~ U{1..T}, coupled) or 'fixed<R>' (plain MLM at ratio R, e.g. fixed0.15)"},
    )
    weighting: ChoiceEnum(["linear", "constant"]) = field(
        default="linear", metadata={"help": "loss weight w(t): linear = T-t+1, constant = T"}
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "epsilon; 0.1 only when training from scratch (SPEC §4.3)"}
    )
    mask_eos: bool = field(
        default=False,
        metadata={"help": "parity with the official code: the final </s> is maskable (inference always gives it)"},
    )


def parse_sampler(name: str):
    """``None`` for ``diffusion``; the ratio ``R`` for ``fixed<R>``."""
    if name == "diffusion":
        return None
    m = re.fullmatch(r"fixed([0-9]*\.?[0-9]+)", name)
    if not m or not 0 < float(m.group(1)) <= 1:
        raise ConfigError(f"--mask-ratio-sampler {name!r}: expected 'diffusion' or 'fixed<R>' with 0 < R ≤ 1")
    return float(m.group(1))


@register_criterion("diffusion_lm", dataclass=DiffusionLMCriterionConfig)
class DiffusionLMCriterion(FairseqCriterion):
    def __init__(self, cfg: DiffusionLMCriterionConfig, task):
        super().__init__(task)
        self.cfg = cfg
        if cfg.num_diffusion_timesteps < 1:
            raise ConfigError(f"--num-diffusion-timesteps must be ≥ 1 (the paper uses 50), got {cfg.num_diffusion_timesteps}")
        if not 0 <= cfg.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1) (0.1 from scratch, 0 from XLM-R), got {cfg.label_smoothing}")
        self.T = cfg.num_diffusion_timesteps
        self.fixed_ratio = parse_sampler(cfg.mask_ratio_sampler)
        self.mask_idx = task.mask_idx
        self.pad, self.eos = task.source_dictionary.pad(), task.source_dictionary.eos()

    def noise(self, tokens, prompt_mask, ids=None):
        """``(x_t [2B, L], masks [2B, L], t [2B], num_maskable [2B])`` for a batch ``[B, L]``;
        with ``ids`` (validation) every example's draws come from its own seed."""
        bsz = tokens.size(0)
        maskable = maskable_positions(tokens, prompt_mask, self.pad, self.eos, self.cfg.mask_eos)
        uniforms = None
        if ids is not None:
            lengths = tokens.ne(self.pad).sum(dim=1).tolist()
            t_a, t_b, uniforms = per_example_draws(lengths, ids.tolist(), tokens.size(1), self.T, VALID_SEED,
                                                   tokens.device)
        elif self.fixed_ratio is None:
            t_a, t_b = sample_timesteps(bsz, self.T, tokens.device)
        if self.fixed_ratio is not None:  # the timesteps are fixed (the validation uniforms still per example)
            t_a, t_b = fixed_timesteps(bsz, self.T, self.fixed_ratio, tokens.device)
        mask_a, mask_b = coupled_masks(maskable, t_a, t_b, self.T, uniforms=uniforms)
        masks = torch.cat([mask_a, mask_b])
        x_t = apply_mask(tokens.repeat(2, 1), masks, self.mask_idx)
        return x_t, masks, torch.cat([t_a, t_b]), maskable.sum(dim=1).repeat(2)

    def forward(self, model, sample, reduce=True):
        tokens, prompt_mask = sample["tokens"], sample["prompt_mask"]
        validating = not model.training  # the same noise for every validation pass, per example
        x_t, masks, t, num_maskable = self.noise(tokens, prompt_mask, sample["id"] if validating else None)
        # the model decides what the prompt side means to it (prefix_lm: the prompt attends to the prompt only)
        logits = model(x_t, positions=masks, prompt_mask=prompt_mask.repeat(2, 1))  # [n, V]
        targets = tokens.repeat(2, 1)[masks]
        seq_index = torch.arange(x_t.size(0), device=x_t.device).unsqueeze(1).expand_as(x_t)[masks]
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        nll = -lprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        smooth = -lprobs.mean(dim=-1) if self.cfg.label_smoothing > 0 else None
        loss = reweighted_loss(
            nll, seq_index, t, num_maskable, self.T, self.cfg.weighting, smooth, self.cfg.label_smoothing
        )
        sample_size = x_t.size(0) if validating else 1
        if validating:
            loss = loss * sample_size  # a sum over sequences: batching does not change the mean
        log = {
            "loss": loss.data,
            "nll_loss": nll.sum().data,
            "n_masked": masks.sum(),
            "n_correct": lprobs.argmax(-1).eq(targets).sum(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        bucket = ((t - 1) * NUM_BUCKETS // self.T)[seq_index]  # [n]: t/T quintile of each masked token
        nll_b = nll.new_zeros(NUM_BUCKETS).index_add_(0, bucket, nll.detach())
        n_b = torch.bincount(bucket, minlength=NUM_BUCKETS)
        for b in range(NUM_BUCKETS):
            log[f"nll_b{b}"] = nll_b[b]
            log[f"n_b{b}"] = n_b[b]
        return loss, sample_size, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        total = summer(logging_outputs)

        sample_size = max(total("sample_size"), 1)
        n_masked = total("n_masked")
        metrics.log_scalar("loss", total("loss") / sample_size, sample_size, round=3)
        if n_masked > 0:
            metrics.log_scalar("nll_loss", total("nll_loss") / n_masked / math.log(2), n_masked, round=3)
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
            metrics.log_scalar("accuracy", 100.0 * total("n_correct") / n_masked, n_masked, round=2)
        for b in range(NUM_BUCKETS):  # nll_tq{b+1}: masked tokens with t/T in (b/5, (b+1)/5]
            n = total(f"n_b{b}")
            if n > 0:
                metrics.log_scalar(f"nll_tq{b + 1}", total(f"nll_b{b}") / n / math.log(2), n, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
