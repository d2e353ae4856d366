"""Scores of the instruction benchmarks as SPEC §7.3 defines them.

| benchmark | per example                      | headline (``BenchmarkScore.value``)        |
|-----------|----------------------------------|--------------------------------------------|
| mmlu      | ``choice_correct``               | micro over rows (macro by subject stored)  |
| bbh-nlp   | ``choice_correct``               | macro over tasks (tasks differ 36 → 10,000 rows) |
| mgsm      | ``number_correct`` (official rule) | accuracy                                 |
| tydiqa    | ``squad_em`` / ``squad_f1`` per language rules | EM micro (F1, per language, macro stored) |
| iwslt14   | corpus BLEU                      | lower-cased BLEU, the paper's (cased stored) |

Every score also stores the official scorer's own number (``official``: ``exact_match`` for
mmlu / bbh-nlp / tydiqa) so the difference the fixes make is visible.  Inputs are lists aligned
row by row with the evaluation file (``EvalSet``); ``hypotheses_in_order`` turns a
``{row id: text}`` dict from a decoding run into such a list and refuses missing rows (the
official scorer silently shrinks its denominator to the rows it finds).
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .aggregate import grouped
from .answers import choice_correct, exact_match, last_number, number_correct, squad_em, squad_f1
from .bleu import cased_bleu, lowercased_bleu
from .registry import check_pairs

logger = logging.getLogger(__name__)

# IWSLT14 direction → sacrebleu tokenizer of its target language (SPEC §7.1 / §7.3).
TRANSLATION_TOKENIZERS = {"deen": "13a", "ende": "intl"}


@dataclass(frozen=True)
class BenchmarkScore:
    """``value`` (percent) is the headline number ``headline`` names; ``metrics`` holds all."""

    benchmark: str
    headline: str
    value: float
    n: int
    metrics: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self, digits: int = 2) -> Dict[str, Any]:
        """JSON-ready dict (the evaluation jsonl / results file)."""
        return {"benchmark": self.benchmark, "headline": self.headline,
                "value": round(self.value, digits), "n": self.n, "metrics": self.metrics}


def hypotheses_in_order(hyps: Mapping[int, str], n: int, missing: str = "error") -> List[str]:
    """``[hyps[0], ..., hyps[n-1]]``; a missing row raises ``KeyError`` (``missing="error"``) or
    becomes ``""`` with a warning (``missing="empty"``), and ids ≥ n raise ``KeyError``."""
    extra = sorted(i for i in hyps if not 0 <= i < n)
    if extra:
        raise KeyError(f"hypothesis ids outside 0..{n - 1}: {extra[:5]}")
    absent = [i for i in range(n) if i not in hyps]
    if absent and missing == "error":
        raise KeyError(f"{len(absent)} of {n} rows have no hypothesis (ids {absent[:5]}...)")
    if absent:
        logger.warning("%d of %d rows have no hypothesis; scored as empty", len(absent), n)
    return [hyps.get(i, "") for i in range(n)]


def _groups_or_one(groups: Optional[Sequence[str]], n: int, name: str) -> Sequence[str]:
    if groups is None:
        return [name] * n
    if len(groups) != n:
        raise ValueError(f"{name}: {len(groups)} group labels for {n} rows")
    return groups


def score_multiple_choice(name: str, hyps: Sequence[str], refs: Sequence[str],
                          groups: Optional[Sequence[str]], headline: str) -> BenchmarkScore:
    """MMLU / BBH: ``choice_correct`` per row, micro / macro / per group, and the official
    ``exact_match`` numbers; ``headline`` is ``"micro"`` or ``"macro"``."""
    check_pairs(hyps, refs, name)
    groups = _groups_or_one(groups, len(hyps), name)
    ours = grouped([choice_correct(h, r) for h, r in zip(hyps, refs)], groups)
    official = grouped([float(exact_match(h, r)) for h, r in zip(hyps, refs)], groups)
    if ours.skipped:
        logger.info("%s: %d rows with an empty reference left out", name, ours.skipped)
    value = ours.micro if headline == "micro" else ours.macro
    return BenchmarkScore(name, f"exact_letter {headline}", value, ours.n, {
        "exact_letter": ours.as_dict(),
        "official": {"exact_match_micro": round(official.micro, 2),
                     "exact_match_macro": round(official.macro, 2), "n": official.n},
    })


def score_mmlu(hyps: Sequence[str], refs: Sequence[str],
               subjects: Optional[Sequence[str]] = None) -> BenchmarkScore:
    """MMLU: micro accuracy over all rows (macro over the 57 subjects also stored)."""
    return score_multiple_choice("mmlu", hyps, refs, subjects, "micro")


def score_bbh(hyps: Sequence[str], refs: Sequence[str],
              tasks: Optional[Sequence[str]] = None) -> BenchmarkScore:
    """BBH-NLP: macro accuracy over tasks (micro also stored)."""
    return score_multiple_choice("bbh-nlp", hyps, refs, tasks, "macro")


def score_mgsm(hyps: Sequence[str], refs: Sequence[str],
               groups: Optional[Sequence[str]] = None) -> BenchmarkScore:
    """MGSM / GSM8K: accuracy of the last number (official rule), and the strict reading."""
    check_pairs(hyps, refs, "mgsm")
    groups = _groups_or_one(groups, len(hyps), "mgsm")
    plain = grouped([number_correct(h, r) for h, r in zip(hyps, refs)], groups)
    strict = grouped([number_correct(h, r, strict=True) for h, r in zip(hyps, refs)], groups)
    return BenchmarkScore("mgsm", "last_number accuracy", plain.micro, plain.n, {
        "last_number": plain.as_dict(), "last_number_strict": strict.as_dict(),
        "hyps_without_number": sum(1 for h in hyps if last_number(h) is None),
    })


def score_tydiqa(hyps: Sequence[str], refs: Sequence[str],
                 langs: Optional[Sequence[str]] = None) -> BenchmarkScore:
    """TyDiQA GoldP: SQuAD EM and F1 with each row's language rules, micro / macro / per
    language; the headline is EM micro.  ``langs`` are the group labels (``"english"``,
    ``"thai"``, ...); without them every row gets the non-English rules (no article removal,
    whitespace tokens)."""
    check_pairs(hyps, refs, "tydiqa")
    langs = _groups_or_one(langs, len(hyps), "tydiqa")
    em = grouped([squad_em(h, r, g) for h, r, g in zip(hyps, refs, langs)], langs)
    f1 = grouped([squad_f1(h, r, g) for h, r, g in zip(hyps, refs, langs)], langs)
    official = grouped([float(exact_match(h, r)) for h, r in zip(hyps, refs)], langs)
    return BenchmarkScore("tydiqa", "squad_em micro", em.micro, em.n, {
        "squad_em": em.as_dict(), "squad_f1": f1.as_dict(),
        "official": {"exact_match_micro": round(official.micro, 2),
                     "exact_match_macro": round(official.macro, 2), "n": official.n},
    })


def score_translation(hyps: Sequence[str], refs: Sequence[str], direction: str) -> BenchmarkScore:
    """IWSLT14 instruct: corpus BLEU, tokenizer from ``direction`` (``deen`` → 13a, ``ende`` →
    intl); headline is the paper's lower-cased BLEU, the cased one is stored with its signature."""
    if direction not in TRANSLATION_TOKENIZERS:
        raise ValueError(f"unknown direction {direction!r}; known: {', '.join(TRANSLATION_TOKENIZERS)}")
    tokenize = TRANSLATION_TOKENIZERS[direction]
    lower = lowercased_bleu(tokenize).score(hyps, refs)
    cased = cased_bleu(tokenize).score(hyps, refs)
    return BenchmarkScore(f"iwslt14-{direction}", "bleu_lc", lower.value, lower.n, {
        "bleu_lc": round(lower.value, 2), "signature_lc": lower.signature,
        "bleu": round(cased.value, 2), "signature": cased.signature,
    })


BENCHMARKS: Dict[str, Callable[..., BenchmarkScore]] = {
    "mmlu": lambda hyps, refs, groups=None: score_mmlu(hyps, refs, groups),
    "bbh-nlp": lambda hyps, refs, groups=None: score_bbh(hyps, refs, groups),
    "mgsm": lambda hyps, refs, groups=None: score_mgsm(hyps, refs, groups),
    "tydiqa": lambda hyps, refs, groups=None: score_tydiqa(hyps, refs, groups),
    "iwslt14": lambda hyps, refs, groups=None, direction="deen": score_translation(hyps, refs, direction),
}


def score_benchmark(benchmark: str, hyps: Sequence[str], refs: Sequence[str],
                    groups: Optional[Sequence[str]] = None, **options) -> BenchmarkScore:
    """Score ``hyps`` of benchmark ``benchmark`` (one of ``BENCHMARKS``) against ``refs``;
    ``groups`` are the row labels (``EvalSet.groups``); ``direction`` for iwslt14."""
    if benchmark not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[benchmark](hyps, refs, groups, **options)
