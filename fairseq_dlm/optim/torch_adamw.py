"""``--optimizer torch_adamw``: decoupled AdamW on torch's fused kernels (apex when present).

Without NVIDIA apex, fairseq's ``--optimizer adam`` is a per-parameter Python loop
(ENVIRONMENT.md §4). This optimizer gives the same update with torch's fused or
foreach AdamW, or apex ``FusedAdam(adam_w_mode=True)`` when apex is importable.

Update for a parameter θ with gradient g at step t (Loshchilov & Hutter, decoupled
weight decay λ; identical in every implementation)::

    θ ← θ · (1 − lr·λ)
    m ← β1·m + (1 − β1)·g
    v ← β2·v + (1 − β2)·g²
    θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)

``--torch-impl``:

* ``fused``    ``torch.optim.AdamW(fused=True)`` (CPU and CUDA in torch ≥ 2.4);
* ``foreach``  ``torch.optim.AdamW(foreach=True)`` (multi-tensor ops);
* ``for-loop`` ``torch.optim.AdamW(fused=False, foreach=False)`` (reference loop);
* ``apex``     ``apex.optimizers.FusedAdam(adam_w_mode=True)``; ImportError without apex;
* ``auto``     apex when importable and every parameter is on CUDA, else ``fused``,
  else ``foreach`` if the fused constructor rejects the parameters.

Mixed precision: under ``--fp16`` / ``--bf16`` fairseq's ``FP16Optimizer`` hands this
optimizer FP32 master copies (one flat tensor with ``--fp16``, a list with ``--bf16``),
so the update is exact. Under ``--memory-efficient-fp16/bf16`` it receives the
half-precision model parameters themselves, and torch keeps ``m`` and ``v`` in the
parameter dtype; in float16 ``v`` underflows to 0 for |g| ≲ 2e-4 and the step explodes
to lr·m/ε. Hence :attr:`TorchAdamW.supports_memory_efficient_fp16` is False for float16
parameters (fairseq then refuses the combination) and True otherwise.
"""

import ast
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, List, Tuple

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II, OmegaConf

from ..errors import ConfigError

logger = logging.getLogger(__name__)

TORCH_IMPL_CHOICES = ChoiceEnum(["auto", "fused", "foreach", "for-loop", "apex"])

_APEX_HINT = (
    "--torch-impl apex needs NVIDIA apex (apex.optimizers.FusedAdam built with its CUDA "
    "extensions). apex is not on PyPI (the PyPI package 'apex' is unrelated): build it "
    "from https://github.com/NVIDIA/apex, or use --torch-impl fused (torch's fused AdamW)."
)
_LOGGED_CHOICES = set()  # log each implementation choice once per process


@dataclass
class TorchAdamWConfig(FairseqDataclass):
    adam_betas: Any = field(
        default=(0.9, 0.999),
        metadata={"help": "betas (β1, β2) for AdamW, e.g. '(0.9, 0.98)'"},
    )
    adam_eps: float = field(
        default=1e-8, metadata={"help": "epsilon ε added to sqrt(v̂) in AdamW"}
    )
    weight_decay: float = field(
        default=0.0,
        metadata={"help": "decoupled weight decay λ: θ ← θ·(1 − lr·λ) each step"},
    )
    torch_impl: TORCH_IMPL_CHOICES = field(
        default="auto",
        metadata={
            "help": "AdamW kernel: fused (torch fused), foreach (torch multi-tensor), "
            "for-loop (torch per-parameter), apex (apex FusedAdam, needs apex), "
            "auto (apex if importable and params on CUDA, else fused, else foreach)"
        },
    )
    # the learning rate belongs to the optimization group; schedulers overwrite it
    lr: List[float] = II("optimization.lr")


def parse_betas(betas) -> Tuple[float, float]:
    """``"(0.9, 0.98)"`` / ``[0.9, 0.98]`` / ListConfig → ``(0.9, 0.98)`` (no ``eval``)."""
    if isinstance(betas, str):
        betas = ast.literal_eval(betas)
    elif OmegaConf.is_config(betas):
        betas = OmegaConf.to_container(betas)
    betas = tuple(float(b) for b in betas)
    if len(betas) != 2:
        raise ConfigError(f"--adam-betas needs two values (β1, β2), got {betas}")
    return betas


