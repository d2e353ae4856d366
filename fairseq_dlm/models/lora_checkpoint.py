"""Compact LoRA checkpoints (``--lora-adapters-only``): what trains, plus a fingerprint of what does not.

Under ``--lora`` the backbone's own weights never change, so a checkpoint of ``fairseq-train`` need
not repeat them.  With ``--lora-adapters-only`` the model's ``state_dict()`` leaves out every frozen
backbone tensor (``hf.*`` except the adapters and the biases ``--lora-bias`` trains); the model config
records where they are read back from, ``lora_base`` (:func:`read_base`: the ``--finetune-from-model``
checkpoint, or the ``--pretrained`` directory, gathered to the dictionary as at training), and their
:func:`fingerprint`, ``lora_base_fingerprint`` (a SHA-1 of names, shapes, dtypes and a strided sample of
the values: a different base is told apart; a single edited weight may not be).  The state dict itself
holds only floating tensors, so fairseq's EMA and checkpoint averaging treat it as any other.

Loading a compact state into a model that already holds its base (training, EMA) only checks the
fingerprint; into a model built from a checkpoint's config (``fairseq-generate``, the API, resuming)
it reads the base first.  Keys are named without peft's ``.base_layer.`` in the fingerprint, so it
does not depend on which layers carry adapters.
"""
import hashlib
import logging
import os
from typing import Dict, List

import torch
from torch import nn

from ..errors import ConfigError

logger = logging.getLogger(__name__)

_SAMPLES = 1 << 16  # values hashed per tensor


def frozen_keys(model: nn.Module) -> List[str]:
    """The state-dict keys of ``model`` (an ``XLMRDiffusionModel``) that a compact checkpoint leaves out."""
    out = []
    for key, value in nn.Module.state_dict(model, keep_vars=True).items():
        if not key.startswith("hf.") or ".lora_" in key:
            continue
        if isinstance(value, nn.Parameter) and value.requires_grad:
            continue  # trained (e.g. biases under --lora-bias all): saved
        out.append(key)
    return out


def fingerprint(tensors: Dict[str, torch.Tensor]) -> str:
    """Hex SHA-1 of ``tensors`` (keys without ``.base_layer.``; a strided sample of each)."""
    h = hashlib.sha1()
    for key in sorted(tensors, key=lambda k: k.replace(".base_layer.", ".")):
        value = tensors[key].detach()
        h.update(f"{key.replace('.base_layer.', '.')}|{tuple(value.shape)}|{value.dtype}".encode())
        flat = value.reshape(-1)
        step = max(1, flat.numel() // _SAMPLES)
        h.update(flat[::step].to(torch.float64).cpu().numpy().tobytes())
    return h.hexdigest()


def read_base(cfg, symbols: List[str], pad: int, keys: List[str]) -> Dict[str, torch.Tensor]:
    """The frozen tensors ``keys`` (the model's naming) from ``cfg.lora_base``: a plugin checkpoint (its
    model state) or a HF directory (built as ``--pretrained`` builds it, gathered to ``symbols``)."""
    path = cfg.lora_base
    fix = ("restore it, or point to a copy: fairseq-generate/-interactive --model-overrides "
           "\"{'lora_base': 'PATH'}\", DiffusionLM.from_pretrained(..., lora_base='PATH')")
    if not path or not os.path.exists(path):
        raise ConfigError(f"the frozen weights of this --lora-adapters-only checkpoint are read from {path!r}, which "
                          f"does not exist here: {fix}")
    if os.path.isdir(path):
        import copy

        from omegaconf import open_dict

        from .backbone import build_backbone

        conf = copy.deepcopy(cfg)
        with open_dict(conf):
            conf.pretrained, conf.backbone_state = path, None
        source = {"hf." + k: v for k, v in build_backbone(conf, symbols, pad).state_dict().items()}
    else:
        from ..checkpoints.reading import read_checkpoint

        state = read_checkpoint(path)
        source = state["model"]
        if ((state.get("cfg") or {}).get("model") or {}).get("lora_adapters_only"):
            raise ConfigError(f"{path} is itself a --lora-adapters-only checkpoint; the base of a compact checkpoint "
                              "must hold its weights (a full checkpoint or a --pretrained directory)")
    out, missing = {}, []
    for key in keys:
        for name in (key, key.replace(".base_layer.", ".")):
            if name in source:
                out[key] = source[name]
                break
        else:
            missing.append(key)
    if missing:
        raise ConfigError(f"{path} lacks {len(missing)} of the frozen tensors of this checkpoint "
                          f"({', '.join(missing[:3])}): it is not the base the adapters were trained on; {fix}")
    logger.info("frozen weights of the LoRA checkpoint read from %s (%d tensors)", path, len(out))
    return out
