"""LoRA adapter folders of the official trainer (``--lora``) → the plugin's LoRA model (:mod:`..models.lora`).

With ``--lora`` the official ``load_model_tokenizer`` wraps the diffusion model in
``peft.get_peft_model(model, LoraConfig(TaskType.TOKEN_CLS, r, lora_alpha, target_modules, bias,
lora_dropout))`` and the HF Trainer saves only what peft calls the adapter::

    checkpoint-<step>/adapter_config.json        {"r": 16, "lora_alpha": 16, "target_modules": [...], ...}
    checkpoint-<step>/adapter_model.bin          (or .safetensors)
        base_model.model.model.model.layers.0.self_attn.q_proj.lora_A.weight        (LLaMA)
        base_model.model.model.roberta.encoder.layer.0.attention.self.query.lora_B.weight   (XLM-R)

``base_model.model.`` is peft's wrapper around the diffusion model, so the rest is the official
state-dict name (``model.`` = the HF model inside ``DiscreteDiffusion*Model``).  Everything else
stayed frozen at what the official code built before training: the pretrained backbone (read from
its local folder, :func:`read_base`), and for LLaMA the rows of the tokens it added (the mean of the
pretrained rows, rebuilt by :mod:`.official_llama`).  TOKEN_CLS saves no other module: an XLM-R
length predictor trained under ``--lora`` is not in the folder (it stayed at its random
initialisation), so the conversion has no length head.

The converted checkpoint keeps the adapters (``--lora`` with the same rank, alpha, targets): the
plugin's peft layers compute ``W x + (alpha / r) · B A x`` as the official ones do, and
``scripts/export_hf.py --merge-lora`` folds them in.
"""
import json
import re
from pathlib import Path
from typing import Dict, Optional

import torch

from ..models.lora import PEFT_PREFIX, adapter_targets
from .official import OfficialCheckpointError, read_weights, read_weights_file

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_file(ckpt_dir: Path) -> Optional[Path]:
    """The adapter weights file of ``ckpt_dir``, or None when it holds full weights."""
    for name in ADAPTER_FILES:
        if (ckpt_dir / name).is_file():
            return ckpt_dir / name
    return None


def read_adapter(ckpt_dir: Path) -> dict:
    """``{"config": adapter_config.json, "state": {official name: tensor}, "file": path}`` of a LoRA run
    (official names: ``model.….lora_A.weight``).

    Raises :class:`OfficialCheckpointError` naming the file for a missing config, adapters on the
    embeddings or LM head (whose rows the vocabulary mapping would have to permute: not supported),
    and tensors that are not LoRA ``A``/``B`` matrices (e.g. peft ``modules_to_save`` copies)."""
    path = adapter_file(ckpt_dir)
    cfg_path = ckpt_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise OfficialCheckpointError(f"{ckpt_dir} has {path.name} but no adapter_config.json (rank, alpha and target "
                                      "modules): the download or unpacking is incomplete")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise OfficialCheckpointError(f"{cfg_path} is not valid JSON ({e}); re-download the model") from None
    state, other = {}, []
    for key, value in read_weights_file(path).items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        if not re.search(r"\.lora_[AB]\.weight$", name):
            other.append(key)
        elif re.search(r"\.(embed_tokens|lm_head|word_embeddings|decoder)\.lora_", name):
            raise OfficialCheckpointError(f"{path}: {key} adapts the embeddings or the LM head, whose rows this "
                                          "converter permutes to the fairseq dictionary; such adapters are not "
                                          "supported (merge them with peft first)")
        else:
            state[name] = value
    if other or not state:
        found = f"tensors that are not LoRA A/B matrices ({', '.join(other[:3])})" if other else "no LoRA A/B matrices"
        raise OfficialCheckpointError(f"{path} holds {found}: not an adapter of the official trainer (peft "
                                      "modules_to_save is not supported)")
    targets = sorted({n.split(".")[-3] for n in state})
    config["target_modules"] = adapter_targets(config) or targets
    unsupported = [k for k in ("use_rslora", "use_dora", "fan_in_fan_out") if config.get(k)]
    if unsupported:
        raise OfficialCheckpointError(f"{cfg_path} sets {', '.join(unsupported)}, which the official trainer never "
                                      "does and this converter does not rebuild")
    if set(targets) - set(config["target_modules"]):
        raise OfficialCheckpointError(f"{cfg_path} names target_modules {config['target_modules']} but {path.name} "
                                      f"adapts {targets}")
    return {"config": config, "state": state, "file": str(path)}


def read_base(base_dir: str) -> Dict[str, torch.Tensor]:
    """The pretrained HF model's weights in the official naming (``model.`` + HF key)."""
    try:
        state = read_weights(Path(base_dir))
    except OfficialCheckpointError as e:
        raise OfficialCheckpointError(f"the LoRA adapters need the pretrained weights they were trained on, but the "
                                      f"base model folder {base_dir} has none readable ({e}); pass --base-model DIR, "
                                      "a local copy of it") from None
    return {"model." + k: v for k, v in state.items()}


def with_adapters(base: Dict[str, torch.Tensor], adapter: dict) -> Dict[str, torch.Tensor]:
    """The official full state (frozen base + adapters) of a LoRA run, official naming."""
    state = dict(base)
    state.update(adapter["state"])
    return state
