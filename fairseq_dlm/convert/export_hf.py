"""A plugin checkpoint → a standard HuggingFace directory (``scripts/export_hf.py``).

::

    OUT/
      config.json, model.safetensors   the backbone: AutoModelForMaskedLM.from_pretrained(OUT) (a decoder-only
                                       backbone: AutoModelForCausalLM, config is_causal false), no missing key;
                                       a LoRA checkpoint: the frozen base weights, or with --merge-lora the
                                       adapters folded in
      lora_adapter/                    a LoRA checkpoint without --merge-lora: peft's adapter folder
                                       (adapter_config.json, adapter_model.safetensors):
                                       PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(OUT),
                                       OUT/lora_adapter)
      tokenizer.json, tokenizer_config.json
                                       AutoTokenizer.from_pretrained(OUT): token id i = dictionary index i
      sentencepiece.bpe.model          the SentencePiece model the data was encoded with (when known)
      dict.txt                         the fairseq dictionary, without <mask> (the tasks append it)
      length_head.safetensors          the length head (keys of models/length_head.LengthHead, sizes as
                                       metadata), only when the model has one
      diffusion_config.json            task, prompt template, decoding defaults, vocabulary, source

``--pretrained OUT`` of ``fairseq-train`` starts from this directory (the length head too, with
``--length-head``), and ``scripts/convert_checkpoint.py hf OUT --out CKPT_DIR`` turns it back into a
plugin checkpoint with identical logits (:mod:`fairseq_dlm.convert.from_hf`).  ``generation_config.json``
is not used: HF reserves it for ``generate()``, which an encoder-only diffusion LM does not have.

Vocabulary.  The model's vocabulary *is* the task dictionary, and it is exported as it is, also
when it was pruned (``scripts/prune_dictionary.py``): the embedding and LM-head rows are the
checkpoint's, nothing is re-expanded (expanding would invent rows for 250k pieces the model never
saw).  ``vocabulary`` in ``diffusion_config.json`` says ``full`` (the dictionary is every piece of
its SentencePiece model in XLM-R's order, or the model's own vocabulary when there is no
SentencePiece model) or ``pruned`` (a subset: the LM head is then untied, as in the checkpoint).

Tokenizer.  With a SentencePiece model (``--spm-model``, the task's ``spm_model``,
``DATA/sentencepiece.bpe.model``, or the checkpoint's ``--sentencepiece-model``), ``tokenizer.json``
is XLM-R's fast tokenizer of that model (normalizer, Metaspace pre-tokenizer, ``<s> … </s>``
post-processor) whose Unigram vocabulary is the dictionary: ``<s> <pad> </s> <unk>``, the
dictionary's pieces with their SentencePiece scores, ``<mask>`` last.  For a full vocabulary it
encodes exactly like the plugin (pieces → dictionary indices); for a pruned one it does so on text
whose pieces are all kept, while text with dropped pieces is segmented into kept (shorter) pieces
where the plugin writes ``<unk>``.  With an HF ``tokenizer.json`` (a BPE, e.g. byte-level:
:mod:`fairseq_dlm.data.subword`), ``tokenizer.json`` is that tokenizer with its vocabulary re-keyed to
the dictionary's ids (the same merges and segmentation; the dictionary must hold all its tokens, as
``prepare_translation.py`` makes it).  A ``diffusion_lm`` checkpoint trained on pre-encoded data may
have no SentencePiece model: it is exported with a whitespace tokenizer (``tokenizer.json`` maps
each whitespace-separated dictionary symbol to its index, what ``fairseq-preprocess`` did to the
training text) and a warning; pass ``--spm-model FILE`` to export a tokenizer of raw text.
"""
import json
import logging
import os
import shutil
from types import SimpleNamespace
from typing import List, Optional, Tuple

