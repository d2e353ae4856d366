"""Per-example answer matching for the instruction benchmarks (SPEC §7.3), and the
corresponding corpus metrics ``exact_match``, ``exact_letter``, ``last_number``,
``last_number_strict``, ``squad_em`` and ``squad_f1``.

The official scorer (``scripts/metric_instruct.py``) compares lower-cased, stripped strings
for MMLU / BBH / TyDiQA and the last ``\\d+(,\\d+)*`` for MGSM.  The rules here, and where they
differ from it:

* **exact_match** — ``hyp.strip().lower() == ref.strip().lower()``: the official rule, kept for
  parity.  It counts an empty hypothesis as correct against an empty reference.
* **exact_letter** (multiple choice) — the reference is an option letter.  ``extract_choice``
  reads the letter a hypothesis names (see there: ``"A"``, ``"(A)"``, ``"A."``, ``"(A) yes"``,
  ``"the answer is (A)"``; an empty or unparsable hypothesis names nothing and is wrong).  A row
  whose reference is empty cannot be answered (the question's right option is not in the
  prompt: 121 of 400 BBH ``reasoning_about_colored_objects`` rows) and is left out of the
  denominator; the count is reported.  A reference that is not a single letter is compared with
  ``exact_match``.  Every row ``exact_match`` counts correct (non-empty reference) is correct
  here too.
* **last_number** (MGSM / GSM8K, SPEC §7.3) — the last ``\\d+(,\\d+)*`` of each side, commas
  removed, as an int.  Exactly as the official: ``-`` and ``.`` are not part of a number, so
  ``"-18"`` reads 18, ``"2.5"`` reads 5, ``"1,234.5"`` reads 5, and a comma-separated list
  ``"3,4"`` reads 34.  Unlike the official, a hypothesis with no number is always wrong (the
  official maps "no number" to a sentinel that equals a reference's sentinel), and a reference
  with no number is left out and counted.
* **last_number_strict** — the same, but a ``-`` not preceded by a letter or digit is a sign and
  ``.digits`` a decimal part: ``"-18"`` reads −18 and ``"18.5"`` reads 18.5 (``"18."`` reads 18).
  Comma grouping is still read the English way, so a German ``"2.125"`` (= 2125) reads 2.125.
* **squad_em / squad_f1** (TyDiQA) — the SQuAD v1.1 rules with MLQA's multilingual
  punctuation: see ``normalize_answer`` and ``answer_tokens``.
"""
import functools
import re
import string
import unicodedata
from collections import Counter
from fractions import Fraction
from typing import List, Optional, Sequence, Union

from .registry import Metric, Stats, register_metric

# ---------------------------------------------------------------------------------------------
# multiple choice


def exact_match(hyp: str, ref: str) -> bool:
    """The official rule: ``hyp.strip().lower() == ref.strip().lower()``."""
    return hyp.strip().lower() == ref.strip().lower()


_LETTER_ONLY = re.compile(r"[(\[]?\s*([a-z])\s*[)\]]?\s*[.:,;!]?")
_LEADING_OPTION = re.compile(r"[(\[]([a-z])[)\]](?:\s|$)")
_ANSWER_IS = re.compile(r"\banswer\b\s*(?:is\b)?\s*:?\s*(?:[(\[]([a-z])[)\]]|([a-z])(?=\s*[.,;:!]?\s*$))")


def extract_choice(hyp: str) -> Optional[str]:
    """The option letter (lower-case) that a hypothesis names, or ``None``.

    On ``s = hyp.strip().lower()``, the first rule that applies:

    1. ``s`` is one letter, optionally in ``()``/``[]`` and followed by one of ``.:,;!``:
       ``"a"``, ``"(a)"``, ``"a."``, ``"[a]"``, ``"a)"`` → ``"a"``;
    2. ``s`` starts with a bracketed letter then a space: ``"(a) yes"`` → ``"a"``;
    3. the last ``answer [is] [:] X`` where ``X`` is a bracketed letter, or a bare letter that
       ends the text (up to one punctuation mark): ``"the answer is (b) yes"`` → ``"b"``,
       ``"answer: c."`` → ``"c"``; ``"the answer is a dog"`` → None (``a`` may be the article).

    Anything else, including ``""`` and a bare ``"a cat"``, names no option (``None``).
    """
    s = hyp.strip().lower()
    m = _LETTER_ONLY.fullmatch(s) or _LEADING_OPTION.match(s)
    if m:
        return m.group(1)
    found = [bracketed or bare for bracketed, bare in _ANSWER_IS.findall(s)]
    return found[-1] if found else None


