"""The official code's LLaMA diffusion models (``DiscreteDiffusionLlamaModel``) → plugin checkpoints.

The official ``load_model_tokenizer`` takes the LLaMA route when ``args.json``'s ``pretrained`` (or
``config``) contains "llama".  Its model is ``LlamaMaskedLM``: a ``LlamaModel`` whose causal mask is
dropped (padding mask only) and an LM head predicting the token at each position, wrapped as
``model.``; its state dict::

    model.model.embed_tokens.weight, model.model.layers.N.…, model.model.norm.weight, model.lm_head.weight
    model.model.layers.N.self_attn.rotary_emb.inv_freq     (transformers < 4.31: recomputed, dropped)
    fake_layer                                              (a zero vector for LoRA + checkpointing: dropped)

or, trained with ``--lora``, only the adapters (:mod:`.official_lora`).  The plugin's decoder-only
backbone with full attention computes the same function (``decoder_diffusion``, 4-D padding-only mask;
rotary positions are relative, so the plugin's position offset changes nothing).

**Vocabulary.**  Official token ids are the SentencePiece ids of LLaMA's ``tokenizer.model``
(``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, pieces), then the special tokens the tokenizer lacks, added in the
order ``<pad>``, ``<mask>`` (``_get_missing_special_tokens``), then ``<unused{i}>`` fillers up to
``vocab_pad_to_multiple``.  The plugin's dictionary is fairseq's (``<s> <pad> </s> <unk>``, pieces
3…, fillers, ``<mask>`` last); each dictionary symbol takes the official row of the same token, so
the logits over every symbol are the official ones, permuted.

**Attention.**  Only ``attention_strategy`` full converts.  ``causal`` is an autoregressive LLaMA, and
for the other strategies the official forward hands ``LlamaNonCausalModel`` a 3-D 0/1 mask, which it
*adds* to the attention scores (``expanded_attn_mask = attention_mask[:, None]``) instead of turning
the zeros into −inf: such a model was trained with neither prefix-LM nor full attention, and no
plugin option computes what it learned.
"""
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .official import (OfficialCheckpointError, Parts, Release, check_finite, find_tokenizer, need_base,
                       read_weights)

logger = logging.getLogger(__name__)

SPM_FILE = "tokenizer.model"
_DROPPED_SUFFIXES = (".rotary_emb.inv_freq",)


def is_llama_release(args_model: dict) -> bool:
    """The official code's own test (``"llama" in model_type.lower()`` in ``load_model_tokenizer``)."""
    return "llama" in str(args_model.get("pretrained") or args_model.get("config") or "").lower()


def check_attention(args_model: dict, args_path: Path) -> None:
    strategy = args_model.get("attention_strategy", "full")
    if strategy == "causal":
        raise OfficialCheckpointError(f"{args_path}: attention_strategy causal is an autoregressive LLaMA "
                                      "(LlamaForCausalLM), not a diffusion model this plugin runs")
    if strategy != "full":
        raise OfficialCheckpointError(
            f"{args_path}: attention_strategy {strategy!r} cannot be converted: for LLaMA the official forward adds "
            "its 3-D 0/1 attention mask to the attention scores instead of masking, so the model learned neither "
            "prefix-LM nor full attention and no plugin option reproduces it (only 'full' converts)")


# ------------------------------------------------------------------------------ vocabulary
def _tokenizer_specials(base_dir: Optional[str]) -> Dict[str, str]:
    """``{"pad_token": "<unk>", …}`` as the base tokenizer's special_tokens_map.json / tokenizer_config.json
    name them."""
    import json

    out = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = Path(base_dir or "", name)
        if base_dir and path.is_file():
            for key, value in json.loads(path.read_text(encoding="utf-8")).items():
                if key.endswith("_token") and value:
                    out[key] = value["content"] if isinstance(value, dict) else str(value)
    return out


