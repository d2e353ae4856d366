"""Instruction-benchmark evaluation in one process (SPEC §6.3, §7.3, §7.4, §11).

Reads the paper's evaluation jsonl files, decodes every row with a diffusion checkpoint (oracle
length or the length head, ``S`` steps), and scores as SPEC §7.3 says with
:mod:`fairseq_dlm.metrics.instruct`.  One :class:`EvalJob` per file (or folder):

* the benchmark comes from the path (``.../mmlu/...``, ``bbh-nlp``, ``mgsm`` / ``gsm8k``,
  ``tydiqa``, ``iwslt14``) unless given; an unknown one is an error naming the file;
* rows and group labels come from :func:`~fairseq_dlm.metrics.evalfiles.load_eval_set`
  (``full.jsonl`` + ``index2subject.json`` for MMLU / BBH, ``flan2022.jsonl`` +
  ``flan2022_index2lang.json`` for TyDiQA, a per-group file is one group, a folder is its
  per-group files); a row without ``targets`` is an error naming the file and line;
* the canvas: ``oracle`` (the target's pieces; for MGSM the ``"# " × 60 + answer`` placeholder
  of SPEC §7.4, which leaks the answer's length), ``fixed`` (``--fixed-canvas-length N``: every
  canvas has N slots, leak-free, reported under its own name) or ``predicted`` (the length head,
  ``--length-beam`` candidates);
* prompts longer than the positions lose their oldest tokens, as in training
  (:func:`~fairseq_dlm.data.encode.fit_example`); they are counted and reported.

Results: ``{output_dir}/{bench}.{name}.{shot}.json`` with settings, score (``BenchmarkScore``)
and one prediction per row in file order, plus a printed table per benchmark.
"""
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .data.encode import PieceEncoder, fit_example
from .diffusion.options import DEFAULTS
from .errors import UserError
from .metrics.answers import choice_correct, number_correct, squad_em, squad_f1
from .metrics.evalfiles import (FULL_NAMES, GROUP_MAP_NAMES, EvalFileError, EvalSet, group_label,
                                load_eval_set, read_eval_jsonl, read_group_map, resolve)
from .metrics.instruct import BENCHMARKS, BenchmarkScore, hypotheses_in_order, score_benchmark
from .recipes.checkpoint_choice import resolve_checkpoint

logger = logging.getLogger(__name__)

# path component → benchmark (first match from the file name upwards)
BENCHMARK_PATTERNS = (
    (re.compile(r"^mmlu"), "mmlu"), (re.compile(r"^bbh"), "bbh-nlp"), (re.compile(r"^(mgsm|gsm8k)"), "mgsm"),
    (re.compile(r"^tydiqa"), "tydiqa"), (re.compile(r"^iwslt14"), "iwslt14"),
)
INPUT_EXCERPT = 300  # characters of the prompt's end kept in the predictions file


class UnknownBenchmarkError(UserError, ValueError):
    """The benchmark of an evaluation file is neither given nor recognisable from its path."""


# ---------------------------------------------------------------------------------- files
@dataclass
class EvalJob:
    """One evaluation file (or folder): its benchmark, name, shot count and rows."""

    path: str
    benchmark: str
    name: str
    shot: str
    data: EvalSet
    direction: Optional[str] = None  # iwslt14: deen | ende
    limited_from: Optional[int] = None  # rows read when --limit cut them
    limit: Optional[int] = None  # --limit: the first N rows of each group were kept

    @property
    def options(self) -> Dict[str, Any]:
        """Extra keyword arguments of ``score_benchmark``."""
        return {"direction": self.direction} if self.benchmark == "iwslt14" else {}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


def infer_benchmark(path: str) -> str:
    """``mmlu | bbh-nlp | mgsm | tydiqa | iwslt14`` from the path's components (file name first)."""
    for part in reversed(Path(path).resolve().parts if os.path.exists(path) else Path(path).parts):
        for pattern, bench in BENCHMARK_PATTERNS:
            if pattern.match(part.lower()):
                return bench
    raise UnknownBenchmarkError(
        f"{path}: cannot tell the benchmark from the path (no component starting with mmlu, bbh, mgsm, gsm8k, "
        f"tydiqa or iwslt14); pass --benchmark {'|'.join(BENCHMARKS)}")


