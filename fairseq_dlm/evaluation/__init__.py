"""Instruction-benchmark evaluation in one process (``scripts/eval_instruct.py``) (SPEC §6.3, §7.3, §7.4, §11).

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
from .decoding import DecodeSettings, Decoder, decode, load_decoder
from .jobs import EvalJob, UnknownBenchmarkError, load_job
from .report import evaluate_files, evaluate_job, format_table

__all__ = ["DecodeSettings", "Decoder", "EvalJob", "UnknownBenchmarkError", "decode", "evaluate_files", "evaluate_job",
           "format_table", "load_decoder", "load_job"]
