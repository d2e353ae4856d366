"""The fairseq command each of the paper's task scripts runs (SPEC §8, §9.1).

``build(script, values, cuda, notes)`` returns ``[tool, *args]`` where ``tool`` is
``fairseq-train`` or ``fairseq-generate``; the recipe's fixed settings are those of SPEC §8
(AdamW β = (0.9, 0.98), ε = 1e-8, weight decay 0.01, clip 1.0, lr 5e-5, the log-warmup-constant
schedule that the official runs actually used, dropout 0.1, seed 42).
"""
import difflib
import json
from pathlib import Path
from typing import Dict, List, Optional

from ..data.subword import SPM_FILE, TOKENIZER_JSON
from .checkpoint_choice import resolve_checkpoint
from .flags import FlagError, positive_int
from .settings import (arch_for, ds_config_flags, fix_direction, resolve_pretrained,
                       split_extra)

USER_DIR = str(Path(__file__).resolve().parents[1])
TASK_LR, INSTRUCT_LR = "5e-5", "1e-5"  # task-specific tuning and FLAN 2022 (SPEC §8)


def recipe(lr: str) -> List[str]:
    """The optimisation settings shared by every stage (SPEC §8)."""
    return ["--optimizer", "torch_adamw", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-8", "--weight-decay", "0.01",
            "--clip-norm", "1.0", "--lr", lr, "--lr-scheduler", "log_warmup_constant", "--dropout", "0.1",
            "--seed", "42"]
VALID_METRIC = {"bleu": "bleu", "rouge": "rougeL"}  # --metric → the validation metric choosing checkpoint_best.pt


def _device(cuda: bool, notes: List[str]) -> List[str]:
    if cuda:
        return []
    notes.append("no CUDA device: running on the CPU (--cpu)")
    return ["--cpu"]


def _steps(values, batch_flag: str) -> List[str]:
    """``--mini_bsz``, ``--accum_step``, ``--train_steps`` as ``batch_flag``, ``--update-freq``, ``--max-update``."""
    return [batch_flag, str(positive_int(values, "mini_bsz")), "--update-freq", str(positive_int(values, "accum_step")),
            "--max-update", str(positive_int(values, "train_steps"))]


def _every(values) -> List[str]:
    """Validate and save every ``--eval_steps`` updates."""
    steps = str(positive_int(values, "eval_steps"))
    return ["--validate-interval-updates", steps, "--save-interval-updates", steps]


# instruction stages: no validation, a checkpoint every 1000 updates, the last 5 kept (SPEC §8)
INSTRUCT_SAVING = ["--disable-validation", "--save-interval-updates", "1000", "--keep-interval-updates", "5"]


def _backbone(pretrained: Optional[str]) -> List[str]:
    """``--arch`` from the backbone's config and ``--pretrained``; without a backbone (a stage that
    restores it from ``--ckpt``) the base preset, whose sizes the checkpoint overrides."""
    if not pretrained:
        return ["--arch", "xlmr_diffusion_base"]
    return ["--arch", arch_for(pretrained), "--pretrained", pretrained]


def _run_end(values, extra: dict, cuda: bool, notes: List[str]) -> List[str]:
    """The end of every training command: ``--save-dir``, the ``--ds_config`` options, the device and the
    rest of ``--extra``."""
    return ["--save-dir", values["output_dir"], *ds_config_flags(values["ds_config"], cuda, notes),
            *_device(cuda, notes), *extra["rest"]]


def _pair(values: Dict[str, Optional[str]], extra: dict, notes: List[str]) -> List[str]:
    src, tgt = fix_direction(values["data_path"], extra["src"], extra["tgt"], notes)
    return ["--source-lang", src, "--target-lang", tgt]