def infer_shot(path: str) -> str:
    """``"0-shot"`` etc. from the path, else ``"na"``."""
    shots = [p for p in Path(path).parts if re.fullmatch(r"\d+-shot", p)]
    return shots[-1] if shots else "na"


def infer_direction(path: str) -> str:
    """IWSLT14 direction from the file name (``deen`` / ``ende``)."""
    stem = _stem(Path(path)).lower().replace("-", "").replace("_", "")
    for direction in ("deen", "ende"):
        if direction in stem:
            return direction
    raise UnknownBenchmarkError(f"{path}: an iwslt14 file must be named deen.jsonl or ende.jsonl (the direction)")


def _full_with_map(file: Path) -> EvalSet:
    """A ``full.jsonl`` / ``flan2022.jsonl`` with its folder's group map (one group without a map)."""
    rows = read_eval_jsonl(file)
    maps = [file.parent / n for n in GROUP_MAP_NAMES] + [file.parent / (n + ".gz") for n in GROUP_MAP_NAMES]
    map_path = next((m for m in maps if m.exists()), None)
    if map_path is None:
        logger.warning("%s: no group map next to it; every row is one group", file)
        return EvalSet(rows, [group_label(file)] * len(rows), [str(file)])
    labels = read_group_map(map_path)
    if len(labels) != len(rows):
        raise EvalFileError(f"{map_path} has {len(labels)} labels for the {len(rows)} rows of {file}; pass the "
                            f"folder {file.parent} to score its per-group files instead")
    return EvalSet(rows, labels, [str(file), str(map_path)])


def load_job(path: str, benchmark: str = "auto", limit: Optional[int] = None) -> EvalJob:
    """Read ``path`` (file or folder) as an :class:`EvalJob`; ``limit`` keeps the first ``limit`` rows
    of each group (BBH task, TyDiQA language, MMLU subject; a one-group file: its first rows), so
    that a limited folder still has every group of its macro average."""
    bench = infer_benchmark(path) if benchmark == "auto" else benchmark
    if bench not in BENCHMARKS:
        raise UnknownBenchmarkError(f"{path}: unknown benchmark {bench!r}; known: {', '.join(BENCHMARKS)}")
    p = Path(path)
    full = {n for n in FULL_NAMES} | {n + ".gz" for n in FULL_NAMES}
    gz = p.with_name(p.name + ".gz")
    if p.is_dir():
        data = load_eval_set(p)
    elif (p.name in full or gz.name in full) and not p.exists() and not gz.exists() and p.parent.is_dir():
        # the paper's commands name bbh-nlp/.../full.jsonl and tydiqa/.../flan2022.jsonl; a folder of
        # per-group files with its group map holds the same rows (flan2022: in the map's order, checked)
        logger.info("%s does not exist: reading the per-group files of %s instead", p, p.parent)
        data = load_eval_set(p.parent, official_subset=p.name.startswith("flan2022"))
    elif p.name in full or gz.name in full:
        data = _full_with_map(resolve(p))
    else:
        data = load_eval_set(p)  # one file, one group (a BBH task, a TyDiQA language, an MGSM language)
    if not len(data):
        raise EvalFileError(f"{path}: no rows")
    name = _stem(p) if not p.is_dir() else p.name
    job = EvalJob(str(path), bench, name, infer_shot(path), data,
                  direction=infer_direction(path) if bench == "iwslt14" else None)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, not {limit}")
        seen, keep = Counter(), []
        for i, group in enumerate(data.groups):
            seen[group] += 1
            if seen[group] <= limit:
                keep.append(i)
        if len(keep) < len(data):
            job.limited_from, job.limit = len(data), limit
            job.data = EvalSet([data.examples[i] for i in keep], [data.groups[i] for i in keep], data.sources,
                               data.notes)
    return job


# ------------------------------------------------------------------------------- decoding
@dataclass
class DecodeSettings:
    """How rows are decoded (SPEC §6.3): ``canvas`` is ``oracle``, ``fixed`` or ``predicted``."""

    max_iter: int = DEFAULTS.max_iter
    canvas: str = "oracle"
    fixed_canvas_length: Optional[int] = None
    length_beam: int = DEFAULTS.length_beam
    response_room: int = 64  # predicted lengths: slots kept free when cutting long prompts
    batch_size: int = 8
    decoding_strategy: str = DEFAULTS.strategy
    suppress_special_tokens: bool = DEFAULTS.suppress_special_tokens
    seed: int = DEFAULTS.seed
    bf16: bool = False

    def __post_init__(self):
        if self.canvas not in ("oracle", "fixed", "predicted"):
            raise ValueError(f"canvas must be oracle, fixed or predicted, got {self.canvas!r}")
        if self.canvas == "fixed" and not (self.fixed_canvas_length or 0) >= 1:
            raise ValueError("--fixed-canvas-length must be ≥ 1")


