"""``--task diffusion_lm``: prompted language pairs for diffusion LMs (SPEC §2).

Reads ``fairseq-preprocess --joined-dictionary`` output (``dict.{S,T}.txt``,
``{split}.{S}-{T}.{S|T}.{bin,idx}``): the source side holds the prompts (template included), the
target side the responses.  Everything else (``<mask>``, size filter, autocast, generator,
validation metric, interactive lines, the checkpoint to restore) is :class:`DiffusionTask`'s.
The ``--eval-bleu*`` flags of fairseq's translation task are kept as spellings of
``--eval-metric bleu`` and its options.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq import utils
from fairseq.data import data_utils, indexed_dataset
from fairseq.tasks import register_task

from ..data import PromptResponseDataset
from ..errors import ConfigError, MissingFileError
from ..data.dictionary import MASK, load_dictionary
from .base import DiffusionTask, DiffusionTaskConfig

logger = logging.getLogger(__name__)


@dataclass
class DiffusionLMConfig(DiffusionTaskConfig):
    source_lang: Optional[str] = field(
        default=None, metadata={"help": "source (prompt) language", "argparse_alias": "-s"}
    )
    target_lang: Optional[str] = field(
        default=None, metadata={"help": "target (response) language", "argparse_alias": "-t"}
    )
    eval_bleu: bool = field(default=False, metadata={"help": "same as --eval-metric bleu"})
    eval_bleu_args: Optional[str] = field(default=None, metadata={"help": "same as --eval-args"})
    eval_bleu_remove_bpe: Optional[str] = field(
        default=None,
        metadata={"help": "same as --eval-post-process", "argparse_const": "@@ "},
    )
    eval_bleu_print_samples: bool = field(default=False, metadata={"help": "same as --eval-print-samples"})


def _apply_bleu_aliases(cfg: DiffusionLMConfig) -> None:
    """Map the translation task's ``--eval-bleu*`` spellings onto the generic validation options."""
    if cfg.eval_bleu:
        if cfg.eval_metric not in (None, "bleu"):
            raise ConfigError(f"--eval-bleu contradicts --eval-metric {cfg.eval_metric}; pass one of them")
        cfg.eval_metric = "bleu"
    if cfg.eval_bleu_args is not None:
        cfg.eval_args = cfg.eval_bleu_args
    if cfg.eval_bleu_remove_bpe is not None:
        cfg.eval_post_process = cfg.eval_bleu_remove_bpe
    cfg.eval_print_samples = cfg.eval_print_samples or cfg.eval_bleu_print_samples


@register_task("diffusion_lm", dataclass=DiffusionLMConfig)
class DiffusionLMTask(DiffusionTask):
    """Prompt → response generation with a diffusion LM, data as a fairseq language pair."""

    cfg: DiffusionLMConfig

    @classmethod
    def setup_task(cls, cfg: DiffusionLMConfig, **kwargs):
        paths = utils.split_paths(cfg.data or "")
        if not paths or not os.path.isdir(paths[0]):
            raise MissingFileError(f"data directory {cfg.data!r} does not exist; pass the fairseq-preprocess --destdir")
        if cfg.source_lang is None or cfg.target_lang is None:
            cfg.source_lang, cfg.target_lang = data_utils.infer_language_pair(paths[0])
        if cfg.source_lang is None or cfg.target_lang is None:
            raise ConfigError(f"could not infer the language pair in {paths[0]}; pass --source-lang and --target-lang")
        src_path = os.path.join(paths[0], f"dict.{cfg.source_lang}.txt")
        tgt_path = os.path.join(paths[0], f"dict.{cfg.target_lang}.txt")
        dictionary = load_dictionary(src_path)
        if os.path.isfile(tgt_path) and load_dictionary(tgt_path).symbols != dictionary.symbols:
            raise ConfigError(
                f"{src_path} and {tgt_path} differ: the diffusion LM needs one joined dictionary; "
                "re-run fairseq-preprocess with --joined-dictionary (or --srcdict/--tgtdict of the same file)"
            )
        _apply_bleu_aliases(cfg)
        logger.info("dictionary: %d types (%s, <mask> = %d)", len(dictionary), src_path, dictionary.index(MASK))
        return cls(cfg, dictionary)

    def _split_prefix(self, data_path: str, split: str) -> str:
        src, tgt = self.cfg.source_lang, self.cfg.target_lang
        for a, b in ((src, tgt), (tgt, src)):
            prefix = os.path.join(data_path, f"{split}.{a}-{b}.")
            if indexed_dataset.dataset_exists(prefix + src, impl=self.cfg.dataset_impl):
                return prefix
        raise MissingFileError(
            f"split {split!r} not found in {data_path} (looked for {split}.{src}-{tgt}.{src}.bin/.idx); "
            "binarize it with fairseq-preprocess --trainpref/--validpref/--testpref"
        )

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        paths = utils.split_paths(self.cfg.data)
        if split != self.cfg.train_subset:
            paths = paths[:1]
        data_path = paths[(epoch - 1) % len(paths)]
        prefix = self._split_prefix(data_path, split)
        sides = {}
        for lang in (self.cfg.source_lang, self.cfg.target_lang):
            bin_path = prefix + lang + ".bin"
            empty = os.path.isfile(bin_path) and os.path.getsize(bin_path) == 0  # mmap cannot open it
            ds = None if empty else data_utils.load_indexed_dataset(prefix + lang, self.dictionary, self.cfg.dataset_impl)
            if empty or (ds is not None and len(ds) == 0):
                raise ConfigError(
                    f"split {split!r} is empty ({bin_path} has no examples); check the text file "
                    "given to fairseq-preprocess"
                )
            if ds is None:
                raise MissingFileError(f"missing {prefix + lang}.bin/.idx for split {split!r}")
            sides[lang] = ds
        src, tgt = sides[self.cfg.source_lang], sides[self.cfg.target_lang]
        logger.info("%s: %d examples from %s*", split, len(src), prefix)
        self.datasets[split] = PromptResponseDataset(
            src, src.sizes, self.dictionary, tgt, tgt.sizes,
            shuffle=(split == self.cfg.train_subset), seed=self.cfg.seed,
        )
