"""Building the HuggingFace XLM-R masked LM that serves as the diffusion backbone (SPEC §3).

Three routes, all ending in an ``*ForMaskedLM`` whose vocabulary is exactly the task dictionary:

* ``--pretrained DIR``: ``AutoModelForMaskedLM.from_pretrained(DIR)``, then the input embeddings
  and the LM head (weight and bias) are gathered to the dictionary's symbols (vocabulary pruning);
  a directory written by ``scripts/export_hf.py`` may also hold ``length_head.safetensors``, which
  :func:`load_length_head` puts into a model built with ``--length-head``;
* no ``--pretrained``: a randomly initialised backbone from the arch preset's sizes;
* a fairseq checkpoint: the backbone config saved in the checkpoint's task state (no weights
  are read from disk; the checkpoint's state dict fills them).
"""
import logging
import os
from typing import Optional

import torch
from torch import nn

from ..backbones import is_decoder_type
from ..errors import ConfigError, MissingFileError
from .lora import ADAPTER_DIR
from .vocab import load_backbone_vocab, map_dictionary, report_missing

logger = logging.getLogger(__name__)

# the length head's weights in an exported HF directory (scripts/export_hf.py), keys of LengthHead
LENGTH_HEAD_FILE = "length_head.safetensors"


def _hf():
    # transformers is imported lazily: it costs ~6 s and is only needed when a model is built
    import transformers

    return transformers


def config_from_preset(cfg, vocab_size: int, pad: int):
    """An ``XLMRobertaConfig`` (or ``XLMRobertaXLConfig``) from the arch preset's fields."""
    tf = _hf()
    cls = tf.XLMRobertaXLConfig if str(cfg.backbone) == "xlmr_xl" else tf.XLMRobertaConfig
    return cls(
        vocab_size=vocab_size,
        hidden_size=cfg.encoder_embed_dim,
        num_hidden_layers=cfg.encoder_layers,
        num_attention_heads=cfg.encoder_attention_heads,
        intermediate_size=cfg.encoder_ffn_embed_dim,
        max_position_embeddings=cfg.max_positions + pad + 1,
        type_vocab_size=1,
        pad_token_id=pad,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )


def apply_runtime_options(config, cfg):
    """Dropout and attention implementation from the fairseq model config."""
    config.hidden_dropout_prob = cfg.dropout
    config.attention_probs_dropout_prob = cfg.attention_dropout
    config._attn_implementation = str(cfg.attn_implementation)
    return config


def model_from_config(config):
    """A randomly initialised ``*ForMaskedLM`` for ``config``."""
    tf = _hf()
    cls = tf.XLMRobertaXLForMaskedLM if config.model_type == "xlm-roberta-xl" else tf.XLMRobertaForMaskedLM
    return cls(config)


def set_vocabulary(hf_model, embed: torch.Tensor, dec_weight: torch.Tensor, dec_bias: torch.Tensor, tie: bool):
    """Install ``[V, H]`` embeddings and LM-head decoder weight/bias on ``hf_model``.

    The decoder's bias and ``lm_head.bias`` become one parameter; with ``tie`` the decoder weight
    *is* the embedding weight (full dictionary), otherwise they are separate (pruned, SPEC §2.2).
    """
    vocab, hidden = embed.shape
    pad = hf_model.config.pad_token_id
    emb = nn.Embedding(vocab, hidden, padding_idx=pad)
    emb.weight = nn.Parameter(embed.detach().clone())
    hf_model.base_model.embeddings.word_embeddings = emb
    head = hf_model.lm_head
    decoder = nn.Linear(hidden, vocab)
    decoder.weight = emb.weight if tie else nn.Parameter(dec_weight.detach().clone())
    decoder.bias = nn.Parameter(dec_bias.detach().clone())
    head.decoder = decoder
    head.bias = decoder.bias
    hf_model.config.vocab_size = vocab
    hf_model.config.tie_word_embeddings = tie


def check_pretrained_dir(pretrained: str) -> None:
    """``--pretrained`` names a local HF model directory (else a MissingFileError saying what it lacks)."""
    if not os.path.isdir(pretrained):
        raise MissingFileError(
            f"--pretrained {pretrained!r} is not a directory; pass a local HuggingFace model directory "
            "(config.json, model.safetensors or pytorch_model.bin, and sentencepiece.bpe.model or "
            "tokenizer.json), e.g. one written by save_pretrained()"
        )
    if not os.path.isfile(os.path.join(pretrained, "config.json")):
        raise MissingFileError(f"--pretrained {pretrained!r} has no config.json; it is not a HuggingFace model directory")


