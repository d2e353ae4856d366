"""``--task diffusion_lm``: prompted language-pair data for diffusion LMs (SPEC §2).

Reads ``fairseq-preprocess --joined-dictionary`` output (``dict.{S,T}.txt``,
``{split}.{S}-{T}.{S|T}.{bin,idx}``), adds ``<mask>`` to the dictionary when it is missing,
serves :class:`~fairseq_dlm.data.PromptResponseDataset` batches, drops (and logs) examples
longer than the model's positions, and builds the :class:`~fairseq_dlm.generator.DiffusionGenerator`.
The backbone's HF config and a fingerprint of the dictionary travel in the checkpoint's task
state, so decoding needs neither the ``--pretrained`` directory nor guesswork about vocabularies.
"""
import atexit
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from argparse import Namespace

import numpy as np
import torch
from fairseq import utils
from fairseq.data import Dictionary, data_utils, indexed_dataset
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from ..checkpoints import checkpoint_to_restore, read_checkpoint
from ..data import PromptResponseDataset
from ..generator import DiffusionGenerationConfig, DiffusionGenerator
from ..models.vocab import dictionary_fingerprint

logger = logging.getLogger(__name__)

MASK = "<mask>"


@dataclass
class DiffusionLMConfig(DiffusionGenerationConfig, TranslationConfig):
    seed: int = II("common.seed")
    # fairseq-train loads its checkpoint only after building the model; the task reads it first
    # (fairseq_dlm.checkpoints) so that the checkpoint's backbone shapes the model, hence these
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    continue_once: Optional[str] = II("checkpoint.continue_once")
    checkpoint_suffix: str = II("checkpoint.checkpoint_suffix")
    # fairseq folds --max-tokens into the size limit of training batches; named in the skip message
    max_tokens: Optional[int] = II("dataset.max_tokens")
    prompt_template: Optional[str] = field(
        default=None,
        metadata={
            "help": "fairseq-interactive: wrap each raw input line as this template's {src} before BPE, e.g. "
            "'Translate the German sentence to English. German: {src} English:' (training data already "
            "contains its prompts)"
        },
    )
    rebuild_batches: bool = field(
        default=True,
        metadata={
            "help": "recompose training batches every epoch from a fresh permutation (seed + epoch); "
            "on by default, passing the flag turns it off (batches are then built once and only "
            "their order is shuffled)"
        },
    )
    autocast_bf16: bool = field(
        default=False,
        metadata={
            "help": "run forward passes under torch.autocast(bfloat16), weights and optimizer in fp32 "
            "(as HF Trainer --bf16); works in fairseq-train/-generate on GPU and CPU. fairseq's own "
            "--bf16 implies --tpu in this fairseq fork and fails on GPUs"
        },
    )
    eval_bleu_args: str = field(
        default='{"iter_decode_max_iter": 10}',
        metadata={"help": "generation args for --eval-bleu as JSON (validation decodes with oracle length)"},
    )


def _load_dictionary(path: str) -> Dictionary:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no dictionary at {path}: binarize the data with `fairseq-preprocess --joined-dictionary "
            f"--destdir {os.path.dirname(path) or '.'} ...` (it writes dict.<lang>.txt)"
        )
    return Dictionary.load(path)


