"""LoRA adapters on the backbone (``peft``), with the official trainer's options (``--lora-rank``,
``--lora-alpha``, ``--lora-dropout``, ``--lora-target-modules``, ``--lora-bias``).

:func:`add_lora` wraps the target linear layers of the HF backbone in ``peft`` LoRA layers and leaves
only the adapters trainable (and the biases ``--lora-bias`` names); the base weights stay bit-identical,
as fairseq's optimizer only sees parameters that require gradients.  The length head lives outside the
backbone and trains as configured.  :func:`merge_lora` folds the adapters into the base weights
(``W + (alpha / r) · B A``) and removes the wrappers: a plain HF model again;
:func:`write_adapter_folder` writes the adapters as peft's own folder instead.
"""
import logging
import os
import re
from typing import Dict, List, Tuple

import torch
from torch import nn

from ..backbones import is_decoder_type
from ..errors import ConfigError

logger = logging.getLogger(__name__)

# the official default (XLM-R: query, value) and its counterpart in the decoder-only families
ENCODER_TARGETS, DECODER_TARGETS = ["query", "value"], ["q_proj", "v_proj"]
LORA_BIAS = ("none", "all", "lora_only")
ADAPTER_DIR = "lora_adapter"  # the peft adapter folder inside an export (scripts/export_hf.py)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # PeftModel's wrapper around the model, in saved adapter keys


def target_modules(cfg, model_type: str) -> List[str]:
    """``--lora-target-modules`` (comma-separated names of linear layers), else the family's default."""
    given = [t.strip() for t in str(cfg.lora_target_modules or "").split(",") if t.strip()]
    return given or list(DECODER_TARGETS if is_decoder_type(model_type) else ENCODER_TARGETS)


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


def _is_lora_layer(module: nn.Module) -> bool:
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


def has_lora(hf_model: nn.Module) -> bool:
    return any(_is_lora_layer(m) for m in hf_model.modules())


def merge_lora(hf_model: nn.Module, merge: bool = True) -> int:
    """Fold every LoRA adapter into its base layer (``merge``; else drop the adapters unapplied) and put the
    base layer back in its place; returns the number of layers unwrapped."""
    merged = 0
    for name, module in list(hf_model.named_modules()):
        if _is_lora_layer(module):
            if merge:
                module.merge()
            parent = hf_model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else hf_model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
            merged += 1
    return merged


def adapter_folder(hf_model: nn.Module) -> Tuple[object, Dict[str, torch.Tensor]]:
    """``(LoraConfig, tensors)`` of the model's adapters in the layout of ``PeftModel.save_pretrained``
    (keys ``base_model.model.<module>.lora_A.weight``), which ``PeftModel.from_pretrained(hf, DIR)`` loads."""
    from peft import get_peft_model_state_dict

    config = hf_model.peft_config["default"]
    state = get_peft_model_state_dict(hf_model, save_embedding_layers=False)
    return config, {PEFT_PREFIX + k: v.detach().contiguous() for k, v in state.items()}


def write_adapter_folder(config, state: Dict[str, torch.Tensor], out_dir: str) -> int:
    """Write :func:`adapter_folder`'s ``(config, state)`` as ``adapter_config.json`` and
    ``adapter_model.safetensors`` (peft's folder) into ``out_dir``; returns the number of tensors."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file(state, os.path.join(out_dir, ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return len(state)


def read_adapter_folder(folder: str) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """``(adapter_config.json, {module path.lora_A.weight: tensor})`` of a folder of :func:`write_adapter_folder`
    (peft's prefix ``base_model.model.`` removed)."""
    import json

    from safetensors.torch import load_file

    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    state = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v
             for k, v in load_file(os.path.join(folder, ADAPTER_WEIGHTS)).items()}
    return config, state


def adapter_targets(config: dict) -> List[str]:
    """The module names of a peft ``adapter_config.json``'s ``target_modules`` (a list, or one name)."""
    targets = config.get("target_modules") or []
    return sorted(targets) if isinstance(targets, (list, tuple, set)) else [str(targets)]


def lora_flags(config: dict) -> List[str]:
    """The training flags that rebuild the adapters of a peft ``adapter_config.json``."""
    targets = adapter_targets(config)
    return ["--lora", "--lora-rank", str(int(config["r"])), "--lora-alpha", str(float(config.get("lora_alpha", 8))),
            "--lora-dropout", str(float(config.get("lora_dropout") or 0.0)),
            "--lora-target-modules", ",".join(targets), "--lora-bias", str(config.get("bias") or "none")]


def plugin_keys(state: Dict[str, torch.Tensor], targets: List[str]) -> Dict[str, torch.Tensor]:
    """A plain state dict plus adapters (``….lora_A.weight``) → the layout of a model built with ``--lora``:
    a target linear's weight/bias under ``.base_layer.``, its adapters as ``.lora_A.default.weight``."""
    out = {}
    for key, value in state.items():
        m = re.match(r"(.*)\.(lora_[AB])\.weight$", key)
        if m:
            out[f"{m.group(1)}.{m.group(2)}.default.weight"] = value
            continue
        module, _, leaf = key.rpartition(".")
        if module.rsplit(".", 1)[-1] in targets and leaf in ("weight", "bias"):
            out[f"{module}.base_layer.{leaf}"] = value
        else:
            out[key] = value
    return out