@dataclass
class Decoder:
    """A loaded checkpoint with its task, dictionary and SentencePiece encoder."""

    models: list
    task: Any
    encoder: PieceEncoder
    checkpoint: str
    use_cuda: bool

    @property
    def max_positions(self) -> int:
        return self.models[0].max_positions()


def load_decoder(ckpt: str, data_dir: Optional[str] = None, spm_model: Optional[str] = None,
                 dict_path: Optional[str] = None, cpu: bool = False) -> Decoder:
    """Load ``ckpt`` with fairseq (task from its cfg; ``data``/``spm_model``/``dict`` overridden when given)."""
    from fairseq import checkpoint_utils

    path = resolve_checkpoint(ckpt)
    overrides = {k: v for k, v in (("data", data_dir), ("spm_model", spm_model), ("dict", dict_path)) if v}
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
    use_cuda = torch.cuda.is_available() and not cpu
    for m in models:
        m.eval()
        if use_cuda:
            m.cuda()
    encoder = getattr(task, "encoder", None)
    if spm_model or encoder is None:
        spm = spm_model or os.path.join(data_dir or task.cfg.data, "sentencepiece.bpe.model")
        encoder = PieceEncoder(spm, task.dictionary)
    logger.info("loaded %s (%s task, %d positions, %s)", path, task.__class__.__name__, models[0].max_positions(),
                "cuda" if use_cuda else "cpu")
    return Decoder(models, task, encoder, path, use_cuda)


@dataclass
class EncodedRows:
    """Token rows of a job: prompts ``[P+1]``, canvases ``[L+1]`` (None: predicted lengths)."""

    prompts: List[torch.Tensor]
    canvases: Optional[List[torch.Tensor]]
    prompts_cut: int = 0
    canvases_clipped: int = 0


def canvas_stand_in(dictionary, length: int) -> torch.Tensor:
    """``[length + 1]``: ``length`` ``<unk>`` then ``</s>``, a target row whose only information is its
    length (the generator's oracle length counts its non-special tokens)."""
    return torch.cat([torch.full((length,), dictionary.unk()), torch.tensor([dictionary.eos()])])


def encode_rows(decoder: Decoder, data: EvalSet, settings: DecodeSettings) -> EncodedRows:
    """Tokenise prompts and build each row's canvas stand-in, fitted into the model's positions.

    The canvas row is what the generator's oracle length counts (non-special tokens + ``</s>``):
    the target's pieces (``oracle``), or ``N`` ``<unk>`` (``fixed``, no information about the
    answer), or none (``predicted``: ``response_room`` slots are kept free when cutting prompts)."""
    d, limit = decoder.task.dictionary, decoder.max_positions
    eos = torch.tensor([d.eos()])
    prompts, canvases, cut, clipped = [], [], 0, 0
    for ex in data.examples:
        prompt = decoder.encoder.encode(ex.inputs)
        if settings.canvas == "oracle":
            canvas = decoder.encoder.encode(ex.targets)
        else:
            n = settings.fixed_canvas_length if settings.canvas == "fixed" else settings.response_room
            canvas = canvas_stand_in(d, n)
        if canvas.numel() - 1 > limit - 3:  # not even one prompt token would fit
            canvas = torch.cat([canvas[: limit - 3], eos])
            clipped += 1
        fitted_prompt, _ = fit_example(prompt, canvas, limit)
        cut += fitted_prompt.numel() < prompt.numel()
        prompts.append(fitted_prompt)
        canvases.append(canvas)
    if cut:
        logger.warning("%d of %d prompts cut from the left to fit %d positions", cut, len(prompts), limit)
    if clipped:
        logger.warning("%d of %d canvases clipped to %d slots", clipped, len(prompts), limit - 3)
    return EncodedRows(prompts, None if settings.canvas == "predicted" else canvases, cut, clipped)