from ..data.dictionary import MASK, SPECIALS, dictionary_lines
from ..data.subword import SPM_FILE, TOKENIZER_JSON, is_tokenizer_json
from ..diffusion.options import GENERATION_FLAGS, flag
from ..errors import UserError
from ..models.backbone import LENGTH_HEAD_FILE
from ..models.lora import ADAPTER_DIR, adapter_folder, has_lora, write_adapter_folder
from ..models.lora import merge_lora as fold_lora
from .outputs import OutputPathError, check_out_dir, refuse_existing, staged_dir

logger = logging.getLogger(__name__)

DIFFUSION_CONFIG = "diffusion_config.json"
EXPORT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", TOKENIZER_JSON,
                "tokenizer_config.json", "special_tokens_map.json", SPM_FILE, "dict.txt",
                LENGTH_HEAD_FILE, DIFFUSION_CONFIG, ADAPTER_DIR)
# diffusion_config.json "decoding" key -> the DecodingOptions field it holds
DECODING_KEYS = {"steps": "max_iter", "strategy": "strategy", "length_beam": "length_beam", "temperature": "temperature"}
FORMAT = "fairseq_dlm-hf-export"
FORMAT_VERSION = 1


class ExportError(UserError, ValueError):
    """A checkpoint (or data folder) that cannot be exported; the message names the path and the fix."""


# ------------------------------------------------------------------------------ reading
def read_plugin_checkpoint(path: str) -> Tuple[str, dict]:
    """``(checkpoint file, raw checkpoint dict)`` for a file or a folder of checkpoints.

    Raises :class:`ExportError` (or ``FileNotFoundError``) naming ``path`` when it is not a
    checkpoint of this plugin's ``xlmr_diffusion`` model."""
    from ..checkpoints import read_checkpoint
    from ..recipes.checkpoint_choice import resolve_checkpoint

    from ..safe_load import UntrustedCheckpointError

    ckpt = resolve_checkpoint(path)
    try:
        state = read_checkpoint(ckpt)
    except UntrustedCheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  (pickle, zip and torch errors alike: not a checkpoint)
        raise ExportError(f"{ckpt} is not a fairseq checkpoint (torch.load failed: {type(e).__name__}: "
                          f"{str(e)[:200]}); pass a checkpoint_*.pt written by fairseq-train, or a folder "
                          "holding one") from None
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if not isinstance(cfg, dict) or "model" not in state:
        raise ExportError(f"{ckpt} is not a fairseq checkpoint (no cfg/model entries); pass a checkpoint_*.pt "
                          "written by fairseq-train or scripts/convert_checkpoint.py")
    model_cfg = cfg.get("model") or {}
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    from .. import register

    register()  # the plugin's architectures
    name = str(model_cfg.get("_name", ""))
    if ARCH_MODEL_NAME_REGISTRY.get(name, name) != "xlmr_diffusion" or not model_cfg.get("backbone_state"):
        raise ExportError(f"{ckpt} is a checkpoint of {model_cfg.get('_name')!r}, not of this plugin's "
                          "xlmr_diffusion model (or one written before backbone_state was saved); only "
                          "xlmr_diffusion_* checkpoints export to HuggingFace")
    return ckpt, state


def data_dir(cfg: dict, data: Optional[str], ckpt: str) -> str:
    """The folder with the task's dictionary: ``--data``, else the checkpoint's ``task.data``."""
    path = data or (cfg.get("task", {}).get("data") or "").split(os.pathsep)[0]
    if not path or not os.path.isdir(path):
        raise ExportError(f"the data folder of {ckpt} ({path or 'none recorded'}) does not exist; pass --data DIR, "
                          "the folder with the dictionary the model was trained with (dict.*.txt, or dict.txt and "
                          "sentencepiece.bpe.model for diffusion_instruct)")
    return path


def load_model(ckpt: str, data: str, spm_model: Optional[str]):
    """``(model, task)`` of ``ckpt`` through fairseq (the task's dictionary from ``data``), in eval mode."""
    from .. import register

    register()  # registers the tasks and the model
    from fairseq import checkpoint_utils

    overrides = {"data": data}
    if spm_model:
        overrides["spm_model"] = spm_model
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides=overrides)
    return models[0].eval(), task


