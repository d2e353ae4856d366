"""LoRA adapters on the backbone (``peft``), with the official trainer's options (``--lora-rank``,
``--lora-alpha``, ``--lora-dropout``, ``--lora-target-modules``, ``--lora-bias``).

:func:`add_lora` wraps the target linear layers of the HF backbone in ``peft`` LoRA layers and leaves
only the adapters trainable (and the biases ``--lora-bias`` names); the base weights stay bit-identical,
as fairseq's optimizer only sees parameters that require gradients.  The length head lives outside the
backbone and trains as configured.  :func:`merge_lora` folds the adapters into the base weights
(``W + (alpha / r) · B A``) and removes the wrappers: a plain HF model again.
"""
import logging
from typing import List

from torch import nn

from ..errors import ConfigError

logger = logging.getLogger(__name__)

# the official default (XLM-R: query, value) and its counterpart in the decoder-only families
DEFAULT_TARGETS = {"xlm-roberta": ["query", "value"], "xlm-roberta-xl": ["query", "value"],
                   "llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"]}
LORA_BIAS = ("none", "all", "lora_only")


def target_modules(cfg, model_type: str) -> List[str]:
    """``--lora-target-modules`` (comma-separated names of linear layers), else the family's default."""
    given = [t.strip() for t in str(cfg.lora_target_modules or "").split(",") if t.strip()]
    return given or DEFAULT_TARGETS.get(model_type, ["query", "value"])


def add_lora(hf_model: nn.Module, cfg) -> None:
    """Inject LoRA adapters into ``hf_model`` (in place) and freeze everything else in it."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("--lora needs the peft package: pip install peft (the setup command installs it)") from None
    targets = target_modules(cfg, hf_model.config.model_type)
    names = {name.rsplit(".", 1)[-1] for name, module in hf_model.named_modules() if isinstance(module, nn.Linear)}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ConfigError(f"--lora-target-modules {','.join(unknown)}: no linear layer of this "
                          f"{hf_model.config.model_type} backbone has that name; it has {', '.join(sorted(names))}")
    if cfg.lora_rank < 1:
        raise ConfigError(f"--lora-rank must be ≥ 1, got {cfg.lora_rank}")
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        bias=str(cfg.lora_bias), target_modules=targets)
    inject_adapter_in_model(config, hf_model)
    trainable = sum(p.numel() for p in hf_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in hf_model.parameters())
    logger.info("LoRA r=%d alpha=%g on %s: %d of %d backbone parameters train (%.2f%%)", cfg.lora_rank,
                cfg.lora_alpha, ",".join(targets), trainable, total, 100 * trainable / max(total, 1))


def has_lora(hf_model: nn.Module) -> bool:
    return any(hasattr(m, "base_layer") and hasattr(m, "lora_A") for m in hf_model.modules())


def merge_lora(hf_model: nn.Module) -> int:
    """Fold every LoRA adapter into its base layer and put the base layer back in its place; returns
    the number of layers merged."""
    merged = 0
    for name, module in list(hf_model.named_modules()):
        if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            module.merge()
            parent = hf_model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else hf_model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
            merged += 1
    return merged
