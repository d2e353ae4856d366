"""What every diffusion task shares: dictionary and ``<mask>``, size filter, autocast, generator,
validation by a named metric, fairseq-interactive lines, and the checkpoint fairseq-train restores.

A concrete task subclasses :class:`DiffusionTask` (a ``FairseqTask``, as fairseq's own
``examples/truncated_bptt`` does) and implements ``setup_task`` (find its dictionary) and
``load_dataset`` (serve :class:`~fairseq_dlm.data.PromptResponseDataset`-shaped batches: ``tokens``,
``prompt_mask``, ``target``, ``net_input.src_tokens``); see ``diffusion_lm.py``.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum
from fairseq.data.indexed_dataset import get_available_dataset_impl
from fairseq.tasks import FairseqTask
from omegaconf import II, open_dict

from .. import safe_load
from ..checkpoints import checkpoint_to_restore, read_checkpoint, remove_stale_temporaries
from ..data import PromptResponseDataset
from ..data.templates import fill_template, resolve_template
from ..data.dictionary import MASK
from ..data.text import normalise
from ..diffusion.options import DEFAULTS, flag
from ..errors import ConfigError
from ..generator import DiffusionGenerator
from ..metrics import available_metrics
from ..reranking import load_reranker
from .decoding_config import DiffusionGenerationConfig
from .interactive import InteractiveLines, write_result_line
from .validation import ValidationScorer

logger = logging.getLogger(__name__)



@dataclass
class DiffusionTaskConfig(DiffusionGenerationConfig):
    data: Optional[str] = field(
        default=None, metadata={"help": "data directory (colon-separated directories rotate over epochs)"}
    )
    seed: int = II("common.seed")
    train_subset: str = II("dataset.train_subset")
    dataset_impl: Optional[ChoiceEnum(get_available_dataset_impl())] = II("dataset.dataset_impl")
    # fairseq folds --max-tokens into the size limit of training batches; named in the skip message
    max_tokens: Optional[int] = II("dataset.max_tokens")
    # fairseq-train loads its checkpoint only after building the model; the task reads it first
    # (fairseq_dlm.checkpoints) so that the checkpoint's backbone shapes the model, hence these
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    continue_once: Optional[str] = II("checkpoint.continue_once")
    checkpoint_suffix: str = II("checkpoint.checkpoint_suffix")
    reset_optimizer: bool = II("checkpoint.reset_optimizer")
    max_update: int = II("optimization.max_update")
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
    eval_metric: Optional[str] = field(
        default=None,
        metadata={
            "help": "validate by decoding the valid set (oracle length) and scoring it with this metric, logged "
            "under its name for --best-checkpoint-metric: bleu, bleu_lc, rouge1, rouge2, rougeL, exact_match, "
            "exact_letter, last_number, squad_em, squad_f1, ..."
        },
    )
    eval_metric_options: str = field(
        default="{}", metadata={"help": 'options of --eval-metric as JSON, e.g. \'{"tokenize": "intl"}\''}
    )
    eval_args: str = field(
        default=json.dumps({flag("max_iter"): DEFAULTS.max_iter}),
        metadata={"help": "generation args of --eval-metric as JSON (validation decodes with oracle length)"},
    )
    eval_post_process: Optional[str] = field(
        default=None,
        metadata={"help": "detokenize hypotheses and references before scoring: sentencepiece, or hf_tokenizer (the "
                          "decoder of the data folder's tokenizer.json)"},
    )
    eval_print_samples: bool = field(
        default=False, metadata={"help": "log one hypothesis and its reference per validation batch"}
    )
    trust_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "load checkpoints (--path, --restore-file, --finetune-from-model) even when they hold objects "
            "beyond tensors, containers and fairseq/omegaconf/numpy values; unpickling them can run code: only "
            "for files from a source you trust (default: such files are refused, naming the object)"
        },
    )


class DiffusionTask(FairseqTask):
    """Base of the diffusion tasks (one dictionary for prompt and response)."""

    cfg: DiffusionTaskConfig

    def __init__(self, cfg: DiffusionTaskConfig, dictionary: Dictionary):
        super().__init__(cfg)
        if cfg.trust_checkpoint:  # set by the command line: a loaded checkpoint's own value is dropped
            safe_load.set_trusted(True)
        self.dictionary = dictionary
        self.mask_idx = dictionary.index(MASK)
        self._model_positions = None  # the positions of the last model built (for size messages)
        self._interactive = InteractiveLines()
        self.scorer = self._validation_scorer(cfg)
        self.template = None if cfg.prompt_template is None else resolve_template(
            cfg.prompt_template, getattr(cfg, "source_lang", None), getattr(cfg, "target_lang", None),
            option="--prompt-template",
        )

    def _validation_scorer(self, cfg) -> Optional[ValidationScorer]:
        if not cfg.eval_metric:
            return None
        if cfg.eval_metric not in available_metrics():
            raise ConfigError(f"--eval-metric {cfg.eval_metric!r} is not a metric; known: {', '.join(available_metrics())}")
        post_process = cfg.eval_post_process
        if post_process == "hf_tokenizer":
            from ..data.subword import TOKENIZER_JSON, TokenizerJson

            path = os.path.join(str(cfg.data).split(os.pathsep)[0], TOKENIZER_JSON)
            if not os.path.isfile(path):
                raise ConfigError(f"--eval-post-process hf_tokenizer needs the data folder's tokenizer.json ({path} "
                                  "does not exist): prepare the data with --spm-model PATH/tokenizer.json")
            post_process = TokenizerJson(path).detokenize
        return ValidationScorer(cfg.eval_metric, cfg.eval_metric_options, cfg.eval_args,
                                post_process, cfg.eval_print_samples)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        return None  # the model's positions decide (resolve_max_positions takes the minimum)

    # ------------------------------------------------------------------ sizes
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
        if name is None:  # fairseq-interactive's buffer
            for index, size in zip(indices[too_long].tolist(), sizes[too_long].tolist()):
                self._interactive.current.skip(
                    dataset.ids[index] if dataset.ids is not None else index,
                    f"the prompt ({size - 3} tokens) leaves no room for a response within {limit} positions: "
                    f"<s>, prompt, one response slot and </s> need {size}; shorten it",
                )
            return indices[~too_long]
        limit_text = self._size_limit_text(limit)
        n, first = int(too_long.sum()), indices[too_long][:10].tolist()
        what = f"{n} of {len(indices)} examples of split {name!r} are longer than {limit_text}"
        if not ignore_invalid_inputs:
            raise ConfigError(
                f"{what} (first ids: {first}); pass --skip-invalid-size-inputs-valid-test to skip them "
                "(they are then counted and reported), or shorten the prompts"
            )
        logger.warning("%s and are skipped; first ids: %s", what, first)
        if too_long.all():
            raise ConfigError(f"every example of split {name!r} is longer than {limit_text}; nothing to do")
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

    # ------------------------------------------------------------ interactive
    def get_interactive_tokens_and_lengths(self, lines, encode_fn):
        """fairseq-interactive: apply ``--prompt-template``; an empty line gets an ``E-`` line."""
        buffer = self._interactive.start(len(lines))
        tokens = []
        for i, line in enumerate(lines):
            text = normalise(line)
            if not text:
                buffer.skip(i, "empty line")
                continue
            if self.template is not None:
                text = fill_template(self.template, text)
            tokens.append(self.dictionary.encode_line(encode_fn(text), add_if_not_exist=False).long())
            buffer.keep(i, tokens[-1])
        return tokens, [t.numel() for t in tokens]

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        buffer = self._interactive.current
        ids = buffer.local_ids if buffer is not None and len(buffer.local_ids) == len(src_tokens) else None
        return PromptResponseDataset(src_tokens, src_lengths, self.dictionary, shuffle=False, ids=ids)

    # ------------------------------------------------------------------ model
    def build_model(self, cfg, from_checkpoint=False):
        """Build the model; its backbone spec comes from the checkpoint that will be loaded into it.

        ``cfg.backbone_state`` (the model's own record of its backbone, saved with the model config
        in every checkpoint) is filled from the checkpoint fairseq-train will resume or fine-tune
        from, and written back after building so that checkpoints carry it."""
        if not from_checkpoint:  # fairseq-train
            remove_stale_temporaries(self.cfg.save_dir)
            restored = self._backbone_to_restore()
            if restored is not None:
                with open_dict(cfg):
                    cfg.backbone_state = json.dumps(restored)
            if getattr(cfg, "lora_adapters_only", False):
                with open_dict(cfg):
                    cfg.lora_base = cfg.lora_base or self._lora_base(cfg, restored)
                    if restored is not None and restored.get("lora_base_fingerprint"):  # resuming a compact run
                        cfg.lora_base_fingerprint = restored["lora_base_fingerprint"]
        elif getattr(cfg, "backbone_state", None) is None and self.state.state_dict.get("backbone"):
            with open_dict(cfg):  # checkpoints written before 2026-12 kept it in the task state
                cfg.backbone_state = json.dumps(self.state.state_dict["backbone"])
        model = super().build_model(cfg, from_checkpoint)
        with open_dict(cfg):
            cfg.backbone_state = json.dumps(model.backbone_state)
        self._model_positions = model.max_positions()
        if self.scorer is not None:
            self.scorer.build_generator(self, model)
        return model

    def _lora_base(self, cfg, restored: Optional[dict]) -> str:
        """Where the frozen weights of ``--lora-adapters-only`` checkpoints are read back from: the base of
        the compact checkpoint being resumed, the ``--finetune-from-model`` checkpoint, or ``--pretrained``."""
        if restored is not None:  # a compact run's own base, else the full checkpoint being loaded
            return restored.get("lora_base") or os.path.abspath(restored["source"])
        if cfg.pretrained:
            return os.path.abspath(cfg.pretrained)
        raise ConfigError("--lora-adapters-only leaves the frozen weights out of checkpoints, so they must be readable "
                          "again: start from --pretrained DIR or --finetune-from-model CKPT (not a random backbone)")

    def _backbone_to_restore(self) -> Optional[dict]:
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
        self._stop_if_finished(path, state)
        saved = ((state.get("cfg") or {}).get("model") or {}).get("backbone_state")
        saved = json.loads(saved) if saved else (state.get("task_state") or {}).get("backbone")  # before 2026-12
        if saved is None:
            logger.warning("%s holds no backbone config (written by another task?); building the model from "
                           "the command line", path)
            return None
        model_cfg = (state.get("cfg") or {}).get("model") or {}
        return dict(saved, source=path, lora_base=model_cfg.get("lora_base"),
                    lora_base_fingerprint=model_cfg.get("lora_base_fingerprint"))

    def _stop_if_finished(self, path: str, state: dict) -> None:
        """A resumed run whose checkpoint already has ``--max-update`` updates ends here, untouched.

        fairseq-train checks ``--max-update`` only after an update, so rerunning a finished command
        would train one update past it and overwrite ``checkpoint_last.pt``; this exits first (status 0)."""
        resumed = not self.cfg.reset_optimizer and not (
            self.cfg.finetune_from_model and os.path.realpath(path) == os.path.realpath(self.cfg.finetune_from_model))
        history = state.get("optimizer_history") or [{}]
        done = history[-1].get("num_updates", 0) if isinstance(history[-1], dict) else 0
        if resumed and self.cfg.max_update and done >= self.cfg.max_update:
            message = (f"{path} has already trained {done} updates and --max-update is {self.cfg.max_update}: "
                       "nothing to do (raise --max-update to train further; its files are left as they are)")
            logger.info(message)
            raise SystemExit(0)

    # ------------------------------------------------------------- precision
    def _autocast(self, model):
        device = next(model.parameters()).device
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast_bf16)

    # ------------------------------------------------------------------- EMA
    @property
    def uses_ema(self) -> bool:
        """True: under ``--store-ema`` fairseq's trainer then passes its EMA model (``ema_model=``) to
        :meth:`train_step`, which ignores it, and to :meth:`valid_step`, which validates it instead of
        the raw weights (the loss and ``--eval-metric``; ``--best-checkpoint-metric`` therefore ranks
        the EMA, while a checkpoint's ``model`` still holds the raw weights: extract the EMA with
        ``scripts/average_checkpoints.py --ema``).  Without ``--store-ema`` nothing changes."""
        return True

    _validating_ema = False  # set once validation has used the EMA model (logged once)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, ema_model=None):
        # ema_model: fairseq's EMA copy (uses_ema); the trainer steps it after the update, nothing to do here
        with self._autocast(model):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion, ema_model=None):
        if ema_model is not None:  # --store-ema: validate the EMA weights
            if not self._validating_ema:
                logger.info("validating the EMA weights (--store-ema): valid loss and --eval-metric score them, "
                            "not the raw weights")
                self._validating_ema = True
            model = ema_model  # FairseqTask.valid_step puts it in eval mode (deep-copied in training mode)
        with self._autocast(model):
            loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self.scorer is not None:
            self.scorer.valid_step(self, model, sample, logging_output)
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if self.scorer is not None:
            self.scorer.reduce_metrics(logging_outputs)

    # ------------------------------------------------------------ generation
    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if "id" not in sample and self._interactive.current is not None:
            # fairseq-interactive hands the generator no ids: give it the input line numbers, so that
            # sampled outputs do not depend on a line's row in the batch
            ids = self._interactive.current.line_ids(sample["net_input"]["src_tokens"], self.dictionary.pad())
            sample = dict(sample, id=ids)
        with self._autocast(models[0]):
            hypos = super().inference_step(generator, models, sample, prefix_tokens, constraints)
        stats = getattr(generator, "stats", None)
        if stats and stats["sentences"]:
            logger.info(
                "diffusion decoding: %.2f network evaluations per sentence, %.1f backbone tokens per sentence "
                "(running means over %d sentences)",
                stats["nfe"] / stats["sentences"], stats.get("forward_tokens", 0) / stats["sentences"],
                stats["sentences"],
            )
        return hypos

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        reranker = None
        if getattr(self.cfg, "external_reranker", None):
            reranker = load_reranker(self.cfg.external_reranker, self.cfg.data,
                                     bool(getattr(self.cfg, "trust_checkpoint", False)))
        return DiffusionGenerator.from_args(self.target_dictionary, args, self.cfg, reranker)


def _report_at_exit(message: str) -> None:
    """Print ``message`` when the process ends, i.e. after fairseq-generate's final score line."""
    import atexit

    logger.warning(message)
    atexit.register(write_result_line, message)