def build_generator(decoder: Decoder, settings: DecodeSettings):
    """A :class:`~fairseq_dlm.generator.DiffusionGenerator` for ``settings`` (argmax proposals; the
    checkpoint task's settings for the rest)."""
    from .generator import DiffusionGenerator

    return DiffusionGenerator.from_task(
        decoder.task, max_iter=settings.max_iter, length_beam=settings.length_beam,
        oracle_length=settings.canvas != "predicted", strategy=settings.decoding_strategy, temperature=0.0, mbr=1,
        suppress_special_tokens=settings.suppress_special_tokens, seed=settings.seed,
    )


def batches(rows: EncodedRows, dictionary, batch_size: int):
    """Samples of ``batch_size`` rows, shortest first (ids = row numbers)."""
    from .data import PromptResponseDataset

    src = rows.prompts
    tgt = rows.canvases
    dataset = PromptResponseDataset(src, [t.numel() for t in src], dictionary, tgt,
                                    None if tgt is None else [t.numel() for t in tgt], shuffle=False)
    order = dataset.ordered_indices().tolist()
    for start in range(0, len(order), batch_size):
        yield dataset.collater([dataset[i] for i in order[start:start + batch_size]])


@dataclass
class Decoded:
    """Hypotheses by row, their canvas length and piece count, and network evaluations."""

    text: Dict[int, str] = field(default_factory=dict)
    canvas: Dict[int, Optional[int]] = field(default_factory=dict)
    pieces: Dict[int, int] = field(default_factory=dict)
    nfe: int = 0
    seconds: float = 0.0


def decode(decoder: Decoder, rows: EncodedRows, settings: DecodeSettings, progress: bool = True,
           desc: str = "decoding") -> Decoded:
    """Decode every row; a tqdm progress bar on stderr (when installed and ``progress``)."""
    from fairseq import utils

    generator = build_generator(decoder, settings)
    d = decoder.task.dictionary
    out, start = Decoded(), time.perf_counter()
    bar = _progress(len(rows.prompts), desc, progress)
    with torch.autocast(device_type="cuda" if decoder.use_cuda else "cpu", dtype=torch.bfloat16,
                        enabled=settings.bf16):
        for sample in batches(rows, d, settings.batch_size):
            if decoder.use_cuda:
                sample = utils.move_to_cuda(sample)
            hypos = generator.generate(decoder.models, sample)
            for i, h in zip(sample["id"].tolist(), hypos):
                tokens = h[0]["tokens"].cpu()
                out.text[i] = d.string(tokens, "sentencepiece")
                out.pieces[i] = int(tokens.ne(d.eos()).sum())
                out.canvas[i] = h[0].get("canvas")  # the response slots of the chosen candidate
                out.nfe += int(h[0].get("nfe", 0))
            if bar is not None:
                bar.update(len(hypos))
    if bar is not None:
        bar.close()
    out.seconds = time.perf_counter() - start
    return out


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr, dynamic_ncols=True)


# -------------------------------------------------------------------------------- scoring
def row_scores(benchmark: str, hyp: str, ref: str, group: str) -> Dict[str, Any]:
    """Per-row judgement stored with each prediction (none for translation)."""
    if benchmark in ("mmlu", "bbh-nlp"):
        return {"correct": choice_correct(hyp, ref)}
    if benchmark == "mgsm":
        return {"correct": number_correct(hyp, ref)}
    if benchmark == "tydiqa":
        return {"em": squad_em(hyp, ref, group), "f1": round(squad_f1(hyp, ref, group), 4)}
    return {}


def output_name(job: EvalJob, settings: DecodeSettings) -> str:
    """``{bench}.{name}.{shot}`` (+ ``.fixed{N}`` / ``.lb{K}`` for the other canvases)."""
    name = f"{job.benchmark}.{job.name}.{job.shot}"
    if settings.canvas == "fixed":
        name += f".fixed{settings.fixed_canvas_length}"
    elif settings.canvas == "predicted":
        name += f".lb{settings.length_beam}"
    return name


