"""Scoring decoded jobs, the per-job JSON report and the printed tables."""
import json
import logging
import os
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..metrics.answers import choice_correct, number_correct, squad_em, squad_f1
from ..metrics.instruct import BenchmarkScore, hypotheses_in_order, score_benchmark
from .decoding import DecodeSettings, Decoder, decode, encode_rows
from .jobs import EvalJob, load_job

logger = logging.getLogger(__name__)

INPUT_EXCERPT = 300  # characters of the prompt's end kept in the predictions file


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