@register_task("diffusion_lm", dataclass=DiffusionLMConfig)
class DiffusionLMTask(TranslationTask):
    """Prompt → response generation with a diffusion LM (one joined dictionary)."""

    cfg: DiffusionLMConfig

    def __init__(self, cfg: DiffusionLMConfig, dictionary: Dictionary):
        super().__init__(cfg, dictionary, dictionary)
        self.dictionary = dictionary
        self.mask_idx = dictionary.index(MASK)
        self._restoring = False
        self._resume_backbone = None  # backbone state of the checkpoint fairseq-train will load
        self._model_positions = None  # the positions of the last model built (for size messages)
        self._interactive = _InteractiveLines()

    @classmethod
    def setup_task(cls, cfg: DiffusionLMConfig, **kwargs):
        paths = utils.split_paths(cfg.data or "")
        if not paths or not os.path.isdir(paths[0]):
            raise FileNotFoundError(f"data directory {cfg.data!r} does not exist; pass the fairseq-preprocess --destdir")
        if cfg.source_lang is None or cfg.target_lang is None:
            cfg.source_lang, cfg.target_lang = data_utils.infer_language_pair(paths[0])
        if cfg.source_lang is None or cfg.target_lang is None:
            raise ValueError(f"could not infer the language pair in {paths[0]}; pass --source-lang and --target-lang")
        src_path = os.path.join(paths[0], f"dict.{cfg.source_lang}.txt")
        tgt_path = os.path.join(paths[0], f"dict.{cfg.target_lang}.txt")
        dictionary = _load_dictionary(src_path)
        if os.path.isfile(tgt_path) and _load_dictionary(tgt_path).symbols != dictionary.symbols:
            raise ValueError(
                f"{src_path} and {tgt_path} differ: the diffusion LM needs one joined dictionary; "
                "re-run fairseq-preprocess with --joined-dictionary (or --srcdict/--tgtdict of the same file)"
            )
        if cfg.prompt_template is not None and "{src}" not in cfg.prompt_template:
            raise ValueError(f"--prompt-template {cfg.prompt_template!r} has no {{src}} placeholder")
        if MASK not in dictionary.indices:
            dictionary.add_symbol(MASK)
        logger.info("dictionary: %d types (%s, <mask> = %d)", len(dictionary), src_path, dictionary.index(MASK))
        return cls(cfg, dictionary)

    # ------------------------------------------------------------------ data
    def _split_prefix(self, data_path: str, split: str) -> str:
        src, tgt = self.cfg.source_lang, self.cfg.target_lang
        for a, b in ((src, tgt), (tgt, src)):
            prefix = os.path.join(data_path, f"{split}.{a}-{b}.")
            if indexed_dataset.dataset_exists(prefix + src, impl=self.cfg.dataset_impl):
                return prefix
        raise FileNotFoundError(
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
                raise ValueError(
                    f"split {split!r} is empty ({bin_path} has no examples); check the text file "
                    "given to fairseq-preprocess"
                )
            if ds is None:
                raise FileNotFoundError(f"missing {prefix + lang}.bin/.idx for split {split!r}")
            sides[lang] = ds
        src, tgt = sides[self.cfg.source_lang], sides[self.cfg.target_lang]
        logger.info("%s: %d examples from %s*", split, len(src), prefix)
        self.datasets[split] = PromptResponseDataset(
            src, src.sizes, self.dictionary, tgt, tgt.sizes,
            shuffle=(split == self.cfg.train_subset), seed=self.cfg.seed,
        )

    def get_interactive_tokens_and_lengths(self, lines, encode_fn):
        """fairseq-interactive: apply ``--prompt-template``; an empty line gets an ``E-`` line."""
        buffer = self._interactive.start(len(lines))
        tokens = []
        for i, line in enumerate(lines):
            text = " ".join(line.split())
            if not text:
                buffer.skip(i, "empty line")
                continue
            if self.cfg.prompt_template:
                text = self.cfg.prompt_template.replace("{src}", text)
            tokens.append(self.source_dictionary.encode_line(encode_fn(text), add_if_not_exist=False).long())
            buffer.keep(i, tokens[-1])
        return tokens, [t.numel() for t in tokens]

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        buffer = self._interactive.current
        ids = buffer.local_ids if buffer is not None and len(buffer.local_ids) == len(src_tokens) else None
        return PromptResponseDataset(src_tokens, src_lengths, self.dictionary, shuffle=False, ids=ids)

    def max_positions(self):
        return None  # the model's positions decide (resolve_max_positions takes the minimum)

    def filter_indices_by_size(self, indices, dataset, max_positions=None, ignore_invalid_inputs=False):
        """Drop examples whose shortest canvas exceeds ``max_positions``, saying which limit was hit.

        Training skips them (logged); ``valid``/``test`` fail unless
        ``--skip-invalid-size-inputs-valid-test`` (then the count is also printed at exit, next to
        fairseq-generate's score line); fairseq-interactive prints an ``E-<line>`` line for each."""
        if max_positions is None:
            return indices
        limit = max_positions if isinstance(max_positions, int) else min(
            m for m in np.atleast_1d(max_positions) if m is not None
        )
        sizes = dataset.sizes[indices]
        too_long = sizes > limit
        if not too_long.any():
            return indices
        name = next((k for k, v in self.datasets.items() if v is dataset), None)
        limit_text = self._size_limit_text(limit)
        if name is None:  # fairseq-interactive's buffer
            for index, size in zip(indices[too_long].tolist(), sizes[too_long].tolist()):
                self._interactive.current.skip(
                    dataset.ids[index] if dataset.ids is not None else index,
                    f"the prompt ({size - 3} tokens) leaves no room for a response within {limit} positions: "
                    f"<s>, prompt, one response slot and </s> need {size}; shorten it",
                )
            return indices[~too_long]
        n, first = int(too_long.sum()), indices[too_long][:10].tolist()
        what = f"{n} of {len(indices)} examples of split {name!r} are longer than {limit_text}"
        if not ignore_invalid_inputs:
            raise ValueError(
                f"{what} (first ids: {first}); pass --skip-invalid-size-inputs-valid-test to skip them "
                "(they are then counted and reported), or shorten the prompts"
            )
        logger.warning("%s and are skipped; first ids: %s", what, first)
        if too_long.all():
            raise ValueError(f"every example of split {name!r} is longer than {limit_text}; nothing to do")
        if name != self.cfg.train_subset:
            _report_at_exit(f"Skipped {n} of {len(indices)} examples of {name} longer than {limit_text}: not "
                            f"decoded, not scored (scores are on the other {len(indices) - n})")
        return indices[~too_long]

    def _size_limit_text(self, limit: int) -> str:
        """Which limit ``limit`` is, and the flag that moves it."""
        tokens, positions = self.cfg.max_tokens, self._model_positions
        if tokens is not None and limit == tokens and (positions is None or tokens < positions):
            return f"--max-tokens {tokens} (one example must fit a batch: raise --max-tokens)"
        return (f"the model's {limit} positions (prompt + response + <s> + </s>; shorten the prompts, or raise "
                "--max-positions of a randomly initialised model)")

    # ----------------------------------------------------------- model state
    def build_model(self, cfg, from_checkpoint=False):
        self._restoring = from_checkpoint
        self._resume_backbone = None if from_checkpoint else self._backbone_to_restore()
        try:
            model = super().build_model(cfg, from_checkpoint)
        finally:
            self._restoring, self._resume_backbone = False, None
        self._model_positions = model.max_positions()
        return model

    def _backbone_to_restore(self):
        """The backbone state of the checkpoint fairseq-train will load after building the model."""
        path = checkpoint_to_restore(
            self.cfg.save_dir, self.cfg.restore_file, self.cfg.finetune_from_model,
            self.cfg.checkpoint_suffix, self.cfg.continue_once,
        )
        if path is None:
            return None
        try:
            state = read_checkpoint(path)
        except Exception as e:  # fairseq's own loading reports the unreadable file
            logger.warning("could not read %s ahead of loading it (%s)", path, e)
            return None
        backbone = (state.get("task_state") or {}).get("backbone")
        if backbone is None:
            logger.warning("%s holds no backbone config (written by another task?); building the model from "
                           "the command line", path)
            return None
        return dict(backbone, source=path)

    def record_backbone_state(self, state: dict) -> None:
        """Keep the backbone's HF config and dictionary fingerprint in the checkpoint's task state."""
        self.state.merge_state_dict({"backbone": state})

    def saved_backbone_state(self):
        """The backbone state of the checkpoint being loaded (decoding, or the checkpoint fairseq-train
        resumes / fine-tunes from, with its path under ``"source"``), or None when building afresh."""
        if self._restoring:
            return self.state.state_dict.get("backbone")
        return self._resume_backbone

    def check_dictionary(self, saved: dict, symbols) -> None:
        """Fail clearly when the data's dictionary is not the one the checkpoint was trained with."""
        if saved.get("dictionary") == dictionary_fingerprint(symbols):
            return
        path = os.path.join(utils.split_paths(self.cfg.data)[0], f"dict.{self.cfg.source_lang}.txt")
        raise ValueError(
            f"dictionary mismatch: the checkpoint was trained with a dictionary of {saved.get('dictionary_size')} "
            f"symbols, but {path} (+<mask>) has {len(symbols)} symbols"
            + (" with different entries" if saved.get("dictionary_size") == len(symbols) else "")
            + ". Decode with the data folder (dict.*.txt) that the model was trained on, or binarize your "
            "data with fairseq-preprocess --srcdict <that dict.txt> --joined-dictionary"
        )

    # ------------------------------------------------------------ precision
    def _autocast(self, model):
        device = next(model.parameters()).device
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast_bf16)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        with self._autocast(model):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        with self._autocast(model):
            return super().valid_step(sample, model, criterion)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if "id" not in sample and self._interactive.current is not None:
            # fairseq-interactive hands the generator no ids: give it the input line numbers, so that
            # sampled outputs do not depend on a line's row in the batch
            sample = dict(sample, id=self._interactive.current.line_ids(sample["net_input"]["src_tokens"], self.dictionary.pad()))
        with self._autocast(models[0]):
            hypos = super().inference_step(generator, models, sample, prefix_tokens, constraints)
        stats = getattr(generator, "stats", None)
        if stats and stats["sentences"]:
            logger.info(
                "diffusion decoding: %.2f network evaluations per sentence (running mean over %d sentences)",
                stats["nfe"] / stats["sentences"], stats["sentences"],
            )
        return hypos

    # ------------------------------------------------------------ generation
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        if isinstance(args, Namespace) and getattr(args, "oracle_length", None) is None and self.cfg.eval_bleu:
            args.oracle_length = True  # in-training validation decodes with oracle length (SPEC §6.3)
        return DiffusionGenerator.from_args(self.target_dictionary, args, self.cfg)


