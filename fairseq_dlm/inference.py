"""Loading a diffusion checkpoint and batching prompts for it: the one layer under the Python API
(:mod:`fairseq_dlm.hub`) and the instruction evaluation (:mod:`fairseq_dlm.evaluation`).

* :func:`load` — a checkpoint file or folder, or an exported HF directory (converted into a temporary
  folder kept by the result), through fairseq's ``load_model_ensemble_and_task``, with the dictionary
  and SentencePiece model found in one order (:func:`find_spm_model`);
* :class:`EncodedRows`, :func:`canvas_stand_in`, :func:`batches` — prompts (and, for given lengths,
  target rows whose only information is their length) in fairseq samples, shortest first.
"""
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional

import torch

from .data.subword import find_subword
from .errors import ArgumentTypeError, UserError

logger = logging.getLogger(__name__)

SPM = "sentencepiece.bpe.model"


class PretrainedPathError(UserError, FileNotFoundError):
    """A ``from_pretrained`` path that is none of the kinds it loads; the message says which are."""


def _has_dictionary(folder: Path) -> bool:
    return (folder / "dict.txt").is_file() or any(folder.glob("dict.*.txt"))


def locate(path: str) -> str:
    """``"checkpoint"``, ``"hf"`` or an error: what kind of model ``path`` is."""
    p = Path(path)
    if p.is_file():
        return "checkpoint"
    if not p.is_dir():
        raise PretrainedPathError(f"{path} does not exist; pass a checkpoint file, a checkpoint folder or an "
                                  "exported HuggingFace directory")
    if (p / "diffusion_config.json").is_file() and (p / "config.json").is_file():
        return "hf"
    if any(p.glob("checkpoint*.pt")):
        return "checkpoint"
    if (p / "args.json").is_file():
        raise PretrainedPathError(f"{path} is an official (paper) model folder; convert it first: python "
                                  f"scripts/convert_checkpoint.py official {path} --out {p.name}-fairseq")
    if (p / "config.json").is_file():
        raise PretrainedPathError(f"{path} is a HuggingFace directory without diffusion_config.json: a plain masked "
                                  "LM, not a diffusion model; train one (--pretrained DIR) or export a trained "
                                  "checkpoint with scripts/export_hf.py")
    raise PretrainedPathError(f"{path} holds no checkpoint*.pt, no exported model (config.json + "
                              "diffusion_config.json) and no official model (args.json)")


@dataclass
class Loaded:
    """What :func:`load` returns; ``keep`` holds the temporary folder of a converted HF export."""

    models: list
    cfg: Any
    task: Any
    checkpoint: str
    spm_model: Optional[str]
    keep: Any = None


def load(path: str, data: Optional[str] = None, spm_model: Optional[str] = None, dictionary: Optional[str] = None,
         trust_checkpoint: bool = False, **overrides) -> Loaded:
    """Load ``path`` on the CPU (see the module docstring).

    Args:
        data: folder with the dictionary (and ``sentencepiece.bpe.model``); default: the checkpoint's
            folder when it holds a dictionary, else the data folder it was trained on.
        spm_model: SentencePiece model to encode text with (default: :func:`find_spm_model`).
        dictionary: a dictionary file instead of ``DATA/dict*.txt`` (tasks with a ``dict`` option).
        trust_checkpoint: load a checkpoint holding objects beyond what fairseq checkpoints hold.
        overrides: task/model config values for fairseq's ``arg_overrides``.
    """
    from . import register
    from .recipes.checkpoint_choice import resolve_checkpoint
    from .safe_load import trusting

    register()
    from fairseq import checkpoint_utils

    if not isinstance(trust_checkpoint, bool):
        raise ArgumentTypeError("trust_checkpoint must be True or False")
    keep = None
    if locate(path) == "hf":  # converted into a temporary folder, kept by the result
        from .convert.from_hf import convert_hf_dir

        keep = tempfile.TemporaryDirectory(prefix="diffusion-lm-")
        convert_hf_dir(path, os.path.join(keep.name, "model"))
        path = os.path.join(keep.name, "model")
    ckpt = resolve_checkpoint(path)
    folder = Path(ckpt).parent
    data = data or (str(folder) if _has_dictionary(folder) else None)
    arg_overrides = dict(overrides)
    for key, value in (("data", data), ("spm_model", spm_model), ("dict", dictionary)):
        if value:
            arg_overrides[key] = value
    with trusting(trust_checkpoint):
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides=arg_overrides)
    for m in models:
        m.eval()
    spm = spm_model or find_spm_model(task, data, ckpt)
    if spm is None:
        logger.info("no %s next to %s: text is split at whitespace (pre-encoded data)", SPM, ckpt)
    logger.info("loaded %s (%s, %d positions, %s length head)", ckpt, task.__class__.__name__,
                models[0].max_positions(), "with a" if getattr(models[0], "length_head", None) else "no")
    return Loaded(models, cfg, task, ckpt, spm, keep)


