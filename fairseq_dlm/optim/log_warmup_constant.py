"""``--lr-scheduler log_warmup_constant``: logarithmic warmup, then a constant LR.

This is what the official DeepSpeed ``WarmupLR`` block (``warmup_type: log``) runs
(SPEC §8)::

    W = warmup_updates            if warmup_updates > 0
        ceil(warmup_ratio · max_update)   otherwise
    lr(u) = lr_max · ln(u + 1) / ln(W)   for u < W
    lr(u) = lr_max                       for u ≥ W   (and for every u when W ≤ 1)

``u`` is fairseq's ``num_updates`` when ``step_update(u)`` is called, i.e. the number of
updates already done, so ``lr(u)`` is the LR of the (u+1)-th update. As in DeepSpeed,
the first update uses ``lr(0) = 0``.
"""

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import List

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler
from omegaconf import II

from ..errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class LogWarmupConstantConfig(FairseqDataclass):
    warmup_updates: int = field(
        default=0,
        metadata={
            "help": "log-warmup length W in updates; 0 = ceil(warmup_ratio * max_update)"
        },
    )
    warmup_ratio: float = field(
        default=0.01,
        metadata={"help": "W as a fraction of --max-update when --warmup-updates is 0"},
    )
    # both belong to the optimization group; interpolated, not duplicated
    max_update: int = II("optimization.max_update")
    lr: List[float] = II("optimization.lr")


def warmup_length(warmup_updates: int, warmup_ratio: float, max_update: int) -> int:
    """``W = warmup_updates`` if > 0, else ``ceil(warmup_ratio · max_update)``."""
    if warmup_updates > 0:
        return int(warmup_updates)
    return int(math.ceil(warmup_ratio * max(max_update or 0, 0)))


def log_warmup_lr(num_updates: int, lr_max: float, warmup: int) -> float:
    """``lr_max · ln(u+1)/ln(W)`` for ``u < W``, else ``lr_max`` (constant when W ≤ 1)."""
    if warmup <= 1 or num_updates >= warmup:
        return lr_max
    return lr_max * math.log(num_updates + 1) / math.log(warmup)


@register_lr_scheduler("log_warmup_constant", dataclass=LogWarmupConstantConfig)
class LogWarmupConstantSchedule(FairseqLRScheduler):
    """Logarithmic warmup to ``lr_max = --lr``, then constant; formula in module docstring."""

    def __init__(self, cfg: LogWarmupConstantConfig, optimizer):
        super().__init__(cfg, optimizer)
        lrs = cfg.lr
        if isinstance(lrs, Collection) and len(lrs) > 1:
            raise ConfigError(
                "log_warmup_constant takes one --lr (lr_max), not a per-epoch list"
            )
        self.lr_max = lrs[0] if isinstance(lrs, Collection) else lrs
        self.warmup = warmup_length(cfg.warmup_updates, cfg.warmup_ratio, cfg.max_update)
        logger.info(
            f"log_warmup_constant: lr_max={self.lr_max}, W={self.warmup} updates"
            + (" (W <= 1: constant LR)" if self.warmup <= 1 else "")
        )
        self._num_updates = 0
        self.optimizer.set_lr(self.get_lr(0))

    def get_lr(self, num_updates: int) -> float:
        return log_warmup_lr(num_updates, self.lr_max, self.warmup)

    def step_begin_epoch(self, epoch):
        """Re-apply the LR of the current update count (fairseq calls step_update next)."""
        self.optimizer.set_lr(self.get_lr(self._num_updates))
        return self.optimizer.get_lr()

    def step(self, epoch, val_loss=None):
        """End of epoch: track the best validation loss; the LR depends on updates only."""
        super().step(epoch, val_loss)
        self.optimizer.set_lr(self.get_lr(self._num_updates))
        return self.optimizer.get_lr()

    def step_update(self, num_updates):
        """Set and return ``lr(num_updates)``, the LR of the next update."""
        self._num_updates = num_updates
        self.optimizer.set_lr(self.get_lr(num_updates))
        return self.optimizer.get_lr()
