"""What the paper's flags mean here: ``--pretrained``, ``--ds_config``, ``--extra`` and the data's pair.

Every decision that changes what the user typed is returned as a note (one line each), which the
script prints before the fairseq command.
"""
import json
import re
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..backbones import is_decoder_type
from .flags import FlagError

_PAIR_FILE = re.compile(r"(?:train|valid|test)\d*\.([^.]+)-([^.]+)\.([^.]+)\.idx")


# ------------------------------------------------------------------------------- --pretrained
def resolve_pretrained(value: str, cache_dir: Optional[str]) -> str:
    """A local HF directory: as given; an HF model id (``facebook/xlm-roberta-xxl``): its snapshot in
    the HF cache folder ``cache_dir`` (``models--facebook--xlm-roberta-xxl/snapshots/<rev>/``, the one
    ``refs/main`` names, else the newest).  Nothing is downloaded."""
    path = Path(value)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FlagError(f"--pretrained={value}: no config.json in this directory (an HF model directory is needed)")
        return str(path)
    if path.exists():
        raise FlagError(f"--pretrained={value} is a file; give the HF model directory")
    repo = Path(cache_dir or "cache") / ("models--" + value.replace("/", "--"))
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    candidates = []
    if ref.is_file():
        candidates.append(snapshots / ref.read_text().strip())
    if snapshots.is_dir():
        candidates += sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for snap in candidates:
        if (snap / "config.json").is_file():
            return str(snap)
    raise FlagError(
        f"--pretrained={value}: not a local directory, and not in the HF cache --cache_dir={cache_dir} "
        f"(looked for {snapshots}/*/config.json). This machine does not download: fetch it where there is "
        f"internet (huggingface-cli download {value} --cache-dir {cache_dir}) and copy the cache here, or pass "
        "a local HF directory")