def close_path(value: str) -> Optional[Path]:
    """``value`` with its first missing component replaced by the one close match among the
    existing names next to it (``gigword-10k.xxl`` → ``gigaword-10k.xxl``), if the result exists."""
    path = Path(value)
    parts = path.parts
    for i in range(len(parts)):
        head = Path(*parts[: i + 1])
        if head.exists():
            continue
        parent = Path(*parts[:i]) if i else Path(".")
        if not parent.is_dir():
            return None
        match = difflib.get_close_matches(parts[i], [p.name for p in parent.iterdir()], n=1, cutoff=0.85)
        if not match:
            return None
        fixed = Path(parent, match[0], *parts[i + 1:])
        return fixed if fixed.exists() else None
    return None


def _checkpoint(value: str, notes: List[str]) -> str:
    if not Path(value).exists() and (fixed := close_path(value)) is not None:
        notes.append(f"--ckpt={value} does not exist; using {fixed}, the one existing path it misspells "
                     "(as the paper's README writes gigword-10k for gigaword-10k)")
        value = str(fixed)
    try:
        return resolve_checkpoint(value)
    except FileNotFoundError as e:
        raise FlagError(f"--ckpt={value}: {e}") from None


VALID_STEPS = 10  # the paper's validation decodes with S = 10 (oracle length)


def task_train(values, cuda: bool, notes: List[str]) -> List[str]:
    """Stage 1, diffusive adaptation: validation by ``--metric`` (oracle length, S = 10) every
    ``--eval_steps`` updates picks ``checkpoint_best.pt``."""
    extra = split_extra(values["extra"])
    if not values["pretrained"]:
        raise FlagError("task_train.sh: missing --pretrained (a local HF directory or an HF model id in --cache_dir)")
    pretrained = resolve_pretrained(values["pretrained"], values["cache_dir"])
    metric = VALID_METRIC[values["metric"]]
    options = {"tokenize": extra["bleu_tokenize"]} if extra["bleu_tokenize"] and metric == "bleu" else {}
    if extra["oracle_length"]:
        notes.append("--oracle_length is an evaluation flag: validation already decodes with the oracle length")
    return ["fairseq-train", values["data_path"], "--user-dir", USER_DIR, "--task", "diffusion_lm",
            *_pair(values, extra, notes), *_backbone(pretrained), "--criterion", "diffusion_lm", *recipe(TASK_LR),
            *_steps(values, "--max-tokens"), *_every(values),
            "--eval-metric", metric, "--eval-metric-options", json.dumps(options), "--eval-args", json.dumps({"iter_decode_max_iter": VALID_STEPS, "oracle_length": True}),
            "--eval-post-process", "sentencepiece",
            "--best-checkpoint-metric", metric, "--maximize-best-checkpoint-metric",
            *_run_end(values, extra, cuda, notes)]


def task_train_length(values, cuda: bool, notes: List[str]) -> List[str]:
    """Stage 2: the length head on the frozen stage-1 model (``--finetune-from-model``); the best
    checkpoint follows the validation length loss."""
    extra = split_extra(values["extra"])
    ckpt = _checkpoint(values["ckpt"], notes)
    pretrained = resolve_pretrained(values["pretrained"], values["cache_dir"]) if values["pretrained"] else None
    notes.append(f"--metric={values['metric']}: the length stage keeps the checkpoint with the lowest validation "
                 "length loss; the metric is eval_task.sh's")
    return ["fairseq-train", values["data_path"], "--user-dir", USER_DIR, "--task", "diffusion_lm",
            *_pair(values, extra, notes), *_backbone(pretrained),
            "--length-head", "--freeze-backbone", "--criterion", "diffusion_length", "--finetune-from-model", ckpt,
            *recipe(TASK_LR), *_steps(values, "--batch-size"), *_every(values),
            *_run_end(values, extra, cuda, notes)]


