"""``--task diffusion_instruct``: instruction tuning on a mixture of jsonl shards (SPEC §2.4, §9.3).

``DATA`` holds the training shards (``*.jsonl`` / ``*.jsonl.gz``, one ``{"inputs", "targets"}``
per line, the FLAN 2022 format), the backbone's ``sentencepiece.bpe.model`` and its full
``dict.txt`` (or pass ``--spm-model`` / ``--dict``), and optionally ``ratio.json`` (shard file
name → weight; ``--mixture-ratios`` overrides it).  A split ``S`` other than ``train`` is every
line of ``DATA/S/*.jsonl[.gz]`` or ``DATA/S.jsonl[.gz]``.

Training reads the shards as streams (:class:`~fairseq_dlm.data.jsonl_mixture.JsonlMixture`):
each virtual epoch takes the next ``--epoch-size`` examples of the mixture, tokenises them with
the backbone's SentencePiece model and serves them like any other split; fairseq's batch iterator
shards the batches across data-parallel ranks, so ranks never see the same example.  The mixture
position at the start of the epoch is kept in the task state of every checkpoint, so a run resumed
with fairseq's usual ``--restore-file`` (or ``checkpoint_last.pt``) rebuilds the same epoch and
fairseq skips the batches it had already trained on.  Prompts are cut from the left to fit the
positions; responses that leave no room are dropped; both are counted and logged.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from fairseq.tasks import register_task

from ..checkpoints import checkpoint_to_restore, read_checkpoint
from ..data import PromptResponseDataset
from ..data.encode import PieceEncoder, fit_example
from ..data.subword import find_subword
from ..data.jsonl_mixture import JsonlMixture
from ..errors import ConfigError, MissingFileError
from ..metrics.evalfiles import read_eval_jsonl
from ..data.dictionary import MASK, load_dictionary
from .base import DiffusionTask, DiffusionTaskConfig

logger = logging.getLogger(__name__)

DEFAULT_POSITIONS = 512  # XLM-R's, when the model is not built yet


@dataclass
class DiffusionInstructConfig(DiffusionTaskConfig):
    mixture_ratios: Optional[str] = field(
        default=None,
        metadata={"help": "JSON file: shard file name → sampling weight (default: DATA/ratio.json if present, "
                          "else uniform over the shards found)"},
    )
    epoch_size: int = field(
        default=10000, metadata={"help": "examples per virtual epoch drawn from the mixture (streamed)"}
    )
    spm_model: Optional[str] = field(
        default=None, metadata={"help": "the backbone's subword model: a SentencePiece model or an HF tokenizer.json "
                                        "(default: DATA/sentencepiece.bpe.model, else DATA/tokenizer.json)"}
    )
    dict: Optional[str] = field(
        default=None, metadata={"help": "fairseq dictionary of its pieces, XLM-R's full dict.txt (default: DATA/dict.txt)"}
    )


@register_task("diffusion_instruct", dataclass=DiffusionInstructConfig)
class DiffusionInstructTask(DiffusionTask):
    """Instruction → response generation, trained on a streamed mixture of jsonl shards."""

    cfg: DiffusionInstructConfig

    def __init__(self, cfg: DiffusionInstructConfig, dictionary):
        super().__init__(cfg, dictionary)
        self.encoder = PieceEncoder(cfg.spm_model or find_subword(cfg.data)
                                    or os.path.join(cfg.data, "sentencepiece.bpe.model"), dictionary)
        self._mixture: Optional[JsonlMixture] = None
        self._positions = {}  # epoch -> mixture position at its start (this process)

    @classmethod
    def setup_task(cls, cfg: DiffusionInstructConfig, **kwargs):
        if not cfg.data or not os.path.isdir(cfg.data):
            raise MissingFileError(f"data directory {cfg.data!r} does not exist; pass the folder of jsonl shards")
        dictionary = load_dictionary(cfg.dict or os.path.join(cfg.data, "dict.txt"))
        logger.info("dictionary: %d types (%s, <mask> = %d)", len(dictionary), dictionary.path, dictionary.index(MASK))
        return cls(cfg, dictionary)

    @property
    def mixture(self) -> JsonlMixture:
        if self._mixture is None:
            ratios = self.cfg.mixture_ratios
            if ratios is None and os.path.isfile(os.path.join(self.cfg.data, "ratio.json")):
                ratios = os.path.join(self.cfg.data, "ratio.json")
            self._mixture = JsonlMixture(self.cfg.data, ratios, seed=self.cfg.seed)
        return self._mixture

    def has_sharded_data(self, split):
        return split == self.cfg.train_subset  # a new virtual epoch is loaded every epoch

    # ------------------------------------------------------------------ data
    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        if split == self.cfg.train_subset:
            pairs = self._training_epoch(epoch)
        else:
            pairs = [(ex.inputs, ex.targets, f"{path}:{i + 1}") for path, i, ex in self._split_examples(split)]
        src, tgt = self._encode(pairs, split)
        self.datasets[split] = PromptResponseDataset(
            src, [t.numel() for t in src], self.dictionary, tgt, [t.numel() for t in tgt],
            shuffle=(split == self.cfg.train_subset), seed=self.cfg.seed,
        )

    def _training_epoch(self, epoch: int) -> List[Tuple[str, str, str]]:
        start = self._start_position(epoch)
        examples, end = self.mixture.take(self.cfg.epoch_size, epoch, start)
        self._positions[epoch + 1] = end
        self.state.merge_state_dict({"mixture": {"epoch": epoch, "start": start, "end": end}})
        return [(ex.inputs, ex.targets, f"{ex.shard}:{ex.line}") for ex in examples]

    def _start_position(self, epoch: int) -> dict:
        """Where epoch ``epoch`` starts: known in this process, else read from the checkpoint resumed."""
        if epoch in self._positions:
            return self._positions[epoch]
        if epoch > 1:
            saved = self._restored_mixture_state()
            if saved and saved.get("epoch") == epoch:
                return saved["start"]
            if saved and saved.get("epoch") == epoch - 1:
                return saved["end"]
            logger.warning("no mixture position for epoch %d (checkpoint of another epoch?): reading the shards "
                           "from their start", epoch)
        return self.mixture.initial_position()

    def _restored_mixture_state(self) -> Optional[dict]:
        path = checkpoint_to_restore(self.cfg.save_dir, self.cfg.restore_file, None,
                                     self.cfg.checkpoint_suffix, self.cfg.continue_once)
        if path is None:
            return None
        return (read_checkpoint(path).get("task_state") or {}).get("mixture")

    def _split_examples(self, split: str):
        folder = os.path.join(self.cfg.data, split)
        if os.path.isdir(folder):
            paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".jsonl", ".jsonl.gz")))
        else:
            paths = [p for p in (os.path.join(self.cfg.data, f"{split}.jsonl{ext}") for ext in ("", ".gz"))
                     if os.path.isfile(p)]
        if not paths:
            raise MissingFileError(
                f"split {split!r} not found: no {folder}/*.jsonl[.gz] and no {folder}.jsonl[.gz] "
                "(pass --disable-validation to train without one)"
            )
        for path in paths:
            for i, ex in enumerate(read_eval_jsonl(path)):
                yield path, i, ex

    def _encode(self, pairs, split: str):
        """Token rows of ``(inputs, targets, where)`` fitted into the positions (counts logged)."""
        limit = self._model_positions or DEFAULT_POSITIONS
        src, tgt, cut, dropped = [], [], 0, []
        for inputs, targets, where in pairs:
            prompt, response = self.encoder.encode(inputs), self.encoder.encode(targets)
            fitted = fit_example(prompt, response, limit)
            if fitted is None:
                dropped.append(where)
                continue
            cut += fitted[0].numel() < prompt.numel()
            src.append(fitted[0])
            tgt.append(fitted[1])
        if cut:
            logger.info("%s: %d of %d prompts cut from the left to fit %d positions", split, cut, len(pairs), limit)
        if dropped:
            logger.warning("%s: %d of %d examples dropped: the response alone leaves no room within %d positions "
                           "(first: %s)", split, len(dropped), len(pairs), limit, ", ".join(dropped[:5]))
        if not src:
            raise ConfigError(f"split {split!r} has no example that fits {limit} positions")
        logger.info("%s: %d examples (%d tokens)", split, len(src), int(np.sum([s.numel() + t.numel() for s, t in zip(src, tgt)])))
        return src, tgt