def choice_correct(hyp: str, ref: str) -> Optional[bool]:
    """Whether ``hyp`` picks the reference option; ``None`` when ``ref`` is empty (unanswerable).

    A one-letter reference is compared with ``extract_choice(hyp)``; any other reference with
    ``exact_match``.
    """
    gold = ref.strip().lower()
    if not gold:
        return None
    if len(gold) == 1 and "a" <= gold <= "z":
        return extract_choice(hyp) == gold
    return exact_match(hyp, ref)


# ---------------------------------------------------------------------------------------------
# numbers

_NUMBER = re.compile(r"\d+(?:,\d+)*")
_NUMBER_STRICT = re.compile(r"(?<![\w])(-)?(\d+(?:,\d+)*)(\.\d+)?")


def last_number(text: str) -> Optional[int]:
    """Last ``\\d+(,\\d+)*`` of ``text`` with commas removed, as int; ``None`` if there is none.

    ``"so 1,250 - 3 = -18."`` → 18 (no sign); ``"2.5"`` → 5 (no decimals); ``"3,4"`` → 34.
    """
    found = _NUMBER.findall(text)
    return int(found[-1].replace(",", "")) if found else None


def last_number_strict(text: str) -> Optional[Fraction]:
    """Last number of ``text`` with its sign and decimal part, as an exact ``Fraction``.

    ``-`` counts as a sign unless a letter or digit precedes it (``"5-3"`` is 5 minus 3):
    ``"= -18."`` → −18; ``"18.50"`` → 37/2; ``"1,234"`` → 1234; no number → ``None``.
    """
    found = _NUMBER_STRICT.findall(text)
    if not found:
        return None
    sign, digits, decimals = found[-1]
    value = Fraction(digits.replace(",", "") + decimals)
    return -value if sign else value


def number_correct(hyp: str, ref: str, strict: bool = False) -> Optional[bool]:
    """Whether the last number of ``hyp`` equals that of ``ref``; ``None`` if ``ref`` has none.

    A hypothesis without a number is wrong.  ``strict`` reads signs and decimals
    (``last_number_strict``) instead of the official digits-and-commas rule (``last_number``).
    """
    read = last_number_strict if strict else last_number
    gold = read(ref)
    if gold is None:
        return None
    pred = read(hyp)
    return pred is not None and pred == gold


# ---------------------------------------------------------------------------------------------
# SQuAD EM / F1



@functools.lru_cache(maxsize=4096)
def is_punctuation(ch: str) -> bool:
    """Whether ``ch`` is in ``string.punctuation`` or in a Unicode ``P*`` category (MLQA's set)."""
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")

ENGLISH = frozenset({None, "en", "eng", "english"})
CHAR_LEVEL_LANGS = frozenset({"ja", "japanese", "th", "thai", "zh", "chinese"})
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str, lang: Optional[str] = None) -> str:
    """SQuAD normalisation: lower-case; drop punctuation (ASCII ``string.punctuation`` and every
    Unicode ``P*`` character, as MLQA does); drop the English articles ``a|an|the`` only when
    ``lang`` is English or ``None`` (in Swahili or Indonesian "a" is no article); collapse
    whitespace."""
    text = "".join(ch for ch in text.lower() if not is_punctuation(ch))
    if (lang.lower() if lang else lang) in ENGLISH:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str, lang: Optional[str] = None) -> List[str]:
    """Tokens of ``normalize_answer(text, lang)`` for F1: whitespace-separated words, but single
    characters for Japanese, Thai and Chinese (``CHAR_LEVEL_LANGS``), which do not separate words
    with spaces; on whitespace tokens F1 would there be almost the same as EM."""
    norm = normalize_answer(text, lang)
    if lang and lang.lower() in CHAR_LEVEL_LANGS:
        return [ch for ch in norm if not ch.isspace()]
    return norm.split()


Refs = Union[str, Sequence[str]]


def _golds(ref: Refs) -> Sequence[str]:
    return [ref] if isinstance(ref, str) else list(ref)