def eval_task(values, cuda: bool, notes: List[str]) -> List[str]:
    """``fairseq-generate`` on the test split: deterministic reparameterised decoding with ``--max_iter``
    steps, the oracle length (``--oracle_length`` in ``--extra``) or ``--length_beam`` predicted lengths;
    BLEU (sacrebleu) or ROUGE-1/2/L F (the plugin's ``rouge`` scorer)."""
    extra = split_extra(values["extra"])
    ckpt = _checkpoint(values["ckpt"], notes)
    notes.append(f"--ckpt={values['ckpt']}: {ckpt}")
    beam = positive_int(values, "length_beam")
    canvas = ["--oracle-length"] if extra["oracle_length"] else ["--iter-decode-with-beam", str(beam)]
    if extra["oracle_length"] and beam > 1:
        notes.append(f"--oracle_length with --length_beam={beam}: the oracle length is used, the beam ignored")
    scoring = ["--scoring", "rouge"] if values["metric"] == "rouge" else ["--scoring", "sacrebleu"]
    if extra["bleu_tokenize"]:
        if values["metric"] != "bleu":
            raise FlagError("--bleu_tokenize is a BLEU option; --metric=rouge does not take it")
        scoring += ["--sacrebleu-tokenizer", extra["bleu_tokenize"]]
    precision = ["--autocast-bf16"] if cuda else []  # fairseq's own --bf16 implies --tpu in this fork
    return ["fairseq-generate", values["data_path"], "--user-dir", USER_DIR, "--task", "diffusion_lm",
            *_pair(values, extra, notes), "--path", ckpt, "--gen-subset", "test",
            "--max-tokens", str(positive_int(values, "mini_bsz")),
            "--iter-decode-max-iter", str(positive_int(values, "max_iter")), *canvas,
            "--post-process", "sentencepiece", *scoring, "--results-path", values["output_dir"],
            *precision, *_device(cuda, notes), *extra["rest"]]


# a backbone folder's subword model, in the order looked for: XLM-R's, LLaMA's SentencePiece, an HF tokenizer.json
BACKBONE_SUBWORD_FILES = (SPM_FILE, "tokenizer.model", TOKENIZER_JSON)


def instruct_vocabulary(data_path: str, pretrained: Optional[str], output_dir: str, notes: List[str]) -> List[str]:
    """``--spm-model``/``--dict`` for ``--task diffusion_instruct`` when DATA lacks them: the backbone's
    subword model (:data:`BACKBONE_SUBWORD_FILES`) and ``dict.txt`` (written into ``output_dir`` from the
    subword model's vocabulary, XLM-R's convention for a SentencePiece model, when the HF directory has none)."""
    from ..data.subword import SUBWORD_FILES, load_subword

    data = Path(data_path)
    if not data.is_dir():
        raise FlagError(f"--data_path={data_path} is not a folder of jsonl shards")
    if (data / "dict.txt").is_file() and any((data / f).is_file() for f in SUBWORD_FILES):
        return []
    if not pretrained:
        raise FlagError(f"--data_path={data_path} has no sentencepiece.bpe.model (or tokenizer.json) and dict.txt: "
                        "pass --pretrained (its tokenizer is used) or copy the backbone's two files there")
    spm = next((Path(pretrained) / f for f in BACKBONE_SUBWORD_FILES if (Path(pretrained) / f).is_file()), None)
    if spm is None:
        raise FlagError(f"--pretrained={pretrained} has none of {', '.join(BACKBONE_SUBWORD_FILES)}: its tokenizer "
                        "is needed to encode the jsonl text")
    dictionary = Path(pretrained) / "dict.txt"
    if not dictionary.is_file():
        dictionary = Path(output_dir) / "dict.txt"
        if not dictionary.is_file():
            lines = [f"{piece} 1\n" for piece in load_subword(str(spm)).vocabulary()]
            dictionary.parent.mkdir(parents=True, exist_ok=True)
            dictionary.write_text("".join(lines), encoding="utf-8")
            notes.append(f"{pretrained} has no dict.txt: wrote its tokenizer's vocabulary ({len(lines)} pieces of "
                         f"{spm.name}) to {dictionary}")
    notes.append(f"tokenizer: {spm} and {dictionary} (--data_path holds only shards)")
    return ["--spm-model", str(spm), "--dict", str(dictionary)]


