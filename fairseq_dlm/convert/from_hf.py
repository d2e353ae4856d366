"""An exported HuggingFace directory (``scripts/export_hf.py``) → a plugin checkpoint.

``scripts/convert_checkpoint.py hf SRC --out OUT`` writes, like the official converter::

    OUT/checkpoint.pt               cfg of the exported task (diffusion_lm or diffusion_instruct), backbone_state
    OUT/dict.txt                    SRC/dict.txt (+ dict.<src>.txt, dict.<tgt>.txt for diffusion_lm)
    OUT/sentencepiece.bpe.model     when SRC has one (diffusion_instruct needs it)
    OUT/tokenizer.json              SRC's, when the model's text went through an HF tokenizer.json
    OUT/conversion.json             what was converted

The backbone is read with ``AutoModelForMaskedLM.from_pretrained(SRC)`` (a missing or unknown key is
refused, not initialised randomly), its state dict becomes ``hf.*``; ``length_head.safetensors``
becomes ``length_head.*``; peft's adapter folder ``lora_adapter/`` (a LoRA checkpoint exported
without ``--merge-lora``) becomes the checkpoint's LoRA adapters again (``--lora`` with its rank,
alpha and targets).  The dictionary, the weights (fp32 as saved) and the tying are the
export's, so the checkpoint gives the logits of the one that was exported.  The prompt template and
decoding defaults of ``diffusion_config.json`` go back into the checkpoint's task and generation config.
"""
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Tuple

import torch

from ..data.subword import SPM_FILE, TOKENIZER_JSON
from ..diffusion.options import GENERATION_FLAGS, flag
from ..errors import UserError
from ..models.backbone import LENGTH_HEAD_FILE as LENGTH_HEAD
from ..models.lora import ADAPTER_WEIGHTS, adapter_targets, lora_flags, plugin_keys, read_adapter_folder
from .export_hf import DECODING_KEYS, DIFFUSION_CONFIG, FORMAT
from .outputs import check_out_dir, refuse_existing, staged_dir
from .plugin_checkpoint import CHECKPOINT, backbone_state, check_state_dict, training_cfg, write_checkpoint

logger = logging.getLogger(__name__)

TASKS = ("diffusion_lm", "diffusion_instruct")


class ExportedDirError(UserError, ValueError):
    """An exported directory that cannot be converted; the message names the path and the fix."""


