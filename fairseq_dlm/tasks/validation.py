"""Validation by a metric chosen by name (``--eval-metric bleu|rougeL|exact_match|...``).

Each validation batch is decoded (oracle length, ``--eval-args`` generation options), detokenized
with ``--eval-post-process``, and scored with :func:`fairseq_dlm.metrics.get_metric`.  The metric's
additive statistics travel in fairseq's logging outputs (so they are summed across batches and
GPUs), and the score is derived once per validation under the metric's own name, so that
``--best-checkpoint-metric <name>`` selects checkpoints by it (higher is better for every
registered text metric: pass ``--maximize-best-checkpoint-metric``).
"""
import json
import logging
from typing import List, Tuple

import torch
from fairseq import metrics, utils

from ..diffusion.options import check_flags
from ..errors import ConfigError
from ..generator import DiffusionGenerator
from ..metrics import get_metric

logger = logging.getLogger(__name__)

PREFIX = "_eval_"


class ValidationScorer:
    """Decodes validation batches and scores them with one named metric.

    Args:
        name: a registered metric (``fairseq_dlm.metrics.available_metrics()``).
        options: JSON of the metric's options, e.g. ``{"tokenize": "intl"}``.
        generation: JSON of generation args (``{"iter_decode_max_iter": 10}``); oracle length is on.
        post_process: ``Dictionary.string`` post-processing, e.g. ``sentencepiece``; or a callable
            ``pieces -> text`` (an HF tokenizer.json's decoder, :mod:`fairseq_dlm.data.subword`).
        print_samples: log the first hypothesis/reference pair of every batch.
    """

    def __init__(self, name: str, options: str, generation: str, post_process, print_samples: bool):
        self.metric = get_metric(name, **_json(options, "--eval-metric-options"))
        self.generation = dict(_json(generation, "--eval-args"), oracle_length=True)
        check_flags(self.generation, "--eval-args")
        self.post_process, self.print_samples = post_process, print_samples
        self.generator = None

    def build_generator(self, task, model):
        """Called from the task's ``build_model`` (the generator needs the task's dictionary)."""
        self.generator = DiffusionGenerator.from_args(task.target_dictionary, self.generation, task.cfg)

    def strings(self, dictionary, sample, hypos) -> Tuple[List[str], List[str]]:
        """Detokenized hypotheses and references of a decoded batch."""

        def decode(tokens, unk):
            # <unk> would be split by BLEU's tokenizer into matching pieces: spell it apart
            if callable(self.post_process):
                return self.post_process(dictionary.string(tokens.int().cpu(), None, unk_string=unk).split())
            return dictionary.string(tokens.int().cpu(), self.post_process, unk_string=unk)

        hyps = [decode(h[0]["tokens"], "UNKNOWNTOKENINHYP") for h in hypos]
        refs = [decode(utils.strip_pad(t, dictionary.pad()), "UNKNOWNTOKENINREF") for t in sample["target"]]
        return hyps, refs

    def valid_step(self, task, model, sample, logging_output: dict) -> None:
        """Decode ``sample`` and add the metric's statistics to ``logging_output``."""
        hypos = task.inference_step(self.generator, [model], sample)
        hyps, refs = self.strings(task.target_dictionary, sample, hypos)
        if self.print_samples and hyps:
            logger.info("example hypothesis: %s", hyps[0])
            logger.info("example reference: %s", refs[0])
        for key, value in self.metric.stats(hyps, refs).items():
            logging_output[PREFIX + key] = value

    def reduce_metrics(self, logging_outputs) -> None:
        """Sum the statistics over batches/workers and derive the score as ``metric.name``."""
        keys = {k for log in logging_outputs for k in log if k.startswith(PREFIX)}
        if not keys:
            return
        for key in keys:
            total = sum(log.get(key, 0) for log in logging_outputs)
            metrics.log_scalar_sum(key, total.cpu() if torch.is_tensor(total) else total)
        metric = self.metric

        def derive(meters):
            stats = {k[len(PREFIX):]: _value(meters[k]) for k in keys if k in meters}
            return round(metric.value(stats), 2) if stats.get("n", 0) else 0.0

        metrics.log_derived(metric.name, derive)


def _value(meter):
    total = meter.sum
    return float(total.item()) if torch.is_tensor(total) else total


def _json(text: str, flag: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} {text!r} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} {text!r} must be a JSON object")
    return value