def instruction_tuning(values, cuda: bool, notes: List[str]) -> List[str]:
    """Instruction tuning on a jsonl mixture (``--task diffusion_instruct``, full dictionary, SPEC §8):
    no validation; a checkpoint every 1000 updates, the last 5 kept."""
    extra = split_extra(values["extra"])
    if not values["pretrained"]:
        raise FlagError("instruction_tuning.sh: missing --pretrained (a local HF directory or an HF model id)")
    pretrained = resolve_pretrained(values["pretrained"], values["cache_dir"])
    return ["fairseq-train", values["data_path"], "--user-dir", USER_DIR, "--task", "diffusion_instruct",
            *instruct_vocabulary(values["data_path"], pretrained, values["output_dir"], notes),
            *_backbone(pretrained), "--criterion", "diffusion_lm", *recipe(INSTRUCT_LR),
            *_steps(values, "--batch-size"), *INSTRUCT_SAVING, *_run_end(values, extra, cuda, notes)]


def instruction_train_length(values, cuda: bool, notes: List[str]) -> List[str]:
    """The length head on the frozen instruction-tuned model (lr 1e-5, SPEC §8); no validation."""
    extra = split_extra(values["extra"])
    ckpt = _checkpoint(values["ckpt"], notes)
    pretrained = resolve_pretrained(values["pretrained"], values["cache_dir"]) if values["pretrained"] else None
    return ["fairseq-train", values["data_path"], "--user-dir", USER_DIR, "--task", "diffusion_instruct",
            *instruct_vocabulary(values["data_path"], pretrained, values["output_dir"], notes),
            *_backbone(pretrained),
            "--length-head", "--freeze-backbone", "--criterion", "diffusion_length", "--finetune-from-model", ckpt,
            *recipe(INSTRUCT_LR), *_steps(values, "--batch-size"), *INSTRUCT_SAVING,
            *_run_end(values, extra, cuda, notes)]


def _eval_file(path: str, notes: List[str]) -> str:
    """An evaluation path as given, or with the ``data/`` prefix the paper's README drops once."""
    def present(p: Path) -> bool:
        return p.exists() or p.with_name(p.name + ".gz").exists() or p.parent.is_dir()

    if present(Path(path)) or not present(Path("data") / path):
        return path
    notes.append(f"{path} does not exist; using data/{path} (the paper's README drops data/ once)")
    return str(Path("data") / path)


def eval_instruct(values, cuda: bool, notes: List[str]) -> List[str]:
    """``scripts/eval_instruct.py``: decode and score each ``--data_paths`` file (SPEC §7.3-§7.4)."""
    extra = split_extra(values["extra"])
    ckpt = _checkpoint(values["ckpt"], notes)
    notes.append(f"--ckpt={values['ckpt']}: {ckpt}")
    files = [_eval_file(p, notes) for p in values["data_paths"].split()]
    if not files:
        raise FlagError("--data_paths is empty")
    beam = positive_int(values, "length_beam")
    canvas = ["--oracle-length"] if extra["oracle_length"] else ["--length-beam", str(beam)]
    return ["eval_instruct.py", "--ckpt", ckpt, "--files", *files, "--output-dir", values["output_dir"],
            "--batch-size", str(positive_int(values, "mini_bsz")), "--max-iter", str(positive_int(values, "max_iter")),
            *canvas, *(["--bf16"] if cuda else ["--cpu"]), *extra["rest"]]


BUILDERS = {"task_train": task_train, "task_train_length": task_train_length, "eval_task": eval_task,
            "instruction_tuning": instruction_tuning, "instruction_train_length": instruction_train_length,
            "eval_instruct": eval_instruct}


def build(script: str, values, cuda: bool, notes: List[str]) -> List[str]:
    """The command ``script`` runs for parsed flag ``values``."""
    return BUILDERS[script](values, cuda, notes)