def load_pretrained(pretrained: str, symbols, cfg):
    """The ``*ForMaskedLM`` of a local HF directory, vocabulary gathered to ``symbols``."""
    check_pretrained_dir(pretrained)
    tf = _hf()
    vocab = load_backbone_vocab(pretrained)
    config = apply_runtime_options(tf.AutoConfig.from_pretrained(pretrained), cfg)
    hf_model = tf.AutoModelForMaskedLM.from_pretrained(pretrained, config=config, dtype=torch.float32)
    rows, missing = map_dictionary(symbols, vocab)
    report_missing(missing, len(symbols), pretrained)
    full_vocab = hf_model.base_model.embeddings.word_embeddings.weight.size(0)
    if int(rows.max()) >= full_vocab:
        raise ConfigError(
            f"the tokenizer files in {pretrained} name ids up to {int(rows.max())} but the model's "
            f"embedding has {full_vocab} rows: tokenizer and weights do not belong together"
        )
    identity = len(symbols) <= full_vocab and torch.equal(rows, torch.arange(len(symbols)))
    # an identity mapping keeps the directory's own tying: an exported pruned-vocabulary model
    # (scripts/export_hf.py) maps onto its dictionary one to one but has its own LM-head matrix
    tie = identity and bool(getattr(config, "tie_word_embeddings", True))
    head = hf_model.lm_head
    with torch.no_grad():
        set_vocabulary(
            hf_model,
            hf_model.base_model.embeddings.word_embeddings.weight[rows],
            head.decoder.weight[rows],
            head.bias[rows],
            tie=tie,
        )
    logger.info(
        "backbone %s: %d of %d vocabulary rows kept (%s embeddings)",
        pretrained, len(symbols), full_vocab,
        "tied" if tie else ("untied, as saved" if identity else "untied, pruned"),
    )
    return hf_model


def build_backbone(cfg, symbols, pad: int, saved_config: Optional[dict] = None):
    """The ``*ForMaskedLM`` (or decoder-only ``*ForCausalLM``, :mod:`.decoder_backbone`) for the task
    dictionary ``symbols`` (see the module docstring)."""
    tf = _hf()
    if saved_config is None and cfg.pretrained and os.path.isdir(os.path.join(cfg.pretrained, ADAPTER_DIR)):
        logger.warning("%s/%s (LoRA adapters) is not applied: --pretrained starts from the base weights of the "
                       "export; to start from the adapted model export with --merge-lora, or convert the export "
                       "(scripts/convert_checkpoint.py hf) and pass --finetune-from-model", cfg.pretrained, ADAPTER_DIR)
    if is_decoder_type(_backbone_type(cfg, saved_config)):
        return _build_decoder(cfg, symbols, pad, saved_config)
    if saved_config is not None:
        cls = tf.XLMRobertaXLConfig if saved_config.get("model_type") == "xlm-roberta-xl" else tf.XLMRobertaConfig
        config = apply_runtime_options(cls.from_dict(saved_config), cfg)
        if config.vocab_size != len(symbols):
            return None  # the caller reports the dictionary mismatch
        hf_model = model_from_config(config)
        tie = bool(config.tie_word_embeddings)
        set_vocabulary(hf_model, *_vocab_params(hf_model), tie=tie)
        return hf_model
    if cfg.pretrained:
        return truncate_layers(load_pretrained(cfg.pretrained, symbols, cfg), cfg.backbone_layers)
    config = apply_runtime_options(config_from_preset(cfg, len(symbols), pad), cfg)
    hf_model = model_from_config(config)
    set_vocabulary(hf_model, *_vocab_params(hf_model), tie=True)
    return hf_model


def _backbone_type(cfg, saved_config: Optional[dict]) -> str:
    """The HF ``model_type`` to build: the checkpoint's, ``--pretrained``'s, else the arch preset's."""
    if saved_config is not None:
        return str(saved_config.get("model_type"))
    if cfg.pretrained and os.path.isfile(os.path.join(cfg.pretrained, "config.json")):
        import json

        with open(os.path.join(cfg.pretrained, "config.json"), encoding="utf-8") as f:
            return str(json.load(f).get("model_type"))
    return str(cfg.backbone)


