"""``--criterion diffusion_length``: the length-predictor stage (SPEC §5).

Cross-entropy of the length head's logits against ``|y| - 1`` on a frozen diffusion backbone.
Validation logs length cross-entropy, top-1 / top-k accuracy and the mean absolute error of the
argmax length: the head is judged on its own (the official code validated with oracle lengths,
which cannot judge it).
"""
import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..errors import ConfigError
from .logging_utils import summer
from ..diffusion.layout import prompt_tokens
from ..diffusion.length import length_targets


@dataclass
class DiffusionLengthCriterionConfig(FairseqDataclass):
    length_topk: int = field(default=3, metadata={"help": "k of the logged top-k length accuracy"})


@register_criterion("diffusion_length", dataclass=DiffusionLengthCriterionConfig)
class DiffusionLengthCriterion(FairseqCriterion):
    def __init__(self, cfg: DiffusionLengthCriterionConfig, task):
        super().__init__(task)
        self.cfg = cfg
        d = task.source_dictionary
        self.pad, self.bos, self.eos = d.pad(), d.bos(), d.eos()

    def check_model(self, model):
        if getattr(model, "length_head", None) is None:
            raise ConfigError("--criterion diffusion_length needs a model built with --length-head")
        if model.training and not model.loaded_from_checkpoint:
            raise ConfigError(
                "the length stage trains the length head on a finished diffusion model: start it from the "
                "diffusion checkpoint with --finetune-from-model STAGE1/checkpoint_best.pt (and --freeze-backbone)"
            )

    def forward(self, model, sample, reduce=True):
        self.check_model(model)
        src, target = sample["net_input"]["src_tokens"], sample["target"]
        logits = model.predict_length(prompt_tokens(src, self.pad, self.bos, self.eos))  # [B, C]
        y_len = target.ne(self.pad).sum(dim=1) - target.eq(self.eos).sum(dim=1)
        gold = length_targets(y_len, logits.size(1))
        loss = F.cross_entropy(logits, gold)
        k = min(self.cfg.length_topk, logits.size(1))
        pred = logits.argmax(dim=-1)
        log = {
            "loss": loss.data,
            "length_nll_sum": F.cross_entropy(logits, gold, reduction="sum").data,
            # tensors until reduce_metrics: no GPU→CPU sync per step
            "length_correct": pred.eq(gold).sum(),
            "length_topk_correct": logits.topk(k, dim=-1).indices.eq(gold.unsqueeze(1)).any(1).sum(),
            "length_abs_err": (pred - gold).abs().sum(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": 1,
        }
        return loss, 1, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        total = summer(logging_outputs)

        n = max(total("nsentences"), 1)
        metrics.log_scalar("loss", total("loss") / max(total("sample_size"), 1), round=3)
        metrics.log_scalar("length_nll", total("length_nll_sum") / n / math.log(2), n, round=3)
        metrics.log_scalar("length_acc", 100.0 * total("length_correct") / n, n, round=2)
        metrics.log_scalar("length_topk_acc", 100.0 * total("length_topk_correct") / n, n, round=2)
        metrics.log_scalar("length_mae", total("length_abs_err") / n, n, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