def squad_em(hyp: str, ref: Refs, lang: Optional[str] = None) -> float:
    """1.0 if ``normalize_answer(hyp) == normalize_answer(gold)`` for some gold answer, else 0.0."""
    pred = normalize_answer(hyp, lang)
    return float(any(pred == normalize_answer(g, lang) for g in _golds(ref)))


def _f1(pred: List[str], gold: List[str]) -> float:
    if not pred or not gold:  # SQuAD v2 convention: two empty answers agree
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(hyp: str, ref: Refs, lang: Optional[str] = None) -> float:
    """Token F1 = 2PR / (P + R) with P = |common| / |pred|, R = |common| / |gold| (multiset
    overlap of ``answer_tokens``), maximised over gold answers; 1.0 if both sides are empty,
    0.0 if only one is."""
    pred = answer_tokens(hyp, lang)
    return max(_f1(pred, answer_tokens(g, lang)) for g in _golds(ref))


# ---------------------------------------------------------------------------------------------
# corpus metrics


def _mean_metric(name: str, per_example, signature: str) -> Metric:
    """Metric whose value is 100 × mean of ``per_example(hyp, ref)`` over rows where it is not
    ``None``; stats ``{"sum", "n", "n_skipped"}``."""

    def stats_fn(hyps, refs) -> Stats:
        values = [per_example(h, r) for h, r in zip(hyps, refs)]
        kept = [float(v) for v in values if v is not None]
        return {"sum": sum(kept), "n": len(kept), "n_skipped": len(values) - len(kept)}

    def value_fn(stats) -> float:
        return 100.0 * stats["sum"] / stats["n"] if stats.get("n") else 0.0

    def details_fn(stats):
        return {"n_skipped": int(stats.get("n_skipped", 0))}

    return Metric(name, True, stats_fn, value_fn, signature, details_fn)


@register_metric("exact_match", "official rule: stripped, lower-cased strings are equal")
def exact_match_metric() -> Metric:
    """Accuracy of ``exact_match`` (official parity) over all rows."""
    return _mean_metric("exact_match", exact_match, "exact_match|strip|lower")


@register_metric("exact_letter", "multiple choice: option letter named by the hypothesis")
def exact_letter_metric() -> Metric:
    """Accuracy of ``choice_correct``; rows with an empty reference are skipped (``n_skipped``)."""
    return _mean_metric("exact_letter", choice_correct, "exact_letter|extract_choice|skip-empty-ref")


@register_metric("accuracy", "alias of exact_letter")
def accuracy_metric() -> Metric:
    """Alias of ``exact_letter``."""
    return exact_letter_metric()


@register_metric("last_number", "MGSM/GSM8K: last \\d+(,\\d+)* of hypothesis and reference agree")
def last_number_metric(strict: bool = False) -> Metric:
    """Accuracy of ``number_correct`` (official digits-and-commas rule unless ``strict``)."""
    name = "last_number_strict" if strict else "last_number"
    rule = "signed-decimal" if strict else r"\d+(,\d+)*"
    return _mean_metric(name, lambda h, r: number_correct(h, r, strict), f"last_number|{rule}|no-number=wrong")


@register_metric("last_number_strict", "last number with sign and decimals")
def last_number_strict_metric() -> Metric:
    """``last_number`` reading signs and decimal parts."""
    return last_number_metric(strict=True)


@register_metric("squad_em", "SQuAD exact match after normalisation (lang=...)")
def squad_em_metric(lang: Optional[str] = None) -> Metric:
    """Mean ``squad_em`` × 100; ``lang`` selects article removal (English only)."""
    return _mean_metric("squad_em", lambda h, r: squad_em(h, r, lang), f"squad_em|lang:{lang or 'en'}")


@register_metric("squad_f1", "SQuAD token F1 after normalisation (lang=...)")
def squad_f1_metric(lang: Optional[str] = None) -> Metric:
    """Mean ``squad_f1`` × 100; ``lang`` selects article removal and character-level tokens."""
    tokens = "char" if lang and lang.lower() in CHAR_LEVEL_LANGS else "whitespace"
    return _mean_metric("squad_f1", lambda h, r: squad_f1(h, r, lang), f"squad_f1|lang:{lang or 'en'}|tok:{tokens}")