def _build_decoder(cfg, symbols, pad: int, saved_config: Optional[dict]):
    from . import decoder_backbone as dec

    if saved_config is not None:
        config = dec.apply_runtime_options(_hf().AutoConfig.for_model(**saved_config), cfg)
        if config.vocab_size != len(symbols):
            return None  # the caller reports the dictionary mismatch
        hf_model = dec.model_from_config(config)
        emb = hf_model.get_input_embeddings().weight
        dec.set_vocabulary(hf_model, emb, hf_model.get_output_embeddings().weight, bool(config.tie_word_embeddings))
        return hf_model
    if cfg.pretrained:
        check_pretrained_dir(cfg.pretrained)
        hf_model = dec.load_pretrained(cfg.pretrained, symbols, cfg, load_backbone_vocab(cfg.pretrained), pad)
        return dec.truncate_layers(hf_model, cfg.backbone_layers)
    config = dec.apply_runtime_options(dec.config_from_preset(cfg, len(symbols), pad), cfg)
    hf_model = dec.model_from_config(config)
    emb = hf_model.get_input_embeddings().weight
    dec.set_vocabulary(hf_model, emb, emb, tie=True)
    return hf_model


def load_length_head(head: Optional[nn.Module], pretrained: str) -> None:
    """Fill ``head`` (a ``LengthHead``, or None) from ``PRETRAINED/length_head.safetensors`` if there is one.

    Called only when a model is built from ``--pretrained`` (a checkpoint's state replaces the head
    anyway).  The file holds the head's state dict (keys ``layer.*``, ``mlp.0.*``, ``mlp.2.*``) and
    its sizes as metadata; a model without ``--length-head`` ignores it (logged), a head of other
    sizes is refused with the file named."""
    path = os.path.join(pretrained, LENGTH_HEAD_FILE)
    if not os.path.isfile(path):
        return
    if head is None:
        logger.info("%s ignored: the model is built without --length-head (pass it to start from the exported "
                    "length head)", path)
        return
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    own = head.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unknown {k}" for k in state if k not in own]
    problems += [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    heads = getattr(getattr(head, "layer", None), "self_attn", None)
    if heads is not None and meta.get("heads") and int(meta["heads"]) != heads.num_heads:
        problems.append(f"attention heads: file {meta['heads']} vs model {heads.num_heads}")
    if problems:
        raise ConfigError(
            f"{path} does not fit the length head of this model (" + "; ".join(problems[:4])
            + (", …" if len(problems) > 4 else "") + "): it was exported with another backbone. Pass --pretrained "
            "the directory it was exported with, or build without --length-head"
        )
    head.load_state_dict(state)
    logger.info("length head loaded from %s (%d tensors, %d length classes)", path, len(state),
                int(state["mlp.2.weight"].shape[0]) if "mlp.2.weight" in state else -1)


ARCHITECTURE_FIELDS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "hidden_act", "layer_norm_eps", "type_vocab_size", "position_embedding_type",
)


def check_pretrained_matches(pretrained: str, backbone_layers: int, saved_config: dict, checkpoint: str) -> None:
    """Fail when ``--pretrained`` describes another network than the backbone saved in ``checkpoint``.

    Only ``config.json`` is read (the checkpoint's weights replace the pretrained ones anyway);
    the vocabulary size and weight tying are the checkpoint's (they follow from its dictionary).
    """
    path = os.path.join(pretrained, "config.json")
    if not os.path.isfile(path):
        raise MissingFileError(
            f"--pretrained {pretrained!r} has no config.json; leave --pretrained out when resuming or "
            f"fine-tuning: {checkpoint} carries its backbone config"
        )
    given = _hf().AutoConfig.from_pretrained(pretrained).to_dict()
    if backbone_layers > 0:
        given["num_hidden_layers"] = min(backbone_layers, given.get("num_hidden_layers", backbone_layers))
    diff = [
        f"{k} {given.get(k)!r} vs {saved_config.get(k)!r}"
        for k in ARCHITECTURE_FIELDS
        if given.get(k) != saved_config.get(k)
    ]
    if diff:
        raise ConfigError(
            f"--pretrained {pretrained} does not match the backbone saved in {checkpoint} ("
            + "; ".join(diff) + "; --pretrained vs checkpoint). Pass the --pretrained (and --backbone-layers) "
            "the checkpoint was trained with, or leave --pretrained out: the checkpoint carries its backbone config"
        )


def truncate_layers(hf_model, keep: int):
    """Keep the first ``keep`` encoder layers (0 = all); the config records the new depth."""
    layers = hf_model.base_model.encoder.layer
    if keep <= 0 or keep >= len(layers):
        return hf_model
    hf_model.base_model.encoder.layer = layers[:keep]
    hf_model.config.num_hidden_layers = keep
    logger.info("backbone truncated to its first %d of %d layers (--backbone-layers)", keep, len(layers))
    return hf_model


def _vocab_params(hf_model):
    head = hf_model.lm_head
    return hf_model.base_model.embeddings.word_embeddings.weight, head.decoder.weight, head.bias