def official_vocabulary(spm_path: Path, base_dir: Optional[str], pad_to_multiple: int) -> dict:
    """The official ids: ``{"pieces": V, "pad": id, "mask": id, "added": [...], "unused": n, "size": N}``
    (``size`` = the official embedding rows)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
    size = sp.get_piece_size()
    specials = _tokenizer_specials(base_dir)
    ids, added = {}, []
    for role, default in (("pad", "<pad>"), ("mask", "<mask>")):
        token = specials.get(f"{role}_token")
        if token is not None and (token == sp.id_to_piece(sp.unk_id()) or sp.piece_to_id(token) != sp.unk_id()):
            ids[role] = sp.piece_to_id(token)
        else:
            ids[role] = size + len(added)
            added.append(token or default)
    current = size + len(added)
    target = math.ceil(current / max(int(pad_to_multiple or 1), 1)) * max(int(pad_to_multiple or 1), 1)
    return dict(pieces=size, added=added, unused=target - current, size=target, **ids,
                first=[sp.id_to_piece(i) for i in range(min(3, size))])


def dictionary_rows(spm_path: Path, vocab: dict) -> Tuple[List[str], torch.Tensor]:
    """``(dict.txt lines, rows)``: ``rows[i]`` is the official id of dictionary symbol ``i``
    (``<s> <pad> </s> <unk>``, pieces 3…V-1, ``<unused{i}>``, ``<mask>``)."""
    from ..data.dictionary import full_dictionary_lines

    v, first_added, unused = vocab["pieces"], vocab["pieces"] + len(vocab["added"]), vocab["unused"]
    rows = [1, vocab["pad"], 2, 0] + list(range(3, v)) + [first_added + i for i in range(unused)] + [vocab["mask"]]
    lines = full_dictionary_lines(str(spm_path)) + [f"<unused{i}> 1\n" for i in range(unused)]
    return lines, torch.tensor(rows, dtype=torch.long)


# ------------------------------------------------------------------------------ weights
def rename(state: Dict[str, torch.Tensor], source: str) -> Dict[str, torch.Tensor]:
    """Official keys → plugin keys (``model.`` → ``hf.``), the dropped buffers removed."""
    out, unknown = {}, []
    for key, value in state.items():
        if key == "fake_layer" or key.endswith(_DROPPED_SUFFIXES):
            continue
        if key.startswith("model.model.") or key.startswith("model.lm_head."):
            out["hf." + key[len("model."):]] = value
        else:
            unknown.append(key)
    if unknown or "hf.model.embed_tokens.weight" not in out:
        found = f"; found {', '.join(unknown[:4])}" if unknown else ""
        raise OfficialCheckpointError(f"{source} is not a checkpoint of the official DiscreteDiffusionLlamaModel "
                                      f"(expected model.model.* and model.lm_head.weight{found})")
    return out


def add_official_rows(base: Dict[str, torch.Tensor], vocab: dict, source: str) -> Dict[str, torch.Tensor]:
    """The pretrained LLaMA's embedding and head resized as the official code resizes them before training:
    the tokens it adds (``<pad>``, ``<mask>``) get the mean of the pretrained rows."""
    if vocab["unused"]:
        raise OfficialCheckpointError(f"{source}: the run padded the vocabulary with {vocab['unused']} <unused> tokens "
                    "(vocab_pad_to_multiple), whose rows the official code initialised at random and the adapter "
                    "folder does not hold; it cannot be rebuilt")
    out = dict(base)
    for key in ("model.model.embed_tokens.weight", "model.lm_head.weight"):
        if key not in out:
            continue
        table = out[key]
        if table.size(0) != vocab["pieces"]:
            raise OfficialCheckpointError(f"{source}: the base model's {key[len('model.'):]} has {table.size(0)} rows "
                                          f"but its tokenizer.model {vocab['pieces']} pieces; a base tokenizer with "
                                          "added tokens is not supported")
        mean = table.float().mean(0, keepdim=True).to(table.dtype)
        out[key] = torch.cat([table, mean.expand(len(vocab["added"]), -1)])
    return out


def gather_vocabulary(state: Dict[str, torch.Tensor], rows: torch.Tensor, tie: bool) -> bool:
    """Gather the embedding and LM-head rows to the dictionary (in place); returns whether they are tied."""
    embed = state["hf.model.embed_tokens.weight"]
    head = state.get("hf.lm_head.weight")
    tied = head is None or (tie and torch.equal(head, embed))
    state["hf.model.embed_tokens.weight"] = embed[rows].clone()
    state["hf.lm_head.weight"] = state["hf.model.embed_tokens.weight"] if tied else head[rows].clone()
    return tied


def hf_config(config_dir: str, state: Dict[str, torch.Tensor], symbols: int, source: str) -> dict:
    """The base model's config (``config_dir``) checked against the weights, re-keyed to the dictionary."""
    from transformers import AutoConfig

    from ..backbones import is_decoder_type

    config = AutoConfig.from_pretrained(config_dir).to_dict()
    layers = {int(k.split(".")[3]) for k in state if k.startswith("hf.model.layers.")}
    gate = next((v for k, v in state.items() if k.endswith("layers.0.mlp.gate_proj.weight")
                 or k.endswith("layers.0.mlp.gate_proj.base_layer.weight")), None)
    sizes = {"hidden_size": state["hf.model.embed_tokens.weight"].shape[1], "num_hidden_layers": len(layers),
             "intermediate_size": None if gate is None else gate.shape[0]}
    diff = [f"{k} {config.get(k)} vs {v}" for k, v in sizes.items() if v is not None and config.get(k) != v]
    if not is_decoder_type(config.get("model_type")) or diff:
        raise OfficialCheckpointError(f"{config_dir}/config.json does not describe the weights of {source} ("
                    + ("; ".join(diff) + "; config vs weights" if diff else f"model_type {config.get('model_type')}")
                    + "); pass --base-model DIR, a local copy of the LLaMA the run started from")
    config.update(vocab_size=symbols, pad_token_id=1, bos_token_id=0, eos_token_id=2, is_causal=False, use_cache=False)
    return config


