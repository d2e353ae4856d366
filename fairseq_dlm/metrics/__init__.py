"""Scoring of decoded output (SPEC §7): one module used by validation, evaluation scripts and
benchmarks alike.

* ``registry`` — ``Metric`` / ``MetricResult``, ``get_metric(name, **options)``: corpus metrics by
  name (``bleu``, ``bleu_lc``, ``rouge1``, ``rouge2``, ``rougeL``, ``exact_match``,
  ``exact_letter`` (alias ``accuracy``), ``last_number``, ``last_number_strict``, ``squad_em``,
  ``squad_f1``), each with additive stats so validation can sum them over batches;
* ``bleu`` (sacrebleu, cased + lower-cased), ``rouge`` (rouge-score), ``answers`` (per-example
  rules: option letter, last number, SQuAD EM / F1);
* ``aggregate.grouped`` — micro / macro / per-group averages;
* ``evalfiles`` — the paper's ``{inputs, targets}`` jsonl(.gz) files and group maps;
* ``instruct`` — MMLU, BBH-NLP, MGSM, TyDiQA, IWSLT14 scores as SPEC §7.3 defines them.
"""
from . import answers, bleu, rouge  # noqa: F401  (register the metrics)
from .aggregate import GroupedResult, GroupScore, grouped
from .answers import (choice_correct, exact_match, extract_choice, last_number, last_number_strict,
                      normalize_answer, number_correct, squad_em, squad_f1)
from .evalfiles import EvalExample, EvalFileError, EvalSet, load_eval_set, read_eval_jsonl, read_group_map
from .instruct import BenchmarkScore, hypotheses_in_order, score_benchmark
from .registry import Metric, MetricResult, available_metrics, get_metric, sum_stats

__all__ = [
    "GroupedResult", "GroupScore", "grouped",
    "choice_correct", "exact_match", "extract_choice", "last_number", "last_number_strict",
    "normalize_answer", "number_correct", "squad_em", "squad_f1",
    "EvalExample", "EvalFileError", "EvalSet", "load_eval_set", "read_eval_jsonl", "read_group_map",
    "BenchmarkScore", "hypotheses_in_order", "score_benchmark",
    "Metric", "MetricResult", "available_metrics", "get_metric", "sum_stats",
]
