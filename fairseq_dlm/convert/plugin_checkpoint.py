"""Writing a plugin checkpoint from weights that were not trained by ``fairseq-train``.

The converters (the paper's released models, an exported HuggingFace directory) end here: a model
state dict in this plugin's naming (``hf.*`` for the HF masked LM, ``length_head.*``), the HF config
of the backbone and a fairseq dictionary become a file that ``fairseq-generate``,
``fairseq-interactive``, ``scripts/eval_instruct.py`` and :class:`fairseq_dlm.DiffusionLM` load like
any checkpoint of ``fairseq-train``:

* ``cfg`` is fairseq's own, parsed from a ``fairseq-train`` command line (``--task``, ``--arch``,
  ``--length-head``), with ``cfg.model.backbone_state`` holding the backbone config and the
  dictionary fingerprint, so that the model is rebuilt without ``--pretrained`` (no hub access);
* the state dict is checked key by key and shape by shape against that model built on the
  ``meta`` device (no memory, no random initialisation even for XXL) before anything is written;
* the file is written through a staging file: a failure leaves no half-written checkpoint.
"""
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch

from .outputs import staged_file

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # the file a converter writes (``--ckpt`` folders resolve it too)
USER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET_ARCHS = {"xlm-roberta-base": "xlmr_diffusion_base", "xlm-roberta-large": "xlmr_diffusion_large",
                "xlm-roberta-xl": "xlmr_diffusion_xl", "xlm-roberta-xxl": "xlmr_diffusion_xxl"}


def training_cfg(data_dir: str, task: str, arch: str, length_head: bool, backbone_state: dict,
                 extra: Sequence[str] = ()) -> dict:
    """fairseq's config (a plain dict, as checkpoints store it) of ``fairseq-train DATA --task ... --arch ...``
    (``extra``: more training flags, e.g. ``--lora --lora-rank 16``)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf, open_dict

    argv = [data_dir, "--user-dir", USER_DIR, "--task", task, "--arch", arch,
            "--criterion", "diffusion_length" if length_head else "diffusion_lm"]
    if length_head:
        argv.append("--length-head")
    argv += list(extra)
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    with open_dict(cfg):
        cfg.model.backbone_state = json.dumps(backbone_state)
        cfg.model.pretrained = None
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def backbone_state(hf_config: dict, symbols: List[str]) -> dict:
    """What ``cfg.model.backbone_state`` holds: the HF config and the dictionary's fingerprint."""
    from ..models.vocab import dictionary_fingerprint

    return {"config": hf_config, "dictionary": dictionary_fingerprint(symbols), "dictionary_size": len(symbols)}


def check_state_dict(cfg: dict, state_dict: Dict[str, torch.Tensor], source: str, data_dir: str) -> None:
    """Build the model of ``cfg`` on the meta device and compare keys and shapes with ``state_dict``.

    ``data_dir`` holds the dictionary (and SentencePiece model) the task reads now (a staging folder)."""
    from fairseq import tasks
    from omegaconf import OmegaConf, open_dict

    conf = OmegaConf.create(cfg)
    with open_dict(conf):
        conf.task.data = data_dir
    task = tasks.setup_task(conf.task)
    with torch.device("meta"):
        model = task.build_model(conf.model, from_checkpoint=True)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [f"{k}: {given[k]} vs {expected[k]}" for k in expected if k in given and given[k] != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors ({', '.join(missing[:4])}{', …' if len(missing) > 4 else ''})")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown tensors ({', '.join(unexpected[:4])}"
                        f"{', …' if len(unexpected) > 4 else ''})")
    if shapes:
        problems.append("shapes differ (" + "; ".join(shapes[:3]) + (", …" if len(shapes) > 3 else "") + ")")
    if problems:
        raise ValueError(f"{source} does not convert into a {conf.model._name} model: " + "; ".join(problems))


def write_checkpoint(out_path: str, cfg: dict, state_dict: Dict[str, torch.Tensor], num_updates: int = 0,
                     provenance: Optional[dict] = None) -> None:
    """Save ``state_dict`` with ``cfg`` in fairseq's checkpoint layout (no optimizer state)."""
    state = {
        "args": None,
        "cfg": cfg,
        "model": state_dict,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "DiffusionLMCriterion", "optimizer_name": "none",
                               "lr_scheduler_state": {"best": None}, "num_updates": num_updates}],
        "task_state": {},
        "extra_state": {"converted_from": provenance or {}},
        "last_optimizer_state": None,
    }
    with staged_file(out_path) as stage:
        torch.save(state, stage)
    logger.info("wrote %s (%d tensors, %.1f M parameters)", out_path, len(state_dict),
                sum(v.numel() for v in state_dict.values()) / 1e6)
