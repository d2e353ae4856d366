"""The paper's released checkpoints (SPEC §9.4) → plugin checkpoints.

An official model folder is an HF-Trainer output of ``DiscreteDiffusionXLMRModel`` (below) or of
``DiscreteDiffusionLlamaModel`` (:mod:`.official_llama`); a run trained with ``--lora`` saved only its
adapters (:mod:`.official_lora`)::

    flan_v2.xxl.length/
      args.json                 {"model": {"pretrained": "facebook/xlm-roberta-xxl", ...}, "train": ..., ...}
      checkpoint-<step>/        pytorch_model.bin | model.safetensors (| a DeepSpeed ZeRO checkpoint)

Its state dict holds the HF masked LM under ``model.`` (``model.roberta.*``, ``model.lm_head.*``;
an empty ``model.lm_head.decoder.weight`` means tied to the word embeddings) and the length
predictor as ``length_trm.layers.0.*`` (one ``nn.TransformerEncoderLayer(H, heads, FFN,
batch_first=True)``) and ``length_predictor.{0,2}.*`` (``Linear(H, FFN) → Tanh → Linear(FFN,
max_positions)``).  Key mapping to this plugin::

    model.X                   → hf.X
    length_trm.layers.0.X     → length_head.layer.X
    length_predictor.{0,2}.X  → length_head.mlp.{0,2}.X

Both modules compute the same function (the length head of ``models/length_head.py`` is the same
layer, masked mean and MLP), so the converted model gives the official logits.  The backbone's
config comes from the tensor sizes (one of the four XLM-R presets; the ``pretrained`` name of
``args.json`` must agree), or from a local HF ``config.json`` (``--config``, or ``pretrained`` when it
is a local folder) for other sizes; no hub access.  The vocabulary of an instruction release is the
full XLM-R one: the dictionary is written from the release's SentencePiece model (dictionary index = HF
token id; XL/XXL's padding rows past the tokens are left out, :func:`drop_padding_rows`).  A task run
(``data.dataset_type`` fairseq) trained on its data's pruned dictionary (:func:`_pruned_parts`).  The
attention is what the official XLM-R forward reads, ``prefix_lm`` (:func:`xlmr_attention`).
"""
import json
import logging
import os
import re
import shutil
from pathlib import Path
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from ..data.dictionary import full_dictionary_lines
from ..errors import UserError
from .outputs import check_out_dir, refuse_existing, staged_dir
from .plugin_checkpoint import CHECKPOINT, PRESET_ARCHS, backbone_state, check_state_dict, training_cfg, write_checkpoint

logger = logging.getLogger(__name__)

OUTPUT_FILES = (CHECKPOINT, "dict.txt", "sentencepiece.bpe.model", "args.json", "conversion.json")
_STEP = re.compile(r"checkpoint-(\d+)")
# (model_type, hidden, layers, ffn) → (preset name, attention heads)
PRESETS = {
    ("xlm-roberta", 768, 12, 3072): ("xlm-roberta-base", 12),
    ("xlm-roberta", 1024, 24, 4096): ("xlm-roberta-large", 16),
    ("xlm-roberta-xl", 2560, 36, 10240): ("xlm-roberta-xl", 32),
    ("xlm-roberta-xl", 4096, 48, 16384): ("xlm-roberta-xxl", 32),
}
_DROPPED = ("model.roberta.embeddings.position_ids", "model.roberta.embeddings.token_type_ids", "fake_layer")


class OfficialCheckpointError(UserError, ValueError):
    """An official model folder that cannot be converted; the message names the path and the fix."""