def add_model_arguments(parser, path_help: str = "checkpoint file or folder, converted official release, or "
                                                 "exported HF directory") -> None:
    """``--path``, ``--data``, ``--spm-model``, ``--trust-checkpoint``: what a command needs to load a
    model with :func:`load` (``DiffusionLM.from_pretrained(a.path, a.data, a.spm_model,
    trust_checkpoint=a.trust_checkpoint)``)."""
    parser.add_argument("--path", required=True, help=path_help)
    parser.add_argument("--data", default=None,
                        help="folder with the dictionary when neither the checkpoint's folder nor its training data "
                             "folder has one")
    parser.add_argument("--spm-model", default=None,
                        help=f"subword model to encode prompts: SentencePiece, or an HF tokenizer.json (default: {SPM} "
                             "or tokenizer.json found next to the dictionary, in the training data folder or the "
                             "checkpoint's)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint holding objects beyond fairseq's (unpickling can run code)")


def find_spm_model(task, data: Optional[str], ckpt: str) -> Optional[str]:
    """The subword model (``sentencepiece.bpe.model``, else an HF ``tokenizer.json``) in ``data``, the task's
    data folder or the checkpoint's folder, else the task's configured ``spm_model``; None when there is none."""
    for folder in (data, getattr(task.cfg, "data", None), str(Path(ckpt).parent)):
        found = find_subword(folder) if folder and os.path.isdir(folder) else None
        if found:
            return found
    configured = getattr(task.cfg, "spm_model", None)
    return configured if configured and os.path.isfile(configured) else None


@dataclass
class EncodedRows:
    """Token rows: prompts ``[P+1]``, canvases ``[L+1]`` (None: lengths from the length head)."""

    prompts: List[torch.Tensor]
    canvases: Optional[List[torch.Tensor]]
    prompts_cut: int = 0
    canvases_clipped: int = 0


def canvas_stand_in(dictionary, length: int) -> torch.Tensor:
    """``[length + 1]``: ``length`` ``<unk>`` then ``</s>``, a target row whose only information is its
    length (the generator's oracle length counts its non-special tokens)."""
    return torch.cat([torch.full((length,), dictionary.unk()), torch.tensor([dictionary.eos()])])


def batches(rows: EncodedRows, dictionary, batch_size: int) -> Iterator[dict]:
    """fairseq samples of ``batch_size`` rows, shortest first (ids = row numbers)."""
    from .data import PromptResponseDataset

    src, tgt = rows.prompts, rows.canvases
    dataset = PromptResponseDataset(src, [t.numel() for t in src], dictionary, tgt,
                                    None if tgt is None else [t.numel() for t in tgt], shuffle=False)
    order = dataset.ordered_indices().tolist()
    for start in range(0, len(order), batch_size):
        yield dataset.collater([dataset[i] for i in order[start:start + batch_size]])
