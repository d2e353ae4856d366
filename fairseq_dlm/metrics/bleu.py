"""BLEU as the project reports it (SPEC §7.1), and of a ``fairseq-generate`` output file.

Two labelled scores: standard cased sacrebleu BLEU with its signature (``bleu``), and the
paper's lower-cased "parity" BLEU with an honest ``case:lc`` signature (``bleu_lc``; the official
code lower-cases both sides and still prints ``case:mixed``, SPEC §11.9).  Corpus BLEU with
sacrebleu's defaults: 4-gram, ``smooth exp``, one reference, tokenizer ``13a`` (IWSLT14 de→en)
or ``intl`` (WMT14 en→de); no compound splitting.

BLEU = BP · exp(¼ Σₙ log pₙ), pₙ = correctₙ / totalₙ (clipped n-gram matches over the corpus,
``exp`` smoothing for zero counts), BP = min(1, exp(1 − ref_len / sys_len)).  The statistics
(correctₙ, totalₙ, sys_len, ref_len) add up over sentences, so summing them over validation
batches and computing BLEU once equals corpus BLEU over all sentences (the official per-batch
merge does the same).

Hypotheses of a generate file are the detokenized ``D-`` lines and references the ``T-`` lines
(decoded with ``--post-process``).
"""
import re
from pathlib import Path
from typing import Dict, Mapping, Sequence

from .registry import Metric, Stats, register_metric

NGRAMS = 4


def _sacrebleu(tokenize: str, lowercase: bool):
    from sacrebleu.metrics.bleu import _TOKENIZERS, BLEU

    if tokenize not in _TOKENIZERS:
        raise ValueError(f"unknown sacrebleu tokenizer {tokenize!r}; choose from {', '.join(_TOKENIZERS)}")
    return BLEU(tokenize=tokenize, lowercase=lowercase)


def bleu_stats(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a",
               lowercase: bool = False) -> Stats:
    """Additive BLEU statistics: ``correct_1..4``, ``total_1..4``, ``sys_len``, ``ref_len``, ``n``."""
    n = len(hyps)
    if n == 0:
        stats = {f"{k}_{i}": 0 for k in ("correct", "total") for i in range(1, NGRAMS + 1)}
        return dict(stats, sys_len=0, ref_len=0, n=0)
    score = _sacrebleu(tokenize, lowercase).corpus_score(list(hyps), [list(refs)])
    stats = {f"correct_{i + 1}": int(c) for i, c in enumerate(score.counts)}
    stats.update({f"total_{i + 1}": int(t) for i, t in enumerate(score.totals)})
    return dict(stats, sys_len=int(score.sys_len), ref_len=int(score.ref_len), n=n)


def bleu_from_stats(stats: Mapping[str, float]) -> float:
    """Corpus BLEU (percent, ``smooth exp``) from (summed) ``bleu_stats``; 0 for an empty corpus."""
    from sacrebleu.metrics.bleu import BLEU

    if not stats.get("sys_len"):
        return 0.0
    correct = [int(stats[f"correct_{i}"]) for i in range(1, NGRAMS + 1)]
    total = [int(stats[f"total_{i}"]) for i in range(1, NGRAMS + 1)]
    return BLEU.compute_bleu(correct, total, int(stats["sys_len"]), int(stats["ref_len"]),
                             smooth_method="exp").score


def bleu_signature(tokenize: str = "13a", lowercase: bool = False) -> str:
    """sacrebleu's signature, e.g. ``nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0``."""
    bleu = _sacrebleu(tokenize, lowercase)
    bleu.corpus_score(["x"], [["x"]])  # sacrebleu knows the number of references only after a score
    return str(bleu.get_signature())


def _bleu_metric(name: str, tokenize: str, lowercase: bool) -> Metric:
    def stats_fn(hyps, refs):
        return bleu_stats(hyps, refs, tokenize, lowercase)

    def details_fn(stats):
        return {"sys_len": int(stats["sys_len"]), "ref_len": int(stats["ref_len"])}

    return Metric(name, True, stats_fn, bleu_from_stats, bleu_signature(tokenize, lowercase), details_fn)


@register_metric("bleu", "cased sacrebleu corpus BLEU (tokenize=13a|intl)")
def cased_bleu(tokenize: str = "13a") -> Metric:
    """Standard cased corpus BLEU with its sacrebleu signature (``case:mixed``)."""
    return _bleu_metric("bleu", tokenize, lowercase=False)


@register_metric("bleu_lc", "lower-cased corpus BLEU, the paper's number (tokenize=13a|intl)")
def lowercased_bleu(tokenize: str = "13a") -> Metric:
    """The paper's lower-cased "parity" BLEU with an honest ``case:lc`` signature."""
    return _bleu_metric("bleu_lc", tokenize, lowercase=True)


def read_generate_output(path) -> Dict[str, Dict[int, str]]:
    """``{"hyp": {id: D-line text}, "ref": {id: T-line text}}`` from a generate-*.txt file."""
    text = Path(path).read_text(encoding="utf-8")
    hyps = {int(i): h for i, h in re.findall(r"^D-(\d+)\t\S+\t(.*)$", text, re.M)}
    refs = {int(i): r for i, r in re.findall(r"^T-(\d+)\t(.*)$", text, re.M)}
    return {"hyp": hyps, "ref": refs}


def bleu_report(path, tokenize: str = "13a", examples: int = 5) -> dict:
    """Cased and lower-cased corpus BLEU of a generate output file, with signatures and examples.

    Returns ``{"bleu", "signature", "bleu_lc", "signature_lc", "sentences", "examples"}``;
    ``examples`` is a list of ``(reference, hypothesis)`` for the first ``examples`` ids.
    """
    out = read_generate_output(path)
    ids = sorted(out["hyp"])
    missing = [i for i in ids if i not in out["ref"]]
    if missing:
        raise ValueError(f"{path}: hypotheses without references (ids {missing[:5]}); "
                         "was the data decoded with targets?")
    hyps, refs = [out["hyp"][i] for i in ids], [out["ref"][i] for i in ids]
    cased = cased_bleu(tokenize).score(hyps, refs)
    lower = lowercased_bleu(tokenize).score(hyps, refs)
    return {
        "bleu": round(cased.value, 2),
        "signature": cased.signature,
        "bleu_lc": round(lower.value, 2),
        "signature_lc": lower.signature,
        "sentences": len(ids),
        "examples": [(out["ref"][i], out["hyp"][i]) for i in ids[:examples]],
    }
