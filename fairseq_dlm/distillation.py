"""Sequence-level knowledge distillation of a binarized translation folder (``scripts/distill.py``).

A teacher — any fairseq checkpoint whose task reads ``{split}.{src}-{tgt}.*`` folders: fairseq's
``translation`` (a ``transformer``), ``translation_lev`` (CMLM) or this plugin's ``diffusion_lm`` —
re-decodes the sources of the chosen splits (``train`` and ``valid`` by default; never ``test``),
and its best hypotheses become the targets of a new folder ``OUT`` with the same dictionary::

    OUT/dict.{src,tgt}.txt                    copied
    OUT/{split}.{src}-{tgt}.{src}.{bin,idx}   copied (the sources are unchanged)
    OUT/{split}.{src}-{tgt}.{tgt}.{bin,idx}   the teacher's hypotheses, binarized with the dictionary
    OUT/{other splits}                        copied unchanged (test sets keep their references)
    OUT/distill/{split}.jsonl                 one {"id", "tokens"} line per example, as decoded
    OUT/text/{split}.{tgt}                    the distilled targets as text (SentencePiece pieces decoded)
    OUT/README.md                             the command, the teacher and its BLEU on valid

The teacher's task reads the data's dictionary, so hypotheses are token ids of that dictionary and
are binarized as they are, with no detokenize-retokenize round trip.  A teacher trained on another
vocabulary is refused: this plugin's models by their saved dictionary fingerprint, fairseq's by the
size of their embeddings (a vocabulary of the same size in another order cannot be told apart there).  Decoding goes in chunks of ``batch_size`` examples in id order,
each chunk appended to ``distill/{split}.jsonl`` once decoded: an interrupted run resumes at the
first example without a line, and nothing is decoded or written twice.
"""
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List

from .errors import UserError

logger = logging.getLogger(__name__)

DONE = "distill"  # OUT/distill/{split}.jsonl


class DistillError(UserError, ValueError):
    """Inputs that cannot be distilled; the message names the file or flag and the fix."""


@dataclass
class DistillOptions:
    """What to distill (the flags of ``scripts/distill.py``)."""

    data: str = field(metadata={"help": "binarized folder ({split}.{src}-{tgt}.*, dict.*.txt)"})
    teacher: str = field(metadata={"help": "the teacher's fairseq checkpoint"})
    out: str = field(metadata={"help": "the distilled folder to write (resumed when it holds a partial run)"})
    splits: List[str] = field(default_factory=lambda: ["train", "valid"],
                              metadata={"help": "splits whose targets are replaced (test sets are refused)"})
    beam: int = field(default=5, metadata={"help": "beam size (autoregressive teacher) or length beam (diffusion)"})
    steps: int = field(default=10, metadata={"help": "decoding iterations of an iterative teacher (CMLM, diffusion)"})
    batch_size: int = field(default=64, metadata={"help": "examples per decoding batch (and per resume chunk)"})
    cpu: bool = field(default=False, metadata={"help": "decode on the CPU even when CUDA is available"})
    trust_checkpoint: bool = field(default=False, metadata={"help": "load a teacher holding arbitrary objects"})


def pair(data: Path):
    """``(src, tgt)`` of the folder's ``train.{src}-{tgt}.{src}.idx`` (or any split's)."""
    for name in sorted(os.listdir(data)):
        parts = name.split(".")
        if len(parts) == 4 and parts[3] == "idx" and "-" in parts[1] and parts[1].split("-")[0] == parts[2]:
            src, tgt = parts[1].split("-")
            return src, tgt
    raise DistillError(f"--data {data}: no binarized split ({{split}}.{{src}}-{{tgt}}.{{src}}.idx); binarize it with "
                       "scripts/prepare_translation.py or fairseq-preprocess")


def load_teacher(opts: DistillOptions, src: str, tgt: str):
    """``(models, task)`` of the teacher, its task reading ``opts.data`` (and its dictionary)."""
    from . import register
    from .checkpoints import load_fairseq_model

    register()
    return load_fairseq_model(opts.teacher, "--teacher", {"data": opts.data, "source_lang": src, "target_lang": tgt},
                              trust=opts.trust_checkpoint, error=DistillError,
                              hint="distill the data the teacher was trained on, or train the teacher on this folder")


def build_generator(task, models, opts: DistillOptions):
    """The teacher task's own generator: beam search, iterative refinement or diffusion decoding."""
    from .generator import DiffusionGenerator
    from .tasks.base import DiffusionTask

    if isinstance(task, DiffusionTask):
        return DiffusionGenerator.from_task(task, length_beam=opts.beam, max_iter=opts.steps)
    from fairseq.dataclass.configs import GenerationConfig

    return task.build_generator(models, GenerationConfig(beam=opts.beam, iter_decode_max_iter=opts.steps,
                                                         iter_decode_with_beam=1))


def _done_ids(path: Path) -> Dict[int, List[int]]:
    """The examples already distilled; a line cut by an interruption is removed from the file (its
    example is decoded again)."""
    done = {}
    if path.is_file():
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(raw.rfind(b"\n") + 1)
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    done[int(row["id"])] = [int(t) for t in row["tokens"]]
                except (ValueError, KeyError, TypeError):
                    continue
    return done


