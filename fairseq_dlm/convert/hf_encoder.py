"""BERT / RoBERTa / XLM-R encoder → a standard XLM-R masked-LM directory (shared by all converters).

The output is what ``AutoModelForMaskedLM.from_pretrained`` and ``--pretrained`` read from a real
``xlm-roberta-base`` directory: ``config.json`` (``XLMRobertaConfig``, architecture
``XLMRobertaForMaskedLM``), ``model.safetensors`` (float32; ``lm_head.decoder`` is tied to the word
embeddings and its bias to ``lm_head.bias``, so neither is stored) and the tokenizer files.

Layout changes (SPEC §3, ../shared/docs/DATA.md §4):

* **positions**: BERT numbers positions from 0, XLM-R from ``pad + 1``
  (``create_position_ids_from_input_ids``). A BERT table ``P`` ``[n, H]`` becomes ``P'``
  ``[n + pad + 1, H]`` with ``P'[pad + 1 + i] = P[i]``. Rows ``0..pad`` are **zeros**: XLM-R never
  addresses rows below ``pad`` and addresses row ``pad`` only for padding tokens, whose outputs are
  masked (HF likewise initialises the ``padding_idx`` row with zeros). Exact for right-padded inputs.
  RoBERTa / XLM-R tables are already offset and are copied unchanged.
* **token types**: row 0 only (``type_vocab_size=1``); XLM-R always feeds type 0.
* **MLM head**: BERT's ``cls.predictions.transform.{dense,LayerNorm}`` + ``cls.predictions.bias`` or
  RoBERTa's ``lm_head.{dense,layer_norm,bias}`` are kept when the source has them; missing ones are
  initialised from a fixed seed (``dense.weight ~ N(0, initializer_range)``, biases 0, LayerNorm
  weight 1) and logged by name.
"""
import json
import logging
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import torch

from .outputs import check_out_dir, staged_dir

logger = logging.getLogger(__name__)

# model_type → True when positions start at 0 (BERT) and must be shifted by pad + 1
ENCODER_TYPES = {"bert": True, "roberta": False, "xlm-roberta": False}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (
    "sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "added_tokens.json",
)
HEAD_KEYS = (
    "lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias",
    "lm_head.bias",
)
TIED_KEYS = ("lm_head.decoder.weight", "lm_head.decoder.bias")  # not stored: tied on load
# every file a conversion may write: an earlier conversion's that are not written again are removed
OUTPUT_FILES = ("config.json", *WEIGHT_FILES, *TOKENIZER_FILES, "dict.txt")
# HF source module (attribute path on the *ForMaskedLM) → our lm_head prefix, per model family
_HEAD_SOURCES = {
    "bert": {"cls.predictions.transform.dense": "lm_head.dense",
             "cls.predictions.transform.LayerNorm": "lm_head.layer_norm", "cls.predictions": "lm_head"},
    "roberta": {"lm_head.dense": "lm_head.dense", "lm_head.layer_norm": "lm_head.layer_norm", "lm_head": "lm_head"},
}


def xlmr_config(*, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, ffn_size: int,
                max_positions: int, pad: int, eps: float = 1e-12, hidden_act: str = "gelu",
                initializer_range: float = 0.02, bos: int = 0, eos: int = 2):
    """The ``XLMRobertaConfig`` of an output directory; ``max_positions`` includes the ``pad + 1`` offset rows."""
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=ffn_size, max_position_embeddings=max_positions,
        type_vocab_size=1, layer_norm_eps=eps, hidden_act=hidden_act, initializer_range=initializer_range,
        pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=True,
        architectures=["XLMRobertaForMaskedLM"],
    )


def shift_positions(table: torch.Tensor, pad: int) -> torch.Tensor:
    """BERT ``[n, H]`` position table → XLM-R ``[n + pad + 1, H]``: rows ``pad+1..`` = ``table``, rows ``0..pad`` = 0."""
    out = table.new_zeros(table.size(0) + pad + 1, table.size(1))
    out[pad + 1:] = table
    return out