def find_spm(cfg: dict, task, data: str, spm_model: Optional[str]) -> Optional[str]:
    """The subword model of the data (SentencePiece, or an HF ``tokenizer.json``): ``--spm-model``, the
    task's, ``DATA/``'s or fairseq's ``--bpe``'s."""
    if spm_model:
        return spm_model  # checked by export_checkpoint before anything is loaded
    bpe = cfg.get("bpe") or {}
    candidates = [getattr(task.cfg, "spm_model", None), os.path.join(data, SPM_FILE),
                  os.path.join(data, TOKENIZER_JSON),
                  bpe.get("sentencepiece_model") if bpe.get("_name") == "sentencepiece" else None,
                  bpe.get("hf_tokenizer_json") if bpe.get("_name") == "hf_tokenizer" else None]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


# ------------------------------------------------------------------------------ vocabulary
def spm_pieces(spm_model: str) -> List[Tuple[str, float]]:
    """``(piece, score)`` of every SentencePiece id."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=spm_model)
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]


def vocabulary_kind(symbols: List[str], spm_model: Optional[str], tied: bool) -> str:
    """``full`` (every piece of the SentencePiece model, XLM-R's order, or every token of a tokenizer.json;
    or the model's own vocabulary when there is no subword model and the LM head is tied) or ``pruned``."""
    if spm_model is None:
        return "full" if tied else "pruned"
    if is_tokenizer_json(spm_model):
        from ..data.subword import TokenizerJson

        return "full" if set(symbols[len(SPECIALS):-1]) >= set(TokenizerJson(spm_model).vocabulary()) else "pruned"
    pieces = [p for p, _ in spm_pieces(spm_model)[3:]]
    return "full" if symbols[len(SPECIALS):-1] == pieces else "pruned"


def check_spm_fits(symbols: List[str], spm_model: str) -> None:
    """Refuse a subword model that does not know most dictionary symbols (another vocabulary)."""
    if is_tokenizer_json(spm_model):
        from ..data.subword import TokenizerJson

        known = set(TokenizerJson(spm_model).vocab)
    else:
        known = {p for p, _ in spm_pieces(spm_model)}
    words = [s for s in symbols[len(SPECIALS):-1] if not s.startswith("madeupword")]
    unknown = [s for s in words if s not in known]
    if words and len(unknown) > 0.1 * len(words):
        raise ExportError(f"{spm_model} does not know {len(unknown)} of the {len(words)} dictionary symbols (e.g. "
                          f"{', '.join(unknown[:5])}): it is not the SentencePiece model of this data; pass the "
                          "right --spm-model, or none to export a whitespace tokenizer")
    if unknown:
        logger.warning("%d dictionary symbols are not pieces of %s (%s); the tokenizer never produces them",
                       len(unknown), spm_model, ", ".join(unknown[:5]))


def _added_tokens(symbols: List[str]) -> List[dict]:
    return [{"id": symbols.index(t), "content": t, "single_word": False, "lstrip": t == MASK, "rstrip": False,
             "normalized": False, "special": True} for t in (*SPECIALS, MASK)]


def sentencepiece_tokenizer(symbols: List[str], spm_model: str):
    """XLM-R's fast tokenizer of ``spm_model`` with the vocabulary ``symbols`` (id i = ``symbols[i]``)."""
    from tokenizers import Tokenizer
    from transformers.convert_slow_tokenizer import XLMRobertaConverter

    ids = {t: i for i, t in enumerate(SPECIALS)}
    shim = SimpleNamespace(vocab_file=spm_model, convert_tokens_to_ids=lambda t: ids[t])
    spec = json.loads(XLMRobertaConverter(shim).converted().to_str())
    scores = dict(spm_pieces(spm_model)[3:])
    floor = min(scores.values(), default=0.0) - 100.0  # symbols the SentencePiece model lacks: never preferred
    spec["model"]["vocab"] = [[s, 0.0 if s in SPECIALS or s == MASK else scores.get(s, floor)] for s in symbols]
    spec["model"]["unk_id"] = symbols.index("<unk>")
    spec["added_tokens"] = _added_tokens(symbols)
    return _wrap(Tokenizer.from_str(json.dumps(spec)), xlmr=True)


def bpe_json_tokenizer(symbols: List[str], path: str):
    """The HF tokenizer of ``path`` (a BPE ``tokenizer.json``, e.g. byte-level) re-keyed to the dictionary:
    the same merges and segmentation, each token's id its dictionary index, ``<s> … </s>`` around a
    sequence.  The dictionary must hold every token (BPE segments through intermediate tokens):
    ``prepare_translation.py`` writes such a dictionary for a tokenizer.json."""
    from tokenizers import Tokenizer, processors

    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(f"{path} is a {model.get('type')} tokenizer.json; only BPE ones (e.g. byte-level BPE) are "
                          "exported with the dictionary's ids; pass --spm-model with a SentencePiece model, or none")
    index = {s: i for i, s in enumerate(symbols)}
    dropped = [t for t in model.get("vocab") or {} if t not in index]
    if dropped:
        raise ExportError(f"the dictionary lacks {len(dropped)} tokens of {path} (e.g. {', '.join(dropped[:4])}): a "
                          "pruned dictionary, through whose gaps BPE cannot segment; prepare the data with the "
                          "tokenizer's whole vocabulary (prepare_translation.py does so for a tokenizer.json)")
    model["vocab"] = index
    model["unk_token"] = "<unk>"
    spec["added_tokens"] = _added_tokens(symbols)
    spec["post_processor"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", index["<s>"]), ("</s>", index["</s>"])])
    return _wrap(tok, xlmr=False)


def whitespace_tokenizer(symbols: List[str]):
    """A tokenizer of pre-encoded text: whitespace-separated symbols → dictionary index (``<unk>`` else)."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({s: i for i, s in enumerate(symbols)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bos, eos = symbols.index("<s>"), symbols.index("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*SPECIALS, MASK)])
    return _wrap(tok, xlmr=False)


def _wrap(tok, xlmr: bool):
    import transformers

    cls = transformers.XLMRobertaTokenizerFast if xlmr else transformers.PreTrainedTokenizerFast
    return cls(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
               cls_token="<s>", sep_token="</s>", mask_token=MASK)


def save_tokenizer(tokenizer, out_dir: str, max_positions: int, xlmr: bool) -> None:
    """``save_pretrained`` with a ``tokenizer_config.json`` that names a class every transformers version has
    (``XLMRobertaTokenizer``, ``PreTrainedTokenizerFast``) and the model's positions as ``model_max_length``."""
    tokenizer.save_pretrained(out_dir)
    path = os.path.join(out_dir, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update(tokenizer_class="XLMRobertaTokenizer" if xlmr else "PreTrainedTokenizerFast",
                  model_max_length=max_positions)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2) + "\n")


def make_tokenizer(symbols: List[str], spm_model: Optional[str], ckpt: str, data: str):
    """``(tokenizer, "sentencepiece" | "hf_tokenizer" | "whitespace")`` for the dictionary ``symbols`` (see the
    module docstring)."""
    if spm_model is not None:
        check_spm_fits(symbols, spm_model)
        if is_tokenizer_json(spm_model):
            return bpe_json_tokenizer(symbols, spm_model), "hf_tokenizer"
        return sentencepiece_tokenizer(symbols, spm_model), "sentencepiece"
    logger.warning("no SentencePiece model known for %s (no --spm-model, task spm_model, %s or --bpe "
                   "sentencepiece): the exported tokenizer maps whitespace-separated dictionary symbols "
                   "(pre-encoded text) to ids; pass --spm-model FILE to export a tokenizer of raw text",
                   ckpt, os.path.join(data, SPM_FILE))
    return whitespace_tokenizer(symbols), "whitespace"


# ------------------------------------------------------------------------------ writing
def save_length_head(head, path: str) -> dict:
    """Write ``head``'s state dict (``[*]`` fp32 tensors, ``LengthHead`` keys) to ``path``; returns its sizes."""
    from safetensors.torch import save_file

    layer = head.layer
    sizes = {"hidden": layer.linear1.in_features, "heads": layer.self_attn.num_heads,
             "ffn": layer.linear1.out_features, "num_classes": head.num_classes}
    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(state, path, metadata={k: str(v) for k, v in sizes.items()})
    return sizes


def separate_untied_bias(hf_model) -> None:
    """Give an untied LM head its own ``decoder.bias`` (same values as ``lm_head.bias``) before saving.

    The plugin keeps ``lm_head.bias`` and ``lm_head.decoder.bias`` as one parameter, so
    ``save_pretrained`` stores it once; transformers 5 re-ties the two only together with the word
    embeddings (``tie_word_embeddings``), so a pruned-vocabulary (untied) export needs both in the file."""
    from torch import nn

    head = hf_model.lm_head
    if not hf_model.config.tie_word_embeddings and head.decoder.bias is head.bias:
        head.decoder.bias = nn.Parameter(head.bias.detach().clone())


def check_saved_weights(out_dir: str, hf_model) -> None:
    """Every tensor of ``hf_model`` is in the saved safetensors files; with tied embeddings (which
    ``from_pretrained`` ties again) also a tensor that is the same as a saved one (the LM-head decoder,
    ``lm_head.decoder.bias``), so that ``from_pretrained`` misses no key."""
    from safetensors import safe_open

    index = os.path.join(out_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            saved = set(json.load(f)["weight_map"])
    else:
        with safe_open(os.path.join(out_dir, "model.safetensors"), framework="pt") as f:
            saved = set(f.keys())
    own = hf_model.state_dict()
    stored = {own[k].data_ptr() for k in saved if k in own}
    tied = bool(hf_model.config.tie_word_embeddings)
    lost = [k for k in own if k not in saved and not (tied and own[k].data_ptr() in stored)]
    if lost:
        import transformers

        raise ExportError(f"save_pretrained (transformers {transformers.__version__}) left out {', '.join(lost[:4])} "
                          f"of the backbone in {out_dir}: from_pretrained would initialise them randomly; nothing "
                          "was written")


def diffusion_config(cfg: dict, task, ckpt: str, state: dict, *, vocabulary: str, tokenizer: str,
                     spm_model: Optional[str], length_sizes: Optional[dict], hf_config, max_positions: int) -> dict:
    """What ``diffusion_config.json`` holds (see the module docstring)."""
    task_cfg, gen = cfg.get("task") or {}, cfg.get("generation") or {}
    history = state.get("optimizer_history") or [{}]
    out = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "task": task_cfg.get("_name"), "arch": (cfg.get("model") or {}).get("_name"),
        "prompt_template": getattr(task.cfg, "prompt_template", None),
        "decoding": {key: (gen if option in GENERATION_FLAGS else task_cfg).get(flag(option))
                     for key, option in DECODING_KEYS.items()},
        "length_head": length_sizes is not None, "length_head_sizes": length_sizes,
        "vocabulary": vocabulary, "vocabulary_size": hf_config.vocab_size,
        "tie_word_embeddings": bool(hf_config.tie_word_embeddings),
        "tokenizer": tokenizer, "sentencepiece_model": os.path.abspath(spm_model) if spm_model else None,
        "source_checkpoint": os.path.abspath(ckpt), "num_updates": history[-1].get("num_updates", 0),
        "max_positions": max_positions,
        "attention_strategy": (cfg.get("model") or {}).get("attention_strategy") or "full",
    }
    if out["task"] == "diffusion_lm":
        out["source_lang"], out["target_lang"] = task.cfg.source_lang, task.cfg.target_lang
    return out


def export_checkpoint(path: str, out_dir: str, *, data: Optional[str] = None, spm_model: Optional[str] = None,
                      overwrite: bool = False, merge_lora: bool = False) -> dict:
    """Export the checkpoint ``path`` (a file or a folder) to the HF directory ``out_dir``; returns
    the content of its ``diffusion_config.json``.  A checkpoint with LoRA adapters is exported as its
    base weights plus peft's adapter folder ``lora_adapter/``, or with the adapters folded into the
    weights (``merge_lora``), a plain HF model."""
    refuse_existing(out_dir, overwrite, "export")
    ckpt, state = read_plugin_checkpoint(path)
    cfg = state["cfg"]
    data = data_dir(cfg, data, ckpt)
    for src in (data, os.path.dirname(os.path.abspath(ckpt))):
        if os.path.realpath(out_dir) == os.path.realpath(src):
            raise OutputPathError(f"--out {out_dir} is the folder of the checkpoint or its data ({src}); its "
                                  "dict.txt would be replaced; pass another --out")
    check_out_dir(out_dir)
    if spm_model and not os.path.isfile(spm_model):
        raise ExportError(f"--spm-model {spm_model} does not exist; pass the SentencePiece model the data was "
                          "encoded with")
    del state["model"]  # fairseq reads the weights again while building the model
    model, task = load_model(ckpt, data, spm_model)
    spm = find_spm(cfg, task, data, spm_model)
    symbols = list(task.dictionary.symbols)
    hf = model.hf
    adapters = None
    if has_lora(hf):
        if not merge_lora:  # peft's folder first, then the base layers go back in place, unchanged
            adapters = adapter_folder(hf)
        logger.info("%d LoRA layers %s", fold_lora(hf, merge=merge_lora),
                    "merged into their base weights" if merge_lora else f"exported as peft's folder {ADAPTER_DIR}/")
    tied = hf.get_output_embeddings().weight is hf.get_input_embeddings().weight
    tokenizer, kind = make_tokenizer(symbols, spm, ckpt, data)
    vocabulary = vocabulary_kind(symbols, spm, tied)
    with staged_dir(out_dir, owned=EXPORT_FILES) as stage:
        if not model.decoder_only:
            separate_untied_bias(hf)
        hf.save_pretrained(stage)
        check_saved_weights(stage, hf)
        save_tokenizer(tokenizer, stage, model.max_positions(), xlmr=kind == "sentencepiece")
        with open(os.path.join(stage, "dict.txt"), "w", encoding="utf-8") as f:
            f.writelines(dictionary_lines(task.dictionary, ExportError))
        if spm is not None and not is_tokenizer_json(spm):
            shutil.copy(spm, os.path.join(stage, SPM_FILE))
        sizes = None
        if model.length_head is not None:
            sizes = save_length_head(model.length_head, os.path.join(stage, LENGTH_HEAD_FILE))
        if adapters is not None:
            write_adapter_folder(*adapters, os.path.join(stage, ADAPTER_DIR))
        report = diffusion_config(cfg, task, ckpt, state, vocabulary=vocabulary, tokenizer=kind, spm_model=spm,
                                  length_sizes=sizes, hf_config=hf.config, max_positions=model.max_positions())
        report["lora_adapter"] = ADAPTER_DIR if adapters is not None else None
        with open(os.path.join(stage, DIFFUSION_CONFIG), "w", encoding="utf-8") as f:
            f.write(json.dumps(report, indent=2) + "\n")
    logger.info("exported %s → %s (%s, %d layers × %d, %s vocabulary of %d, %s tokenizer, %s length head)", ckpt,
                out_dir, hf.config.model_type, hf.config.num_hidden_layers, hf.config.hidden_size, vocabulary,
                hf.config.vocab_size, kind, "with a" if sizes else "no")
    return report
