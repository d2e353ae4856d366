"""Decoder-only HuggingFace LMs (LLaMA, Qwen2, Mistral families) as diffusion backbones.

A ``*ForCausalLM`` runs with bidirectional attention: the model is always handed a 4-D attention mask
(padding keys only, or the prefix-LM layout), which HF applies as given, so no causal mask is added
(as the official ``LlamaNonCausalModel`` drops it); ``config.is_causal = False`` records it, so that
transformers builds a bidirectional mask too when the exported model is used without one.  It
predicts the token at each position (no shift), as the official ``LlamaMaskedLM`` does.

The vocabulary is gathered to the task dictionary as for XLM-R (:mod:`.vocab`); the symbols the
backbone lacks — ``<mask>``, and ``<pad>`` for LLaMA — get the mean of the backbone's input (and
output) embedding rows, as the official code initialises the special tokens it adds.  Rotary
positions are relative, so the explicit position ids of :mod:`.prompt_cache` (offset ``pad + 1``)
change nothing.
"""
import logging
from typing import Dict

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _hf():
    import transformers

    return transformers


def config_from_preset(cfg, vocab_size: int, pad: int):
    """A ``LlamaConfig`` / ``Qwen2Config`` / ``MistralConfig`` from the arch preset's fields (random init)."""
    from transformers import AutoConfig

    return AutoConfig.for_model(
        str(cfg.backbone), vocab_size=vocab_size, hidden_size=cfg.encoder_embed_dim,
        num_hidden_layers=cfg.encoder_layers, num_attention_heads=cfg.encoder_attention_heads,
        num_key_value_heads=cfg.encoder_attention_heads, intermediate_size=cfg.encoder_ffn_embed_dim,
        max_position_embeddings=cfg.max_positions + pad + 1, pad_token_id=pad, bos_token_id=0, eos_token_id=2,
        tie_word_embeddings=True, is_causal=False,
    )


def apply_runtime_options(config, cfg):
    """Attention dropout and implementation, bidirectional attention."""
    config.attention_dropout = cfg.attention_dropout
    config._attn_implementation = str(cfg.attn_implementation)
    config.is_causal = False
    config.use_cache = False
    return config


def model_from_config(config):
    return _hf().AutoModelForCausalLM.from_config(config)


def set_vocabulary(hf_model, embed: torch.Tensor, head: torch.Tensor, tie: bool) -> None:
    """Install ``[V, H]`` input embeddings and output head (one tensor when ``tie``)."""
    vocab, hidden = embed.shape
    emb = nn.Embedding(vocab, hidden, padding_idx=hf_model.config.pad_token_id)
    emb.weight = nn.Parameter(embed.detach().clone())
    hf_model.model.embed_tokens = emb
    out = nn.Linear(hidden, vocab, bias=False)
    out.weight = emb.weight if tie else nn.Parameter(head.detach().clone())
    hf_model.lm_head = out
    hf_model.config.vocab_size = vocab
    hf_model.config.tie_word_embeddings = tie


def gather_rows(table: torch.Tensor, rows: torch.Tensor, missing_at: torch.Tensor) -> torch.Tensor:
    """``table`` ``[V_hf, H]`` gathered to ``[len(rows), H]`` (``rows`` ``[n]`` long), the rows where
    ``missing_at`` (``[n]`` bool) is set replaced by the mean of ``table``'s rows."""
    out = table[rows].clone()
    if bool(missing_at.any()):
        out[missing_at] = table.mean(dim=0, keepdim=True).to(out.dtype)
    return out


def load_pretrained(pretrained: str, symbols, cfg, vocab: Dict[str, int], pad: int):
    """A ``*ForCausalLM`` from ``pretrained`` with its vocabulary gathered to ``symbols`` (missing: mean rows)."""
    tf = _hf()
    config = apply_runtime_options(tf.AutoConfig.from_pretrained(pretrained), cfg)
    hf_model = tf.AutoModelForCausalLM.from_pretrained(pretrained, config=config, dtype=torch.float32)
    found = torch.tensor([s in vocab for s in symbols])
    rows = torch.tensor([vocab.get(s, 0) for s in symbols], dtype=torch.long)
    missing = [s for s, ok in zip(symbols, found.tolist()) if not ok]
    if missing:
        logger.info("%d of %d dictionary symbols are not in %s's vocabulary and start from the mean embedding "
                    "(as the official code initialises the tokens it adds): %s", len(missing), len(symbols),
                    pretrained, missing[:10])
    embed = hf_model.get_input_embeddings().weight
    head = hf_model.get_output_embeddings().weight
    tie = bool(getattr(config, "tie_word_embeddings", False))
    with torch.no_grad():
        hf_model.config.pad_token_id = pad
        set_vocabulary(hf_model, gather_rows(embed, rows, ~found), gather_rows(head, rows, ~found), tie)
    logger.info("backbone %s (%s, decoder-only, bidirectional): %d of %d vocabulary rows kept", pretrained,
                config.model_type, int(found.sum()), embed.size(0))
    return hf_model


def truncate_layers(hf_model, keep: int):
    """Keep the first ``keep`` decoder layers (0 = all); the config records the new depth."""
    layers = hf_model.model.layers
    if keep <= 0 or keep >= len(layers):
        return hf_model
    hf_model.model.layers = layers[:keep]
    hf_model.config.num_hidden_layers = keep
    if getattr(hf_model.config, "layer_types", None):
        hf_model.config.layer_types = hf_model.config.layer_types[:keep]
    logger.info("backbone truncated to its first %d of %d layers (--backbone-layers)", keep, len(layers))
    return hf_model