def init_lm_head(hidden: int, vocab_size: int, seed: int, std: float = 0.02) -> Dict[str, torch.Tensor]:
    """A fresh MLM head from ``seed`` (same numbers on every machine): the five ``HEAD_KEYS``."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "lm_head.dense.weight": torch.randn(hidden, hidden, generator=gen) * std,
        "lm_head.dense.bias": torch.zeros(hidden),
        "lm_head.layer_norm.weight": torch.ones(hidden),
        "lm_head.layer_norm.bias": torch.zeros(hidden),
        "lm_head.bias": torch.zeros(vocab_size),
    }


def xlmr_state_dict(encoder: Dict[str, torch.Tensor], head: Dict[str, torch.Tensor], *, pad: int,
                    positions_from_zero: bool, seed: int, std: float = 0.02) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """``(state, initialised)``: an ``XLMRobertaForMaskedLM`` state dict and the head keys made from ``seed``.

    ``encoder`` uses ``BertModel`` / ``RobertaModel`` keys (``embeddings.*``, ``encoder.layer.*``);
    ``head`` holds whichever ``HEAD_KEYS`` the source has.
    """
    state = {}
    for key, value in encoder.items():
        if key == "embeddings.position_embeddings.weight" and positions_from_zero:
            value = shift_positions(value, pad)
        elif key == "embeddings.token_type_embeddings.weight":
            value = value[:1]
        state["roberta." + key] = value.detach().to(torch.float32).contiguous()
    hidden = state["roberta.embeddings.word_embeddings.weight"].shape
    fresh = init_lm_head(hidden[1], hidden[0], seed, std)
    initialised = [k for k in HEAD_KEYS if k not in head]
    for key in HEAD_KEYS:
        state[key] = (head[key] if key in head else fresh[key]).detach().to(torch.float32).contiguous()
    if initialised:
        logger.warning("MLM head weights missing in the source, initialised with seed %d: %s", seed, ", ".join(initialised))
    return state, initialised


def expected_keys(config) -> set:
    """The keys ``XLMRobertaForMaskedLM(config)`` loads from disk (tied decoder excluded); built on the meta device."""
    from transformers import XLMRobertaForMaskedLM

    with torch.device("meta"):
        model = XLMRobertaForMaskedLM(config)
    return set(model.state_dict()) - set(TIED_KEYS)


def write_xlmr_dir(out_dir: str, state: Dict[str, torch.Tensor], config) -> str:
    """Write ``config.json`` + ``model.safetensors`` into ``out_dir`` (created); the keys must be exactly
    ``expected_keys(config)``. The converters write into a fresh ``outputs.staged_dir``."""
    from safetensors.torch import save_file

    want, have = expected_keys(config), set(state)
    if want != have:
        raise ValueError(
            f"internal error: converted weights do not match XLMRobertaForMaskedLM "
            f"(missing {sorted(want - have)[:5]}, unexpected {sorted(have - want)[:5]})"
        )
    os.makedirs(out_dir, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    return out_dir


def _check_encoder_dir(src_dir: str) -> dict:
    """The source ``config.json`` as a dict, or a clear error naming the file and the fix."""
    cfg_path = os.path.join(src_dir, "config.json")
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"{src_dir} is not a directory; pass a local HuggingFace encoder directory "
                                "written by save_pretrained() (config.json + weights)")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{cfg_path} not found: {src_dir} is not a HuggingFace model directory "
                                "(write one with model.save_pretrained(DIR))")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    model_type = cfg.get("model_type")
    if model_type not in ENCODER_TYPES:
        raise ValueError(f"{cfg_path} has model_type={model_type!r}; only {sorted(ENCODER_TYPES)} encoders "
                         "(post-LayerNorm, absolute positions) can be converted to XLM-R")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{cfg_path}: position_embedding_type={cfg['position_embedding_type']!r} is not "
                         "absolute; XLM-R has absolute positions only")
    if not any(os.path.isfile(os.path.join(src_dir, f)) for f in WEIGHT_FILES):
        raise FileNotFoundError(f"{src_dir} has config.json but no weights (one of {', '.join(WEIGHT_FILES)})")
    return cfg


def _split_source(model, family: str, missing: Sequence[str]):
    """``(encoder, head)`` state dicts in our naming from a loaded HF ``*ForMaskedLM``."""
    encoder = {k: v for k, v in model.base_model.state_dict().items()
               if k.startswith(("embeddings.", "encoder.")) and k.endswith((".weight", ".bias"))}
    head = {}
    for src, dst in _HEAD_SOURCES[family].items():
        module = model.get_submodule(src)
        names = ("bias",) if dst == "lm_head" else ("weight", "bias")
        for name in names:
            if f"{src}.{name}" not in missing:
                head[f"{dst}.{name}"] = getattr(module, name)
    return encoder, head


def copy_tokenizer_files(src_dir: str, out_dir: str) -> List[str]:
    """Copy the ``TOKENIZER_FILES`` present in ``src_dir``; returns their names."""
    copied = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(src_dir, f))]
    for name in copied:
        shutil.copy(os.path.join(src_dir, name), os.path.join(out_dir, name))
    if copied:
        logger.info("tokenizer files copied from %s: %s", src_dir, ", ".join(copied))
    return copied


def convert_hf_encoder(src_dir: str, out_dir: str, seed: int = 0) -> dict:
    """Convert a local BERT / RoBERTa / XLM-R encoder directory into an XLM-R masked-LM directory.

    Returns a summary ``{"out", "vocab", "hidden", "layers", "initialised", "tokenizer_files"}``.
    """
    from transformers import AutoModelForMaskedLM

    cfg = _check_encoder_dir(src_dir)
    check_out_dir(out_dir, [src_dir])          # before loading: a bad out_dir fails in milliseconds
    model_type = cfg["model_type"]
    family = "bert" if model_type == "bert" else "roberta"
    model, info = AutoModelForMaskedLM.from_pretrained(src_dir, output_loading_info=True, dtype=torch.float32)
    src = model.config
    pad = src.pad_token_id if src.pad_token_id is not None else (0 if family == "bert" else 1)
    encoder, head = _split_source(model, family, info["missing_keys"])
    if not src.tie_word_embeddings:
        logger.warning("%s: the source's MLM decoder is untied; the output ties it to the word embeddings", src_dir)
    if head and src.hidden_act != "gelu":
        logger.warning("%s: hidden_act=%s but XLM-R's MLM head always uses gelu; the kept head is not exact",
                       src_dir, src.hidden_act)
    state, initialised = xlmr_state_dict(encoder, head, pad=pad, positions_from_zero=ENCODER_TYPES[model_type],
                                         seed=seed, std=src.initializer_range)
    words = state["roberta.embeddings.word_embeddings.weight"]
    config = xlmr_config(
        vocab_size=words.size(0), hidden_size=src.hidden_size, num_layers=src.num_hidden_layers,
        num_heads=src.num_attention_heads, ffn_size=src.intermediate_size,
        max_positions=state["roberta.embeddings.position_embeddings.weight"].size(0), pad=pad,
        eps=src.layer_norm_eps, hidden_act=src.hidden_act, initializer_range=src.initializer_range,
        bos=src.bos_token_id if src.bos_token_id is not None else 0,
        eos=src.eos_token_id if src.eos_token_id is not None else 2,
    )
    with staged_dir(out_dir, OUTPUT_FILES) as tmp:   # out_dir changes only once everything is written
        write_xlmr_dir(tmp, state, config)
        copied = copy_tokenizer_files(src_dir, tmp)
    if not copied:
        logger.warning("%s has no tokenizer file (%s); add one to %s before training", src_dir,
                       " or ".join(TOKENIZER_FILES[:2]), out_dir)
    logger.info("converted %s (%s, %d layers) → %s", src_dir, model_type, src.num_hidden_layers, out_dir)
    return {"out": out_dir, "vocab": words.size(0), "hidden": src.hidden_size, "layers": src.num_hidden_layers,
            "initialised": initialised, "tokenizer_files": copied}