def _report_at_exit(message: str) -> None:
    """Print ``message`` when the process ends, i.e. after fairseq-generate's final score line."""
    logger.warning(message)
    atexit.register(print, message, flush=True)


class _InteractiveLines:
    """Input line bookkeeping for fairseq-interactive, which reads its input in buffers.

    fairseq numbers its output ``offset + id`` with ``id`` the row of the buffer's dataset, so the
    dataset's ids are line indices within the buffer; the generator gets global line numbers."""

    def __init__(self):
        self.read, self.current = 0, None

    def start(self, n: int) -> "_Buffer":
        self.current, self.read = _Buffer(self.read), self.read + n
        return self.current


class _Buffer:
    def __init__(self, offset: int):
        self.offset = offset
        self.local_ids: List[int] = []  # kept lines' indices within the buffer
        self._by_tokens: Dict[tuple, List[int]] = {}  # token row -> its line numbers, in input order

    def keep(self, i: int, tokens: torch.Tensor) -> None:
        self.local_ids.append(i)
        self._by_tokens.setdefault(tuple(tokens.tolist()), []).append(self.offset + i)

    def skip(self, i: int, why: str) -> None:
        """One ``E-<line>`` output line (fairseq-interactive's protocol, as ``S-``/``H-``)."""
        line = self.offset + i
        logger.warning("input line %d skipped: %s", line, why)
        print(f"E-{line}\t{why}", flush=True)
        for rows in self._by_tokens.values():
            if line in rows:
                rows.remove(line)

    def line_ids(self, src_tokens: torch.Tensor, pad: int) -> torch.Tensor:
        """``[B]`` line numbers of a batch's ``[B, L]`` rows (identical lines are taken in input order)."""
        ids = []
        for row in src_tokens.tolist():
            rows = self._by_tokens.get(tuple(t for t in row if t != pad))
            ids.append(rows.pop(0) if rows else -1)
        return torch.tensor(ids, device=src_tokens.device)
