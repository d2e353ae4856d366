"""The flags of the paper's scripts (SPEC §9.1), parsed as the official scripts do: ``--flag=value``.

``--flag value`` is accepted too.  An unknown flag is an error that lists the script's flags; the
paper README's misspellings are read as what they mean, with a message (SPEC §11.8).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UserError



class FlagError(UserError, ValueError):
    """A flag the script does not take, a missing value or a missing required flag."""


@dataclass(frozen=True)
class Flag:
    name: str
    help: str
    default: Optional[str] = None
    required: bool = False
    choices: Tuple[str, ...] = ()


def _train_flags(mini_bsz: str) -> List[Flag]:
    return [
        Flag("data_path", "binarized data folder (dict.*.txt, {train,valid,test}.S-T.*)", required=True),
        Flag("pretrained", "local HF directory, or an HF model id found in --cache_dir (offline)"),
        Flag("cache_dir", "HF cache folder searched for an HF model id", default="cache"),
        Flag("output_dir", "checkpoint folder (fairseq --save-dir)", required=True),
        Flag("train_steps", "updates (fairseq --max-update)", required=True),
        Flag("mini_bsz", mini_bsz, required=True),
        Flag("accum_step", "gradient accumulation (fairseq --update-freq)", default="1"),
        Flag("ds_config", "DeepSpeed JSON: its ZeRO stage and fp16/bf16 blocks become fairseq options"),
        Flag("extra", "more flags: --src_lang/--tgt_lang, --bleu_tokenize, or any fairseq flag", default=""),
    ]


_EVAL_STEPS = Flag("eval_steps", "validate and save every N updates", default="5000")
_METRIC = Flag("metric", "validation / evaluation metric", default="bleu", choices=("bleu", "rouge"))
_CKPT = Flag("ckpt", "checkpoint file, or a folder (checkpoint_best.pt, else the highest update)", required=True)

SCRIPTS: Dict[str, List[Flag]] = {
    "task_train": _train_flags("tokens per GPU per step (fairseq --max-tokens)") + [_EVAL_STEPS, _METRIC],
    "task_train_length": _train_flags("sequences per GPU per step (fairseq --batch-size)") + [
        _EVAL_STEPS, _METRIC, Flag("ckpt", "the diffusion (stage-1) checkpoint file or folder", required=True)],
    "eval_task": [
        Flag("data_path", "binarized data folder", required=True),
        _CKPT,
        Flag("output_dir", "where generate-test.txt is written (fairseq --results-path)", required=True),
        Flag("mini_bsz", "tokens per batch (fairseq --max-tokens)", default="4096"),
        Flag("metric", "bleu (sacrebleu) or rouge (ROUGE-1/2/L F)", default="bleu", choices=("bleu", "rouge")),
        Flag("length_beam", "predicted lengths per sentence (the length head)", default="1"),
        Flag("max_iter", "denoising steps S", default="50"),
        Flag("extra", "more flags: --src_lang/--tgt_lang, --bleu_tokenize, --oracle_length, or any fairseq flag",
             default=""),
    ],
    "instruction_tuning": _train_flags("sequences per GPU per step (fairseq --batch-size)"),
    "instruction_train_length": _train_flags("sequences per GPU per step (fairseq --batch-size)") + [
        Flag("ckpt", "the instruction-tuned (stage-1) checkpoint file or folder", required=True)],
    "eval_instruct": [
        Flag("data_paths", "space-separated evaluation jsonl files or folders (SPEC §7.4 layout)", required=True),
        _CKPT,
        Flag("output_dir", "where {bench}.{name}.{shot}.json files are written", required=True),
        Flag("mini_bsz", "rows per batch", default="8"),
        Flag("length_beam", "predicted lengths per row (the length head)", default="1"),
        Flag("max_iter", "denoising steps S", default="50"),
        Flag("extra", "more flags: --oracle_length, or any flag of scripts/eval_instruct.py", default=""),
    ],
}

# misspelling in the paper's README → the flag meant (SPEC §11.8)
TYPOS = {"length_bema": "length_beam"}
# the official instruction_tuning.sh spells --train_steps as --steps (SPEC §9.1)
ALIASES = {"instruction_tuning": {"steps": "train_steps"}}


def usage(script: str) -> str:
    """``--help`` text: every flag with its default and help."""
    lines = [f"usage: bash scripts/{script}.sh --flag=value ...", ""]
    for f in SCRIPTS[script]:
        note = " (required)" if f.required else (f" (default: {f.default!r})" if f.default not in (None, "") else "")
        choices = f" {{{'|'.join(f.choices)}}}" if f.choices else ""
        lines.append(f"  --{f.name}{choices}{note}\n      {f.help}")
    return "\n".join(lines)


def parse(script: str, argv: Sequence[str], notes: List[str]) -> Dict[str, Optional[str]]:
    """``{flag: value}`` for every flag of ``script`` (defaults filled in); corrections go to ``notes``."""
    if script not in SCRIPTS:
        raise FlagError(f"unknown script {script!r}; known: {', '.join(SCRIPTS)}")
    known = {f.name: f for f in SCRIPTS[script]}
    values: Dict[str, Optional[str]] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise FlagError(f"{script}.sh: unexpected argument {arg!r}; flags are --name=value")
        name, eq, value = arg[2:].partition("=")
        if name in TYPOS:
            notes.append(f"--{name} read as --{TYPOS[name]} (a misspelling in the paper's README)")
            name = TYPOS[name]
        name = ALIASES.get(script, {}).get(name, name)
        if name not in known:
            raise FlagError(f"{script}.sh: unknown flag --{name}; known: " + " ".join(f"--{n}" for n in known))
        if not eq:
            if i + 1 >= len(args):
                raise FlagError(f"{script}.sh: --{name} needs a value (--{name}=VALUE)")
            i += 1
            value = args[i]
        if known[name].choices and value not in known[name].choices:
            raise FlagError(f"{script}.sh: --{name}={value} is not one of {', '.join(known[name].choices)}")
        values[name] = value
        i += 1
    missing = [f"--{f.name}" for f in known.values() if f.required and not values.get(f.name)]
    if missing:
        raise FlagError(f"{script}.sh: missing {' '.join(missing)} (see --help)")
    for f in known.values():
        values.setdefault(f.name, f.default)
    return values


def positive_int(values: Dict[str, Optional[str]], name: str) -> int:
    """``values[name]`` as an integer ≥ 1, or a FlagError naming the flag."""
    try:
        n = int(values[name])
    except (TypeError, ValueError):
        raise FlagError(f"--{name}={values[name]} is not a whole number") from None
    if n < 1:
        raise FlagError(f"--{name} must be at least 1, got {n}")
    return n