def distill_split(task, models, generator, split: str, out: Path, opts: DistillOptions) -> Dict[int, List[int]]:
    """Decode every source of ``split`` (resuming ``out/distill/{split}.jsonl``); ``{id: tokens}``."""
    import torch
    from fairseq import utils

    task.load_dataset(split)
    dataset = task.dataset(split)
    path = out / DONE / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _done_ids(path)
    if done:
        logger.info("%s: %d of %d examples distilled before; resuming", split, len(done), len(dataset))
    use_cuda = torch.cuda.is_available() and not opts.cpu
    eos = task.target_dictionary.eos()
    todo = [i for i in range(len(dataset)) if i not in done]
    with open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), opts.batch_size):
            ids = todo[start:start + opts.batch_size]
            sample = dataset.collater([dataset[i] for i in ids])
            if use_cuda:
                sample = utils.move_to_cuda(sample)
            with torch.no_grad():
                hypos = task.inference_step(generator, models, sample)
            rows = []
            for i, h in zip(sample["id"].tolist(), hypos):
                tokens = [t for t in h[0]["tokens"].tolist() if t != eos]
                done[i] = tokens
                rows.append(json.dumps({"id": i, "tokens": tokens}) + "\n")
            f.writelines(rows)
            f.flush()
            logger.info("%s: %d / %d", split, len(done), len(dataset))
    return done


def write_binarized(tokens: Dict[int, List[int]], dictionary, prefix: Path) -> None:
    """``prefix.{bin,idx}``: one ``[tokens…, </s>]`` row per id, in id order (fairseq-preprocess's layout)."""
    import torch
    from fairseq.data import indexed_dataset

    builder = indexed_dataset.make_builder(str(prefix) + ".bin", impl="mmap", vocab_size=len(dictionary))
    for i in range(len(tokens)):
        builder.add_item(torch.IntTensor(tokens[i] + [dictionary.eos()]))
    builder.finalize(str(prefix) + ".idx")


def distill(opts: DistillOptions, command: str) -> dict:
    """The whole run (see the module docstring); returns ``{"splits": {split: n}, "valid_bleu": ...}``."""
    import torch

    data, out = Path(opts.data), Path(opts.out)
    if not data.is_dir():
        raise DistillError(f"--data {data}: no such folder")
    if out.resolve() == data.resolve():
        raise DistillError("--out must be a new folder, not --data (the raw targets are kept)")
    bad = [s for s in opts.splits if s.startswith("test")]
    if bad:
        raise DistillError(f"--splits {' '.join(bad)}: test sets keep their references; distill train and valid")
    if opts.beam < 1 or opts.steps < 1 or opts.batch_size < 1:
        raise DistillError("--beam, --steps and --batch-size must be at least 1")
    src, tgt = pair(data)
    for split in opts.splits:
        if not (data / f"{split}.{src}-{tgt}.{src}.idx").is_file():
            raise DistillError(f"--splits {split}: {data / f'{split}.{src}-{tgt}.{src}.idx'} does not exist")
    models, task = load_teacher(opts, src, tgt)
    generator = build_generator(task, models, opts)
    out.mkdir(parents=True, exist_ok=True)
    counts, bleu = {}, None
    for split in opts.splits:
        tokens = distill_split(task, models, generator, split, out, opts)
        write_binarized(tokens, task.target_dictionary, out / f"{split}.{src}-{tgt}.{tgt}")
        detok = _detokenizer(task.target_dictionary, data)
        text = [detok(torch.tensor(tokens[i], dtype=torch.long)) for i in range(len(tokens))]
        (out / "text").mkdir(exist_ok=True)
        (out / "text" / f"{split}.{tgt}").write_text("".join(t + "\n" for t in text), encoding="utf-8")
        counts[split] = len(tokens)
        if split == "valid":
            bleu = _bleu(task, split, text, detok)
    for name in os.listdir(data):  # dictionaries, sources and untouched splits
        target_side = any(name.startswith(f"{s}.{src}-{tgt}.{tgt}.") for s in opts.splits)
        if os.path.isfile(data / name) and not target_side and name != "README.md":
            shutil.copy2(data / name, out / name)
    report = {"splits": counts, "valid_bleu": bleu, "teacher": os.path.abspath(opts.teacher)}
    _readme(out, command, opts, report)
    return report


def _detokenizer(dictionary, data: Path) -> Callable[..., str]:
    """Token ids → text: through the data folder's HF ``tokenizer.json`` when it has one (byte-level BPE),
    with SentencePiece post-processing for a dictionary of ``▁`` pieces, else the tokens space-separated."""
    from .data.subword import TOKENIZER_JSON, TokenizerJson

    if (data / TOKENIZER_JSON).is_file():
        decode = TokenizerJson(str(data / TOKENIZER_JSON)).detokenize
        return lambda tokens: decode(dictionary.string(tokens).split())
    bpe = "sentencepiece" if any(s.startswith("\u2581") for s in dictionary.symbols) else None
    return lambda tokens: dictionary.string(tokens, bpe)


def _bleu(task, split: str, hyps: List[str], detok: Callable[..., str]) -> dict:
    """The teacher's cased BLEU on ``split`` against the folder's own references."""
    from .metrics import get_metric

    dataset = task.dataset(split)
    refs = [detok(dataset[i]["target"]) for i in range(len(hyps))]
    result = get_metric("bleu").score(hyps, refs)
    return {"bleu": round(result.value, 2), "signature": result.signature, "n": result.n}


def _readme(out: Path, command: str, opts: DistillOptions, report: dict) -> None:
    bleu = report["valid_bleu"]
    lines = ["# Distilled targets (sequence-level knowledge distillation)", "", "Written by `scripts/distill.py`:", "",
             f"    {command}", "", f"Teacher: `{report['teacher']}` (beam/length beam {opts.beam}, {opts.steps} steps "
             "for an iterative teacher).", "", "| split | examples |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in report["splits"].items()]
    if bleu:
        lines += ["", f"The teacher's BLEU on valid: {bleu['bleu']} ({bleu['signature']}, {bleu['n']} sentences)."]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