def _apex_fused_adam_class():
    """apex's ``FusedAdam`` class, or None when apex is not importable."""
    try:
        from apex.optimizers import FusedAdam
    except ImportError:
        return None
    return FusedAdam


def _log_choice_once(message: str) -> None:
    if message not in _LOGGED_CHOICES:
        _LOGGED_CHOICES.add(message)
        logger.info(message)


def _impl_name(cfg) -> str:
    impl = getattr(cfg, "torch_impl", "auto")
    return str(getattr(impl, "value", impl))  # Enum member or plain string


@register_optimizer("torch_adamw", dataclass=TorchAdamWConfig)
class TorchAdamW(FairseqOptimizer):
    """fairseq wrapper around torch (or apex) AdamW; see the module docstring."""

    def __init__(self, cfg: TorchAdamWConfig, params):
        super().__init__(cfg)
        params = list(params)
        impl = _impl_name(cfg)
        self._optimizer, self.impl = self._build(impl, params)
        _log_choice_once(f"torch_adamw: --torch-impl {impl} -> {self.impl}")
        dtypes = {p.dtype for p in self.params}
        if torch.float16 in dtypes:
            logger.warning(
                "torch_adamw got float16 parameters: AdamW state would be float16 and "
                "v underflows; use --fp16 (FP32 master weights), not --memory-efficient-fp16"
            )
        elif torch.bfloat16 in dtypes:
            logger.warning(
                "torch_adamw got bfloat16 parameters (--memory-efficient-bf16): AdamW "
                "state and weights stay bfloat16, updates below ~2^-8 relative are lost"
            )

    def _build(self, impl: str, params):
        """Return ``(torch optimizer, name of the implementation actually used)``."""
        kwargs = self.optimizer_config
        if impl == "apex":
            fused_adam = _apex_fused_adam_class()
            if fused_adam is None:
                raise ImportError(_APEX_HINT)
            return fused_adam(params, adam_w_mode=True, **kwargs), "apex"
        if impl == "auto":
            fused_adam = _apex_fused_adam_class()
            if fused_adam is not None and self._all_on_cuda(params):
                try:
                    return fused_adam(params, adam_w_mode=True, **kwargs), "apex"
                except RuntimeError as e:  # apex built without its CUDA extensions
                    logger.warning(f"apex FusedAdam unusable ({e}); using torch")
            try:
                return torch.optim.AdamW(params, fused=True, **kwargs), "fused"
            except RuntimeError as e:  # device/dtype the fused kernel rejects
                logger.warning(f"torch fused AdamW unusable ({e}); using foreach")
                return torch.optim.AdamW(params, foreach=True, **kwargs), "foreach"
        flags = {
            "fused": dict(fused=True),
            "foreach": dict(foreach=True),
            "for-loop": dict(fused=False, foreach=False),
        }
        if impl not in flags:
            raise ConfigError(f"unknown --torch-impl {impl!r}")
        return torch.optim.AdamW(params, **flags[impl], **kwargs), impl

    @staticmethod
    def _all_on_cuda(params) -> bool:
        tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
        return len(tensors) > 0 and all(t.is_cuda for t in tensors)

    @property
    def optimizer_config(self):
        """Optimizer kwargs that override those saved in a checkpoint on resume."""
        lr = self.cfg.lr
        return {
            "lr": lr[0] if isinstance(lr, Collection) else lr,
            "betas": parse_betas(self.cfg.adam_betas),
            "eps": self.cfg.adam_eps,
            "weight_decay": self.cfg.weight_decay,
        }

    @property
    def supports_flat_params(self):
        """AdamW is pointwise, so one flat FP32 tensor (``--fp16``) is fine."""
        return True

    @property
    def supports_memory_efficient_fp16(self):
        """False for float16 parameters: torch keeps AdamW state in float16 (underflow)."""
        return all(p.dtype != torch.float16 for p in self.params)

    @property
    def supports_step_with_scale(self):
        """torch AdamW.step takes no ``scale``; fairseq unscales the grads instead."""
        return False