def read_export(src: str) -> dict:
    """``diffusion_config.json`` of ``src``, after checking that ``src`` is a complete export."""
    p = Path(src)
    if not p.is_dir():
        raise ExportedDirError(f"{src} is not a directory; pass a directory written by scripts/export_hf.py")
    if not (p / DIFFUSION_CONFIG).is_file():
        raise ExportedDirError(f"{src} has no {DIFFUSION_CONFIG}: it is not a directory written by "
                               "scripts/export_hf.py (a plain HF model is used with fairseq-train --pretrained "
                               "instead)")
    try:
        meta = json.loads((p / DIFFUSION_CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ExportedDirError(f"{p / DIFFUSION_CONFIG} is not valid JSON ({e}); export the checkpoint again") from None
    if meta.get("format") != FORMAT:
        raise ExportedDirError(f"{p / DIFFUSION_CONFIG} is not of scripts/export_hf.py (format {meta.get('format')!r})")
    if meta.get("task") not in TASKS:
        raise ExportedDirError(f"{p / DIFFUSION_CONFIG} names task {meta.get('task')!r}; known: {', '.join(TASKS)}")
    needed = ["config.json", "dict.txt"] + ([LENGTH_HEAD] if meta.get("length_head") else [])
    if meta["task"] == "diffusion_instruct":
        needed.append(TOKENIZER_JSON if meta.get("tokenizer") == "hf_tokenizer" else SPM_FILE)
    if not (p / "model.safetensors").is_file() and not (p / "model.safetensors.index.json").is_file():
        needed.append("model.safetensors")
    if meta.get("lora_adapter"):
        needed += [f"{meta['lora_adapter']}/adapter_config.json", f"{meta['lora_adapter']}/{ADAPTER_WEIGHTS}"]
    missing = [f for f in needed if not (p / f).is_file()]
    if missing:
        raise ExportedDirError(f"{src} lacks {', '.join(missing)}: the export is incomplete; export the checkpoint "
                               "again")
    return meta


def read_backbone(src: str) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """``(HF config as a dict, plugin state dict hf.*)`` via ``AutoModelForMaskedLM`` (a decoder-only backbone:
    ``AutoModelForCausalLM``); no key may be missing."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    from ..backbones import is_decoder_type

    auto = AutoModelForCausalLM if is_decoder_type(AutoConfig.from_pretrained(src).model_type) else AutoModelForMaskedLM
    hf, info = auto.from_pretrained(src, output_loading_info=True, dtype=torch.float32)
    bad = [f"{name} {sorted(info[name])[:4]}" for name in ("missing_keys", "unexpected_keys", "mismatched_keys")
           if info.get(name)]
    if bad:
        raise ExportedDirError(f"the weights of {src} do not fit its config.json ({'; '.join(bad)}); export the "
                               "checkpoint again")
    return hf.config.to_dict(), {"hf." + k: v for k, v in hf.state_dict().items()}


def read_length_head(path: Path) -> Dict[str, torch.Tensor]:
    """The exported ``LengthHead`` tensors under the plugin's ``length_head.`` prefix."""
    from safetensors.torch import load_file

    return {"length_head." + k: v for k, v in load_file(str(path)).items()}


def _dict_files(meta: dict):
    """The dictionary file names the task reads in OUT."""
    if meta["task"] == "diffusion_lm":
        return ["dict.txt"] + [f"dict.{meta[k]}.txt" for k in ("source_lang", "target_lang") if meta.get(k)]
    return ["dict.txt"]


def _arch(meta: dict, hf_config: dict) -> str:
    from fairseq.models import ARCH_MODEL_REGISTRY

    arch = meta.get("arch")
    if arch in ARCH_MODEL_REGISTRY:
        return arch
    return "xlmr_diffusion_xl" if hf_config.get("model_type") == "xlm-roberta-xl" else "xlmr_diffusion_base"


def restore_settings(cfg: dict, meta: dict, hf_config: dict) -> dict:
    """The export's language pair, prompt template, decoding defaults and dropout into ``cfg``."""
    task, gen, model = cfg["task"], cfg["generation"], cfg["model"]
    if meta["task"] == "diffusion_lm":
        task["source_lang"], task["target_lang"] = meta.get("source_lang"), meta.get("target_lang")
    task["prompt_template"] = meta.get("prompt_template")
    decoding = meta.get("decoding") or {}
    for key, option in DECODING_KEYS.items():
        if decoding.get(key) is not None:
            (gen if option in GENERATION_FLAGS else task)[flag(option)] = decoding[key]
    for key in ("max_positions", "attention_strategy"):
        if meta.get(key) is not None:
            model[key] = meta[key]
    model["dropout"] = hf_config.get("hidden_dropout_prob", model["dropout"])
    model["attention_dropout"] = hf_config.get("attention_probs_dropout_prob", model["attention_dropout"])
    return cfg


def convert_hf_dir(src: str, out: str, overwrite: bool = False) -> dict:
    """Convert the exported directory ``src`` into ``out`` (see the module docstring); returns the report
    written to ``conversion.json`` (``length_head``: whether the checkpoint has a length head)."""
    refuse_existing(out, overwrite, "conversion")
    meta = read_export(src)
    check_out_dir(out, [src])
    hf_config, state = read_backbone(src)
    flags = []
    if meta.get("lora_adapter"):
        adapter_config, adapters = read_adapter_folder(os.path.join(src, meta["lora_adapter"]))
        flags = lora_flags(adapter_config)
        state = plugin_keys(dict(state, **{"hf." + k: v for k, v in adapters.items()}),
                            adapter_targets(adapter_config))
    has_length = bool(meta.get("length_head"))
    if has_length:
        state.update(read_length_head(Path(src, LENGTH_HEAD)))
    arch = _arch(meta, hf_config)
    final = os.path.abspath(out)
    files = [CHECKPOINT, "conversion.json", SPM_FILE, TOKENIZER_JSON] + _dict_files(meta)
    with staged_dir(out, owned=files) as stage:
        for name in _dict_files(meta):
            shutil.copy(Path(src, "dict.txt"), Path(stage, name))
        has_spm = Path(src, SPM_FILE).is_file()
        if has_spm:
            shutil.copy(Path(src, SPM_FILE), Path(stage, SPM_FILE))
        elif meta.get("tokenizer") == "hf_tokenizer":  # the exported tokenizer.json (dictionary ids) encodes the text
            shutil.copy(Path(src, TOKENIZER_JSON), Path(stage, TOKENIZER_JSON))
            has_spm = True
        from ..data.dictionary import load_dictionary

        symbols = list(load_dictionary(os.path.join(stage, "dict.txt")).symbols)
        if len(symbols) != hf_config["vocab_size"]:
            raise ExportedDirError(f"{src}/dict.txt gives {len(symbols)} symbols (with <mask>) but config.json has "
                                   f"vocab_size {hf_config['vocab_size']}: dictionary and weights do not belong "
                                   "together; export the checkpoint again")
        cfg = training_cfg(final, meta["task"], arch, has_length, backbone_state(hf_config, symbols), flags)
        cfg = restore_settings(cfg, meta, hf_config)
        check_state_dict(cfg, state, src, stage)
        report = {"source": os.path.abspath(src), "task": meta["task"], "arch": arch,
                  "model_type": hf_config["model_type"], "layers": hf_config["num_hidden_layers"],
                  "hidden": hf_config["hidden_size"], "vocabulary": meta.get("vocabulary"),
                  "vocabulary_size": hf_config["vocab_size"], "tied_lm_head": bool(hf_config["tie_word_embeddings"]),
                  "length_head": has_length, "sentencepiece_model": has_spm, "lora": bool(flags),
                  "exported_from": meta.get("source_checkpoint")}
        write_checkpoint(os.path.join(stage, CHECKPOINT), cfg, state, int(meta.get("num_updates") or 0), report)
        Path(stage, "conversion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("converted %s (%s, %d × %d, %s vocabulary of %d, %s length head) → %s/%s", src, meta["task"],
                report["layers"], report["hidden"], report["vocabulary"], report["vocabulary_size"],
                "with a" if has_length else "no", out, CHECKPOINT)
    return report