def arch_for(pretrained_dir: str) -> str:
    """The arch preset of a backbone's ``config.json`` (its sizes override the preset's anyway)."""
    try:
        config = json.loads((Path(pretrained_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FlagError(f"--pretrained: cannot read {pretrained_dir}/config.json: {e}") from None
    if is_decoder_type(config.get("model_type")):
        return "decoder_diffusion"
    if config.get("model_type") == "xlm-roberta-xl":
        return "xlmr_diffusion_xxl" if config.get("hidden_size", 0) >= 4096 else "xlmr_diffusion_xl"
    return "xlmr_diffusion_large" if config.get("hidden_size", 0) >= 1024 else "xlmr_diffusion_base"


# ------------------------------------------------------------------------------- --ds_config
def _enabled(config: dict, key: str, path: str, cuda: bool) -> bool:
    """``config[key]["enabled"]``: a JSON boolean, or ``"auto"`` (on when there is a GPU)."""
    block = config.get(key)
    if block is None:
        return False
    if not isinstance(block, dict):
        raise FlagError(f'--ds_config={path}: "{key}" must be an object such as {{"enabled": true}}, '
                        f"not {json.dumps(block)}")
    value = block.get("enabled", False)
    if value == "auto":
        return cuda
    if not isinstance(value, bool):
        raise FlagError(f'--ds_config={path}: "{key}.enabled" must be true, false or "auto" (a JSON boolean, '
                        f"unquoted), not {json.dumps(value)}")
    return value


def _zero_stage(config: dict, path: str) -> int:
    """``config["zero_optimization"]["stage"]``: a whole number 0-3 (0 when absent)."""
    zero = config.get("zero_optimization")
    if zero is None:
        return 0
    if not isinstance(zero, dict):
        raise FlagError(f'--ds_config={path}: "zero_optimization" must be an object such as {{"stage": 2}}, '
                        f"not {json.dumps(zero)}")
    stage = zero.get("stage", 0)
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 3:
        raise FlagError(f'--ds_config={path}: "zero_optimization.stage" must be 0, 1, 2 or 3 (a JSON number), '
                        f"not {json.dumps(stage)}")
    return stage


def ds_config_flags(path: Optional[str], cuda: bool, notes: List[str]) -> List[str]:
    """fairseq options for a DeepSpeed config: ZeRO 1 → ``--zero-sharding os``; ZeRO 2 → fairseq's
    FSDP without resharding (``--ddp-backend fully_sharded --no-reshard-after-forward``); ZeRO 3 → FSDP;
    ``fp16`` → ``--fp16`` with its loss-scale settings, ``bf16`` → ``--autocast-bf16`` (FSDP: fp16).
    Without a GPU none applies (``--cpu``); one note says what was chosen."""
    if not path:
        return []
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise FlagError(f"--ds_config={path}: cannot read it ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise FlagError(f"--ds_config={path} is not JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(config, dict):
        raise FlagError(f"--ds_config={path}: a JSON object is expected")
    stage = _zero_stage(config, path)
    fp16, bf16 = _enabled(config, "fp16", path, cuda), _enabled(config, "bf16", path, cuda)
    if not cuda:
        notes.append(f"--ds_config={path}: ZeRO stage {stage}"
                     f"{', fp16' if fp16 else ''}{', bf16' if bf16 else ''} not applied: no CUDA device (--cpu, fp32)")
        return []
    flags: List[str] = []
    chosen = []
    if stage == 1:
        flags += ["--zero-sharding", "os"]
        chosen.append("ZeRO 1 → --zero-sharding os")
    elif stage in (2, 3):
        flags += ["--ddp-backend", "fully_sharded"] + (["--no-reshard-after-forward"] if stage == 2 else [])
        chosen.append(f"ZeRO {stage} → FSDP" + (" without resharding" if stage == 2 else ""))
    if bf16 and stage >= 2:
        notes.append(f"--ds_config={path}: bf16 asked, but fairseq's FSDP takes fp16 only: --fp16")
        fp16, bf16 = True, False
    if fp16:
        block = config.get("fp16") or {}
        flags.append("--fp16")
        if isinstance(block.get("initial_scale_power"), int):
            flags += ["--fp16-init-scale", str(2 ** block["initial_scale_power"])]
        if isinstance(block.get("loss_scale_window"), int):
            flags += ["--fp16-scale-window", str(block["loss_scale_window"])]
        if isinstance(block.get("min_loss_scale"), (int, float)):
            flags += ["--min-loss-scale", str(block["min_loss_scale"])]
        chosen.append("fp16")
    elif bf16:
        flags.append("--autocast-bf16")  # fairseq's own --bf16 implies --tpu in this fork (ENVIRONMENT.md)
        chosen.append("bf16 → --autocast-bf16")
    notes.append(f"--ds_config={path}: " + (", ".join(chosen) if chosen else "ZeRO 0, fp32: no option"))
    return flags


# ------------------------------------------------------------------------------- data folder
def data_pairs(data_path: str) -> List[Tuple[str, str]]:
    """Language pairs binarized in ``data_path`` (from ``split.S-T.L.idx`` names), after checking
    that it is a fairseq data folder with a dictionary."""
    folder = Path(data_path)
    if not folder.is_dir():
        raise FlagError(f"--data_path={data_path} is not a folder")
    if not list(folder.glob("dict.*.txt")):
        raise FlagError(f"--data_path={data_path} has no dict.*.txt: it is not a fairseq-preprocess output "
                        "(prepare it with scripts/prepare_translation.py or fairseq-preprocess)")
    return sorted({m.group(1, 2) for f in folder.iterdir() if (m := _PAIR_FILE.fullmatch(f.name))})


def fix_direction(data_path: str, src: Optional[str], tgt: Optional[str], notes: List[str]) -> Tuple[str, str]:
    """``(src, tgt)`` the data can be read with: given, inferred from a folder of one pair, or the given
    pair reversed when the folder holds only the other order (the paper's IWSLT14 eval command passes
    ``--src_lang en --tgt_lang de`` for de→en data): prompts are the source side and cannot swap."""
    pairs = data_pairs(data_path)
    if src and tgt:
        if (src, tgt) in pairs or not pairs:
            return src, tgt
        if (tgt, src) in pairs:
            notes.append(f"--src_lang {src} --tgt_lang {tgt}: {data_path} holds {tgt}→{src} prompts "
                         f"(*.{tgt}-{src}.*); using --source-lang {tgt} --target-lang {src}")
            return tgt, src
        raise FlagError(f"--src_lang {src} --tgt_lang {tgt}: {data_path} holds {', '.join('-'.join(p) for p in pairs)}")
    if len(pairs) == 1:
        notes.append(f"{data_path}: language pair {pairs[0][0]}→{pairs[0][1]} read from its files")
        return pairs[0]
    raise FlagError(f"{data_path}: pass --extra=\"--src_lang S --tgt_lang T\" "
                    f"(it holds {', '.join('-'.join(p) for p in pairs) or 'no binarized split'})")


# ------------------------------------------------------------------------------- --extra
def split_extra(extra: str) -> Dict[str, object]:
    """``--extra`` → ``{"src", "tgt", "bleu_tokenize", "oracle_length", "rest"}`` (``rest``: the other
    flags, passed to fairseq unchanged)."""
    try:
        tokens = shlex.split(extra or "")
    except ValueError as e:
        raise FlagError(f"--extra={extra!r}: {e}") from None
    out: Dict[str, object] = {"src": None, "tgt": None, "bleu_tokenize": None, "oracle_length": False, "rest": []}
    names = {"--src_lang": "src", "--tgt_lang": "tgt", "--bleu_tokenize": "bleu_tokenize"}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        key, eq, value = tok.partition("=")
        if key in names:
            if not eq:
                if i + 1 >= len(tokens):
                    raise FlagError(f"--extra: {key} needs a value")
                i += 1
                value = tokens[i]
            out[names[key]] = value
        elif tok == "--oracle_length":
            out["oracle_length"] = True
        else:
            out["rest"].append(tok)
        i += 1
    return out