def evaluate_job(decoder: Decoder, job: EvalJob, settings: DecodeSettings, output_dir: Optional[str] = None,
                 progress: bool = True) -> Tuple[BenchmarkScore, Dict[str, Any]]:
    """Decode and score one job; write ``{output_dir}/{output_name}.json`` when given."""
    rows = encode_rows(decoder, job.data, settings)
    decoded = decode(decoder, rows, settings, progress, desc=output_name(job, settings))
    n = len(job.data)
    hyps = hypotheses_in_order(decoded.text, n)
    score = score_benchmark(job.benchmark, hyps, job.data.targets, job.data.groups, **job.options)
    report = {
        "benchmark": job.benchmark, "file": job.path, "sources": job.data.sources, "shot": job.shot,
        "checkpoint": decoder.checkpoint, "settings": asdict(settings), "n": n,
        "limit": None if job.limited_from is None else {"rows": n, "of": job.limited_from,
                                                         "per_group": job.limit},
        "prompts_cut": rows.prompts_cut, "canvases_clipped": rows.canvases_clipped,
        "nfe_per_row": round(decoded.nfe / n, 3), "seconds": round(decoded.seconds, 2),
        "notes": job.data.notes, "score": score.as_dict(),
        "predictions": [
            {"id": i, "group": job.data.groups[i], "input": job.data.examples[i].inputs[-INPUT_EXCERPT:],
             "target": job.data.examples[i].targets, "hypothesis": hyps[i], "canvas": decoded.canvas[i],
             "pieces": decoded.pieces[i], **row_scores(job.benchmark, hyps[i], job.data.examples[i].targets,
                                                       job.data.groups[i])}
            for i in range(n)
        ],
    }
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, output_name(job, settings) + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False, indent=1)
        report["output"] = path
        logger.info("wrote %s", path)
    return score, report


# -------------------------------------------------------------------------------- tables
def format_table(title: str, score: BenchmarkScore, report: Dict[str, Any]) -> str:
    """A plain-text table: the headline, the other aggregates, then one line per group."""
    m = score.metrics
    lines = [f"== {title}  (n={score.n}, S={report['settings']['max_iter']}, canvas={report['settings']['canvas']}"
             f", prompts cut={report['prompts_cut']}, NFE/row={report['nfe_per_row']}) =="]
    lines.append(f"  {score.headline:<34} {score.value:7.2f}")
    grouped_key = next((k for k in ("exact_letter", "last_number", "squad_em") if k in m), None)
    if grouped_key is not None:
        g = m[grouped_key]
        for agg in ("micro", "macro"):
            shown = score.headline.endswith(agg) or (agg == "micro" and score.headline.endswith("accuracy"))
            if not shown and (agg == "micro" or len(g["groups"]) > 1):  # one group: macro = micro
                lines.append(f"  {grouped_key + ' ' + agg:<34} {g[agg]:7.2f}")
        if "squad_f1" in m:
            lines.append(f"  {'squad_f1 micro':<34} {m['squad_f1']['micro']:7.2f}")
        if "official" in m:
            lines.append(f"  {'official exact_match micro':<34} {m['official']['exact_match_micro']:7.2f}")
        if "last_number_strict" in m:
            lines.append(f"  {'last_number strict':<34} {m['last_number_strict']['micro']:7.2f}")
        if len(g["groups"]) > 1:
            f1 = m.get("squad_f1", {}).get("groups", {})
            for name, s in g["groups"].items():
                value = "   n/a" if s["value"] is None else f"{s['value']:7.2f}"
                extra = f"  F1 {f1[name]['value']:6.2f}" if name in f1 and f1[name]["value"] is not None else ""
                lines.append(f"    {name:<32} {value}  (n={s['n']}){extra}")
    if "bleu" in m:
        lines.append(f"  {'bleu (cased)':<34} {m['bleu']:7.2f}  {m['signature']}")
        lines.append(f"  {'bleu_lc signature':<34} {m['signature_lc']}")
    return "\n".join(lines)


def evaluate_files(paths: Sequence[str], decoder: Decoder, settings: DecodeSettings, benchmark: str = "auto",
                   limit: Optional[int] = None, output_dir: Optional[str] = None,
                   progress: bool = True) -> List[Dict[str, Any]]:
    """Read every file first (so a bad file fails before any decoding), then evaluate each in turn."""
    jobs = [load_job(p, benchmark, limit) for p in paths]
    reports = []
    for job in jobs:
        score, report = evaluate_job(decoder, job, settings, output_dir, progress)
        report["table"] = format_table(output_name(job, settings), score, report)
        reports.append(report)
    return reports