# ------------------------------------------------------------------------------ locating
def find_release(path: str, step: Optional[int] = None) -> Tuple[Path, Path, int]:
    """``(args.json, checkpoint-<step> folder, step)``: the highest step (compared as a number) unless ``step``.

    ``path`` is the folder with ``args.json``, or one of its ``checkpoint-<step>`` folders."""
    p = Path(path)
    if not p.exists():
        raise OfficialCheckpointError(f"{path} does not exist; pass the unpacked official model folder "
                                      "(args.json and checkpoint-<step>/), e.g. flan_v2.base.length")
    if _STEP.fullmatch(p.name) and (p.parent / "args.json").is_file():
        return p.parent / "args.json", p, int(_STEP.fullmatch(p.name).group(1))
    if not p.is_dir() or not (p / "args.json").is_file():
        raise OfficialCheckpointError(
            f"{path} has no args.json: it is not an official (HF-Trainer) model folder. Pass the folder that "
            "holds args.json and checkpoint-<step>/ (scripts/download_ckpts.sh unpacks them as flan_v2.<size>.length)")
    steps = {int(m.group(1)): d for d in p.iterdir() if d.is_dir() and (m := _STEP.fullmatch(d.name))}
    if not steps:
        raise OfficialCheckpointError(f"{path} has args.json but no checkpoint-<step>/ folder: the download or "
                                      "unpacking is incomplete")
    if step is not None:
        if step not in steps:
            raise OfficialCheckpointError(f"{path} has no checkpoint-{step}/ (it has steps {sorted(steps)})")
        return p / "args.json", steps[step], step
    best = max(steps)
    return p / "args.json", steps[best], best


