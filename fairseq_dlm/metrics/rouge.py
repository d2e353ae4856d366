"""ROUGE-1/2/L with Google's ``rouge-score`` (SPEC §7.2).

For each example, F = 2PR / (P + R) of ``rouge_scorer.RougeScorer([...], use_stemmer=True)``
(ROUGE-N: clipped n-gram overlap; ROUGE-L: sentence-level longest common subsequence); the
corpus score is the mean F over examples × 100.  An empty hypothesis or reference scores 0.

What rouge-score does to the text (and how it differs from the official py-rouge ROUGE-L,
SPEC §7.2): lower-cases, replaces every character outside ``[a-z0-9]`` by a space, splits on
whitespace, Porter-stems tokens longer than 3 characters; no truncation, no WordNet exception
list.  So it is an English-only metric: text in a non-Latin script has no tokens and scores 0,
and accented letters split words (``müller`` → ``m ller``).
"""
import functools
from typing import Dict, List, Sequence

from .registry import Metric, Stats, check_pairs, register_metric

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@functools.lru_cache(maxsize=None)
def _scorer(rouge_types=ROUGE_TYPES, use_stemmer: bool = True):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)


def rouge_f(hyps: Sequence[str], refs: Sequence[str], use_stemmer: bool = True) -> Dict[str, List[float]]:
    """Per-example ROUGE F-measures in [0, 1]: ``{"rouge1": [...], "rouge2": [...], "rougeL": [...]}``,
    each a list of ``len(hyps)`` floats (``refs[i]`` is the target of ``hyps[i]``)."""
    scorer = _scorer(ROUGE_TYPES, use_stemmer)
    out: Dict[str, List[float]] = {t: [] for t in ROUGE_TYPES}
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(ref, hyp)  # rouge-score's order is (target, prediction)
        for t in ROUGE_TYPES:
            out[t].append(float(scores[t].fmeasure))
    return out


def _rouge_metric(rouge_type: str, use_stemmer: bool) -> Metric:
    def stats_fn(hyps, refs) -> Stats:
        return {"f_sum": sum(rouge_f(hyps, refs, use_stemmer)[rouge_type]), "n": len(hyps)}

    def value_fn(stats) -> float:
        return 100.0 * stats["f_sum"] / stats["n"] if stats.get("n") else 0.0

    signature = f"rouge-score|{rouge_type}|F|stemmer:{'yes' if use_stemmer else 'no'}|mean-over-examples"
    return Metric(rouge_type, True, stats_fn, value_fn, signature)


@register_metric("rouge1", "ROUGE-1 F (rouge-score, Porter stemmer), mean over examples")
def rouge1(use_stemmer: bool = True) -> Metric:
    """Mean ROUGE-1 F × 100."""
    return _rouge_metric("rouge1", use_stemmer)


@register_metric("rouge2", "ROUGE-2 F (rouge-score, Porter stemmer), mean over examples")
def rouge2(use_stemmer: bool = True) -> Metric:
    """Mean ROUGE-2 F × 100."""
    return _rouge_metric("rouge2", use_stemmer)


@register_metric("rougeL", "ROUGE-L F (rouge-score, sentence-level LCS), mean over examples")
def rougeL(use_stemmer: bool = True) -> Metric:  # noqa: N802  (the metric's usual name)
    """Mean ROUGE-L F × 100 (sentence-level LCS, not rougeLsum)."""
    return _rouge_metric("rougeL", use_stemmer)


def rouge_report(hyps: Sequence[str], refs: Sequence[str], use_stemmer: bool = True) -> Dict[str, float]:
    """``{"rouge1", "rouge2", "rougeL"}`` mean F × 100 over examples, rounded to 2 digits, plus ``n``."""
    check_pairs(hyps, refs, "rouge")
    per = rouge_f(hyps, refs, use_stemmer)
    n = len(hyps)
    report = {t: round(100.0 * sum(v) / n, 2) if n else 0.0 for t, v in per.items()}
    return dict(report, n=n)