# ------------------------------------------------------------------------------ conversion
def convert_parts(release: Release, tokenizer: Optional[str], config: Optional[str], cache_dir: Optional[str]) -> Parts:
    """A LLaMA release: the base model's config (``config`` or the base folder), LLaMA's ``tokenizer.model``,
    the weights (full, or the pretrained ones resized as the official code resizes them + the adapters)."""
    from . import official_lora as lora

    source, base_dir = release.source, release.base_dir
    config_dir = config or base_dir
    if config_dir is None:
        raise need_base(release.named,
                        f"the LLaMA release {release.args_path.parent} (its config.json and tokenizer.model)")
    spm = find_tokenizer(tokenizer, release.ckpt_dir, release.args_path.parent, release.named, cache_dir, SPM_FILE,
                         config_dir)
    vocab = official_vocabulary(spm, base_dir or config_dir, release.args_model.get("vocab_pad_to_multiple", 1))
    if vocab["first"] != ["<unk>", "<s>", "</s>"]:
        raise OfficialCheckpointError(f"{spm} starts with {vocab['first']}, not LLaMA's <unk> <s> </s>: pass the run's "
                                      "own tokenizer.model (--tokenizer)")
    if release.adapter:
        weights = lora.with_adapters(add_official_rows(lora.read_base(base_dir), vocab, source), release.adapter)
    else:
        weights = read_weights(release.ckpt_dir)
    state = rename(weights, source)
    rows_found = state["hf.model.embed_tokens.weight"].size(0)
    if rows_found != vocab["size"]:
        raise OfficialCheckpointError(
            f"{spm} with the tokens the official code adds ({', '.join(vocab['added']) or 'none'}"
            f"{', %d <unused>' % vocab['unused'] if vocab['unused'] else ''}) gives {vocab['size']} ids but the "
            f"weights of {source} have {rows_found} embedding rows: tokenizer and checkpoint do not belong together; "
            "pass the run's own --tokenizer (and --base-model)")
    lines, rows = dictionary_rows(spm, vocab)
    check_finite(state, source)
    config = hf_config(config_dir, state, len(rows), source)
    tied = gather_vocabulary(state, rows, bool(config.get("tie_word_embeddings", False)))
    config["tie_word_embeddings"] = tied
    room = int(config["max_position_embeddings"]) - 2  # the plugin's positions start at pad + 1 = 2
    return Parts(state, config, lines, spm, "decoder_diffusion", False, tied, ["--max-positions", str(room)],
                 {"official_ids": {"<pad>": vocab["pad"], "<mask>": vocab["mask"]}, "unused": vocab["unused"]})