def read_weights(ckpt_dir: Path) -> Dict[str, torch.Tensor]:
    """The state dict of a ``checkpoint-<step>`` folder (``pytorch_model.bin`` or ``model.safetensors``,
    sharded or not); a ZeRO-only or LoRA checkpoint is refused with the command that fixes it."""
    files = {f.name for f in ckpt_dir.iterdir()}
    if "adapter_model.bin" in files or "adapter_model.safetensors" in files:
        raise OfficialCheckpointError(f"{ckpt_dir} holds a LoRA adapter, not full weights: pass the folder of the full "
                                      "pretrained model")
    for single in ("model.safetensors", "pytorch_model.bin"):
        if single in files:
            return read_weights_file(ckpt_dir / single)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index in files:
            shards = sorted(set(json.loads((ckpt_dir / index).read_text())["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(read_weights_file(ckpt_dir / shard))
            return state
    if "latest" in files or any(f.startswith("global_step") for f in files):
        raise OfficialCheckpointError(
            f"{ckpt_dir} holds only a DeepSpeed ZeRO checkpoint; gather it into one file first (needs deepspeed): "
            f"python {ckpt_dir}/zero_to_fp32.py {ckpt_dir} {ckpt_dir}/pytorch_model.bin")
    raise OfficialCheckpointError(f"{ckpt_dir} has no pytorch_model.bin, model.safetensors or ZeRO checkpoint")


def read_weights_file(path: Path) -> Dict[str, torch.Tensor]:
    """One weights file: safetensors, or a torch pickle (memory-mapped, tensors only).

    Raises:
        OfficialCheckpointError: the file is truncated or not a weights file (the message names it
            and its size, not torch's "central directory" or safetensors' header error).
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001  (zip, pickle, safetensors and torch errors alike)
        if isinstance(e, OSError) and not path.is_file():
            raise
        from ..checkpoints.files import damage

        problem = damage(str(path)) if path.suffix != ".safetensors" else None
        if problem is None and "weights_only" in str(e):
            problem = f"it needs code beyond tensors to load (torch: {str(e).splitlines()[0]})"
        problem = problem or f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise OfficialCheckpointError(
            f"{path} cannot be read ({path.stat().st_size} bytes): {problem}. It is probably truncated by an "
            "interrupted download or unpacking: download it again (scripts/download_ckpts.sh resumes)") from None


def check_finite(state: Dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or ±inf: the converted model would decode garbage without a word."""
    for key, value in state.items():
        if not torch.is_floating_point(value):
            continue
        # in chunks: an XXL embedding is 10^9 values, memory-mapped
        bad = sum(int((~torch.isfinite(chunk)).sum()) for chunk in value.reshape(-1).split(1 << 24))
        if bad:
            raise OfficialCheckpointError(
                f"{source}: tensor {key} {tuple(value.shape)} holds {bad} NaN/inf value(s): the checkpoint is "
                "corrupt or was saved after a diverged update; convert another step (--step N) or re-download it")


# ------------------------------------------------------------------------------ config
def _layers(state: Dict[str, torch.Tensor]) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(r"model\.roberta\.encoder\.layer\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def infer_config(state: Dict[str, torch.Tensor], args_model: dict, config_dir: Optional[str], source: str) -> dict:
    """The HF config (dict) of the backbone: sizes from the tensors, heads from the preset or ``config_dir``."""
    try:
        embed = state["model.roberta.embeddings.word_embeddings.weight"]
        positions = state["model.roberta.embeddings.position_embeddings.weight"]
        ffn = state["model.roberta.encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as e:
        raise OfficialCheckpointError(f"{source} has no {e.args[0]}: not an XLM-R diffusion checkpoint of the "
                                      "official code (expected model.roberta.*, model.lm_head.*)") from None
    xl = "model.roberta.encoder.LayerNorm.weight" in state
    model_type = "xlm-roberta-xl" if xl else "xlm-roberta"
    vocab, hidden = embed.shape
    layers = _layers(state)
    type_rows = state.get("model.roberta.embeddings.token_type_embeddings.weight")
    sizes = dict(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=ffn,
                 max_position_embeddings=positions.shape[0], type_vocab_size=1 if type_rows is None else type_rows.shape[0])
    named = (args_model.get("pretrained") or args_model.get("config") or "").rstrip("/")
    if config_dir:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(config_dir).to_dict()
        diff = [f"{k} {config.get(k)} vs {v}" for k, v in dict(sizes, model_type=model_type).items()
                if config.get(k) != v]
        if diff:
            raise OfficialCheckpointError(f"{config_dir}/config.json does not describe the weights of {source} ("
                                          + "; ".join(diff) + "; config vs weights)")
    else:
        preset = PRESETS.get((model_type, hidden, layers, ffn))
        if preset is None:
            known = ", ".join(f"{n} ({t}, {h}×{l}, FFN {f})" for (t, h, l, f), (n, _) in PRESETS.items())
            raise OfficialCheckpointError(
                f"the weights of {source} ({model_type}, {layers} layers × {hidden}, FFN {ffn}) match no XLM-R preset "
                f"({known}); pass --config DIR, a local HF folder whose config.json describes this backbone")
        name, heads = preset
        base = os.path.basename(named)
        if base in PRESET_ARCHS and base != name:
            raise OfficialCheckpointError(f"args.json of {source} names {named!r} but the weights have the sizes of "
                                          f"{name}: the folder mixes two models")
        from transformers import XLMRobertaConfig, XLMRobertaXLConfig

        cls = XLMRobertaXLConfig if xl else XLMRobertaConfig
        config = cls(num_attention_heads=heads, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
                     **sizes).to_dict()
        config["_name_or_path"] = named or name
    config["vocab_size"] = vocab
    return config


def rename(state: Dict[str, torch.Tensor], source: str) -> Tuple[Dict[str, torch.Tensor], bool, bool]:
    """``(plugin state dict, tied, has_length_head)`` from the official keys (see the module docstring)."""
    out, unknown = {}, []
    for key, value in state.items():
        if key in _DROPPED:
            continue
        if key.startswith("model."):
            out["hf." + key[len("model."):]] = value
        elif key.startswith("length_trm.layers.0."):
            out["length_head.layer." + key[len("length_trm.layers.0."):]] = value
        elif key.startswith("length_predictor."):
            out["length_head.mlp." + key[len("length_predictor."):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise OfficialCheckpointError(f"{source} has tensors the official XLM-R model does not have "
                                      f"({', '.join(unknown[:4])}): not a checkpoint of DiscreteDiffusionXLMRModel "
                                      "(LLaMA and LoRA checkpoints are not supported)")
    embed = out["hf.roberta.embeddings.word_embeddings.weight"]
    decoder = out.get("hf.lm_head.decoder.weight")
    tied = decoder is None or decoder.numel() == 0 or torch.equal(decoder, embed)
    out["hf.lm_head.decoder.weight"] = embed if tied else decoder
    # HF keeps lm_head.bias and lm_head.decoder.bias as one parameter: either may be missing; when they differ
    # (remove_redundant_embeddings replaced the decoder only) the forward uses the decoder's
    bias = out.get("hf.lm_head.decoder.bias", out.get("hf.lm_head.bias"))
    if bias is not None:
        out["hf.lm_head.bias"] = out["hf.lm_head.decoder.bias"] = bias
    return out, tied, any(k.startswith("length_head.") for k in out)


# ------------------------------------------------------------------------------ tokenizer and base model
def find_tokenizer(tokenizer: Optional[str], ckpt_dir: Path, top: Path, named: str, cache_dir: Optional[str],
                   filename: str = "sentencepiece.bpe.model", base_dir: Optional[str] = None) -> Path:
    """The release's SentencePiece model (``filename``: XLM-R's ``sentencepiece.bpe.model``, LLaMA's
    ``tokenizer.model``): ``--tokenizer``, the checkpoint folder, the model folder, the base model folder,
    ``pretrained`` as a local folder, or ``pretrained`` in the HF cache ``--cache-dir``."""
    looked = []
    candidates = []
    if tokenizer:
        t = Path(tokenizer)
        candidates.append(t if t.is_file() else t / filename)
    candidates += [ckpt_dir / filename, top / filename]
    for folder in (base_dir, named):
        if folder and Path(folder).is_dir():
            candidates.append(Path(folder) / filename)
    for c in candidates:
        looked.append(str(c))
        if c.is_file():
            return c
    if named and not tokenizer:
        from ..recipes.settings import resolve_pretrained
        from ..recipes.flags import FlagError

        try:
            found = Path(resolve_pretrained(named, cache_dir)) / filename
            looked.append(str(found))
            if found.is_file():
                return found
        except FlagError:
            looked.append(f"{named} in the HF cache {cache_dir or 'cache'}")
    raise OfficialCheckpointError(
        f"no {filename} for the converted model's dictionary (looked at: " + ", ".join(looked)
        + f"); pass --tokenizer DIR, a local copy of {named or 'the backbone'} (its {filename}), or "
        "--cache-dir with that model in the HF cache layout")


def find_base(base_model: Optional[str], named: str, cache_dir: Optional[str]) -> Optional[str]:
    """The local folder of the pretrained backbone the run started from: ``--base-model``, ``pretrained``
    as a local folder, or ``pretrained`` in the HF cache ``--cache-dir``; None if none."""
    for folder in (base_model, named):
        if folder and Path(folder, "config.json").is_file():
            return str(folder)
    if base_model:
        raise OfficialCheckpointError(f"--base-model {base_model} has no config.json: not a HuggingFace model folder")
    if named:
        from ..recipes.settings import resolve_pretrained
        from ..recipes.flags import FlagError

        try:
            return resolve_pretrained(named, cache_dir)
        except FlagError:
            return None
    return None


def need_base(named: str, what: str) -> OfficialCheckpointError:
    return OfficialCheckpointError(f"{what} needs the pretrained backbone the run started from ({named or 'unnamed'} "
                                   "in args.json), which is not a local folder here: pass --base-model DIR (a local "
                                   "copy: config.json, tokenizer, weights) or --cache-dir with it in the HF cache "
                                   "layout")


# ------------------------------------------------------------------------------ conversion
@dataclass
class Release:
    """One official checkpoint folder being converted (what both backbone families need to know)."""

    args_path: Path
    ckpt_dir: Path
    step: int
    args_model: dict  # args.json's "model" section
    named: str  # args.json's pretrained (or config) name
    base_dir: Optional[str]  # the local folder of that backbone, when found
    adapter: Optional[dict]  # official_lora.read_adapter(...) for a LoRA run, else None
    args_data: dict = field(default_factory=dict)  # args.json's "data" section
    data_dir: Optional[str] = None  # --data: the run's binarized data folder, when it moved

    @property
    def source(self) -> str:
        return str(self.ckpt_dir)


@dataclass
class Parts:
    """What a conversion writes: plugin state, backbone config, dictionary, training flags, report."""

    state: Dict[str, torch.Tensor]
    hf_config: dict
    lines: List[str]  # dict.txt
    spm: Path
    arch: str
    length_head: bool
    tied: bool
    flags: List[str] = field(default_factory=list)  # more fairseq-train flags of the rebuilt model
    report: dict = field(default_factory=dict)  # family-specific report entries
    task: str = "diffusion_instruct"
    dict_names: Tuple[str, ...] = ("dict.txt",)  # the files the dictionary is written to


def convert_official(src: str, out_dir: str, *, tokenizer: Optional[str] = None, config: Optional[str] = None,
                     cache_dir: Optional[str] = None, step: Optional[int] = None, overwrite: bool = False,
                     base_model: Optional[str] = None, data: Optional[str] = None) -> dict:
    """Convert the official model folder ``src`` into ``out_dir`` (``checkpoint.pt``, ``dict.txt`` — a task
    run: ``dict.SRC.txt`` and ``dict.TGT.txt`` —, ``sentencepiece.bpe.model``, ``args.json``,
    ``conversion.json``); returns the conversion report.

    XLM-R and LLaMA releases (:mod:`.official_llama`), full weights or LoRA adapter folders
    (:mod:`.official_lora`, which need the base model: ``base_model``, else args.json's ``pretrained``
    as a local folder or in the HF cache ``cache_dir``); a task run's pruned dictionary is read from
    ``data`` or args.json's ``data_path``."""
    from ..models.lora import lora_flags, plugin_keys
    from . import official_llama as llama
    from . import official_lora as lora

    refuse_existing(out_dir, overwrite, "conversion")
    args_path, ckpt_dir, found_step = find_release(src, step)
    check_out_dir(out_dir, [str(args_path.parent)])
    try:
        args = json.loads(args_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise OfficialCheckpointError(f"{args_path} is not valid JSON ({e}); re-download the model") from None
    args_model = args.get("model") or {}
    is_llama = llama.is_llama_release(args_model)
    if is_llama:
        llama.check_attention(args_model, args_path)
    named = (args_model.get("pretrained") or args_model.get("config") or "").rstrip("/")
    adapter = lora.read_adapter(ckpt_dir) if lora.adapter_file(ckpt_dir) else None
    release = Release(args_path, ckpt_dir, found_step, args_model, named, find_base(base_model, named, cache_dir),
                      adapter, args.get("data") or {}, data)
    if adapter is not None and release.base_dir is None:
        raise need_base(named, f"{adapter['file']} (LoRA adapters only)")
    parts = (llama.convert_parts if is_llama else _xlmr_parts)(release, tokenizer, config, cache_dir)
    if adapter:
        parts.state = plugin_keys(parts.state, adapter["config"]["target_modules"])
        parts.flags += lora_flags(adapter["config"])
        parts.report["lora"] = {k: adapter["config"].get(k) for k in ("r", "lora_alpha", "target_modules", "bias")}
        parts.report["base_model"] = release.base_dir
    hf_config = parts.hf_config
    parts.report.update(weights_dtype_report(parts.state))
    report = {"source": os.path.abspath(src), "checkpoint": str(ckpt_dir.name), "step": found_step,
              "backbone": hf_config.get("_name_or_path") or named, "model_type": hf_config["model_type"],
              "layers": hf_config["num_hidden_layers"], "hidden": hf_config["hidden_size"],
              "vocabulary": hf_config["vocab_size"], "tied_lm_head": parts.tied, "length_head": parts.length_head,
              "arch": parts.arch, "tokenizer": str(parts.spm), **parts.report}
    _write(out_dir, parts, args_path, report, release.source)
    logger.info("converted %s (step %d, %s, %d × %d, %s LM head, %s length head%s) → %s/%s", src, found_step,
                report["backbone"], report["layers"], report["hidden"], "tied" if parts.tied else "untied",
                "with" if parts.length_head else "no", ", LoRA adapters kept" if adapter else "", out_dir, CHECKPOINT)
    return report


def weights_dtype_report(state: Dict[str, torch.Tensor]) -> dict:
    """``weights_dtype`` (the floating dtype of most parameters as saved) and, for bf16/fp16 weights, how
    they load (float32, an exact upcast) and how to decode in that precision as the official evaluation does."""
    sizes: Dict[str, int] = {}
    for value in state.values():
        if torch.is_floating_point(value):
            name = str(value.dtype).replace("torch.", "")
            sizes[name] = sizes.get(name, 0) + value.numel()
    dtype = max(sizes, key=sizes.get) if sizes else "float32"
    out = {"weights_dtype": dtype}
    if dtype in ("bfloat16", "float16"):
        out["half_precision"] = (f"saved in {dtype}; loaded as float32 (an exact upcast). To decode in {dtype} as "
                                 "the official evaluation does: scripts/eval_instruct.py --bf16, fairseq-generate "
                                 "--autocast-bf16, or DiffusionLM.from_pretrained(...).models[0].to(torch.bfloat16)")
    return out


def _xlmr_parts(release: Release, tokenizer: Optional[str], config: Optional[str], cache_dir: Optional[str]) -> Parts:
    """An XLM-R release (``DiscreteDiffusionXLMRModel``): the dictionary is the full XLM-R one (index = HF id)."""
    from . import official_lora as lora

    source, named = release.source, release.named
    if release.adapter:
        weights = lora.with_adapters(lora.read_base(release.base_dir), release.adapter)
    else:
        weights = read_weights(release.ckpt_dir)
    state, tied, has_length = rename(weights, source)
    check_finite(state, source)
    local_named = named if named and Path(named, "config.json").is_file() else None
    config_dir = config or (release.base_dir if release.adapter else None) or local_named
    hf_config = infer_config({"model." + k[3:]: v for k, v in state.items() if k.startswith("hf.")},
                             release.args_model, config_dir, source)
    hf_config["tie_word_embeddings"] = tied
    spm = find_tokenizer(tokenizer, release.ckpt_dir, release.args_path.parent, named, cache_dir,
                         base_dir=release.base_dir)
    arch = PRESET_ARCHS.get(os.path.basename(hf_config.get("_name_or_path", "")), "xlmr_diffusion_base")
    if hf_config["model_type"] == "xlm-roberta-xl" and arch in ("xlmr_diffusion_base", "xlmr_diffusion_large"):
        arch = "xlmr_diffusion_xl"
    if release.args_data.get("dataset_type") == "fairseq":  # a task run: trained on its data's own dictionary
        return _pruned_parts(release, state, hf_config, spm, arch, has_length, tied)
    lines = full_dictionary_lines(str(spm))
    symbols_count = 4 + len(lines) + 1  # fairseq's specials, the pieces, <mask>
    report = {}
    if hf_config["model_type"] == "xlm-roberta-xl" and hf_config["vocab_size"] > symbols_count:
        report["dropped_rows"] = drop_padding_rows(state, hf_config, symbols_count)
    if symbols_count != hf_config["vocab_size"]:
        raise OfficialCheckpointError(
            f"{spm} gives a dictionary of {symbols_count} symbols but the weights of {source} have "
            f"{hf_config['vocab_size']} embedding rows: tokenizer and checkpoint do not belong together (a pruned "
            "vocabulary? the released models use the full XLM-R one); pass the right --tokenizer")
    flags, attention = xlmr_attention(release.args_model, release.args_path)
    return Parts(state, hf_config, lines, spm, arch, has_length, tied, flags, dict(report, **attention))


def drop_padding_rows(state: Dict[str, torch.Tensor], hf_config: dict, keep: int) -> dict:
    """XLM-R XL/XXL carry more vocabulary rows than their tokenizer has tokens (250,880 for 250,002: the
    official code never resizes them): keep the first ``keep`` rows (HF id = dictionary index) of the
    embedding and the LM head.  The rows left out are never a target and have no token; the logits over
    the vocabulary are the official ones (each row's logit is its own dot product)."""
    rows = hf_config["vocab_size"]
    for key in ("hf.roberta.embeddings.word_embeddings.weight", "hf.lm_head.decoder.weight", "hf.lm_head.bias",
                "hf.lm_head.decoder.bias"):
        if key in state:
            state[key] = state[key][:keep]
    hf_config["vocab_size"] = keep
    logger.info("left out the %d vocabulary rows past the tokenizer's %d tokens (HF ids %d-%d, XLM-R XL/XXL padding)",
                rows - keep, keep, keep, rows - 1)
    return {"count": rows - keep, "hf_ids": [keep, rows - 1],
            "why": "XLM-R XL/XXL pad the vocabulary past the tokenizer's tokens; those rows have no token"}


def _pruned_parts(release: Release, state: Dict[str, torch.Tensor], hf_config: dict, spm: Path, arch: str,
                  has_length: bool, tied: bool) -> Parts:
    """A task run of the official code (``dataset_type`` fairseq): ``remove_redundant_embeddings`` cut the
    embedding and ``lm_head.decoder`` to the data's dictionary (``Dictionary.load(DATA/dict.SRC.txt)``,
    its ``<mask>`` or else ``<unk>`` as the mask token), so row i is that dictionary's symbol i.  The
    converted model is a ``diffusion_lm`` model of the same dictionary (``dict.SRC.txt``, ``dict.TGT.txt``);
    without a ``<mask>`` in it, the one the task appends takes ``<unk>``'s rows (what the official model fed
    and scored for masked slots)."""
    from fairseq.data import Dictionary

    src, tgt = release.args_data.get("src_lang"), release.args_data.get("tgt_lang")
    folder = release.data_dir or release.args_data.get("data_path") or ""
    path = Path(folder, f"dict.{src}.txt")
    if not src or not tgt or not path.is_file():
        raise OfficialCheckpointError(
            f"{release.args_path}: a task run (dataset_type fairseq) was trained on the pruned dictionary of its "
            f"data, {path}, which is not here: pass --data DIR, the run's binarized data folder (dict.{src}.txt)")
    dictionary = Dictionary.load(str(path))
    rows = hf_config["vocab_size"]
    if rows != len(dictionary):
        raise OfficialCheckpointError(f"{path} has {len(dictionary)} symbols but the weights of {release.source} have "
                                      f"{rows} embedding rows: the dictionary is not the run's; pass its --data")
    report = {"pruned_dictionary": str(path)}
    if "<mask>" not in dictionary.indices:
        unk = dictionary.unk()
        for key in ("hf.roberta.embeddings.word_embeddings.weight", "hf.lm_head.decoder.weight",
                    "hf.lm_head.decoder.bias", "hf.lm_head.bias"):
            state[key] = torch.cat([state[key], state[key][unk:unk + 1]])
        hf_config["vocab_size"] = rows + 1
        report["mask"] = f"{path} has no <mask>: the official code masked with <unk>; the appended <mask> has its rows"
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    flags, attention = xlmr_attention(release.args_model, release.args_path)
    flags += ["--source-lang", src, "--target-lang", tgt]
    return Parts(state, hf_config, lines, spm, arch, has_length, tied, flags, dict(report, **attention),
                 task="diffusion_lm", dict_names=(f"dict.{src}.txt", f"dict.{tgt}.txt"))


def xlmr_attention(args_model: dict, args_path: Path) -> Tuple[List[str], dict]:
    """The attention an XLM-R run was trained with, from what the official forward reads: ``prefix_lm``
    only (its ``attention_strategy`` is never consulted for XLM-R).  With ``prefix_lm`` the prompt rows
    (``partial_mask``: ``<s>`` and the prompt) attend to the prompt, the others to every token, masked with
    −inf by XLM-R's extended mask: the plugin's ``--attention-strategy prefix_lm`` (tested logits)."""
    strategy = args_model.get("attention_strategy", "full")
    if args_model.get("prefix_lm"):
        return ["--attention-strategy", "prefix_lm"], {"attention": "prefix_lm"}
    report = {"attention": "full"}
    if strategy not in (None, "full"):
        report["attention_note"] = (f"args.json's attention_strategy {strategy!r} is not read by the official XLM-R "
                                    "forward (prefix_lm is false): the model was trained with full attention")
        logger.info("%s: %s", args_path, report["attention_note"])
    return [], report


def _write(out_dir: str, parts: Parts, args_path: Path, report: dict, source: str) -> None:
    """Stage ``dict.txt``, the SentencePiece model (as ``sentencepiece.bpe.model``, the name the tasks
    read), ``args.json``, ``checkpoint.pt`` (checked against the model built on the meta device) and
    ``conversion.json``; ``out_dir`` changes only if everything was written."""
    from ..data.dictionary import load_dictionary

    final = os.path.abspath(out_dir)
    with staged_dir(out_dir, owned=OUTPUT_FILES + tuple(parts.dict_names)) as stage:
        for name in parts.dict_names:
            Path(stage, name).write_text("".join(parts.lines), encoding="utf-8")
        shutil.copy(parts.spm, Path(stage, "sentencepiece.bpe.model"))
        shutil.copy(args_path, Path(stage, "args.json"))
        symbols = list(load_dictionary(os.path.join(stage, parts.dict_names[0])).symbols)
        cfg = training_cfg(final, parts.task, parts.arch, parts.length_head,
                           backbone_state(parts.hf_config, symbols), parts.flags)
        check_state_dict(cfg, parts.state, source, stage)
        write_checkpoint(os.path.join(stage, CHECKPOINT), cfg, parts.state, report["step"], report)
        Path(stage, "conversion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
