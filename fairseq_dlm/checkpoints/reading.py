"""Reading fairseq checkpoints ahead of fairseq: the training clock, and what a run will restore.

``fairseq-train`` builds the model from the command line first and only then loads
``checkpoint_last.pt`` (resume) or ``--finetune-from-model`` into it.  A diffusion model's shapes
and weight tying come from its backbone, which the command line may no longer describe (a
pruned dictionary unties the LM head; ``--pretrained`` may be left out), so the task reads the
checkpoint that fairseq *will* load before the model is built (:func:`checkpoint_to_restore`,
:func:`read_checkpoint`), mirroring ``fairseq.checkpoint_utils.load_checkpoint``.
"""
import logging
import os
from typing import Optional

from .. import safe_load
from ..errors import ConfigError
from .files import damage, newest_complete_checkpoint

logger = logging.getLogger(__name__)

LAST = "checkpoint_last.pt"


def read_checkpoint(path: str) -> dict:
    """The whole checkpoint dict of ``path`` on the CPU (memory-mapped when possible), through the
    allow-list of :mod:`fairseq_dlm.safe_load`."""
    return safe_load.load(path)


def training_seconds(path) -> float:
    """Cumulative training time stored in a fairseq checkpoint (``extra_state``).

    ``--finetune-from-model`` carries this clock over, so a second stage bounded with
    ``--stop-time-hours`` must add its own budget to it.
    """
    state = read_checkpoint(str(path))
    return float(state.get("extra_state", {}).get("previous_training_time", 0.0))


def trained_updates(path) -> int:
    """The updates a fairseq checkpoint's run made (``optimizer_history[-1]["num_updates"]``; a
    ``--finetune-from-model`` stage counts from 0)."""
    history = read_checkpoint(str(path)).get("optimizer_history") or [{}]
    return int(history[-1].get("num_updates", 0))


def _same_file(a: Optional[str], b: Optional[str]) -> bool:
    if not a or not b:
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def checkpoint_to_restore(
    save_dir: str, restore_file: str, finetune_from_model: Optional[str], suffix: str = "",
    continue_once: Optional[str] = None,
) -> Optional[str]:
    """The file ``fairseq-train`` will load into the model it builds, or None (a fresh start).

    Follows ``fairseq.checkpoint_utils.load_checkpoint``: the default ``--restore-file
    checkpoint_last.pt`` means ``SAVE_DIR/checkpoint_last{suffix}.pt`` if it exists, else
    ``--continue-once`` or ``--finetune-from-model``; any other ``--restore-file`` is loaded
    as given (fairseq starts fresh when it does not exist).

    Raises:
        ValueError: ``--finetune-from-model`` is given but ``SAVE_DIR`` already holds the last
            checkpoint of another run, which fairseq would silently resume instead (e.g. the length
            stage started with stage 1's ``--save-dir``).
    """
    suffix = suffix or ""
    if restore_file != LAST:
        path = restore_file.replace(".pt", suffix + ".pt") if suffix else restore_file
        return path if os.path.isfile(path) else None
    last = os.path.join(save_dir, f"checkpoint_last{suffix}.pt")
    if os.path.exists(last):
        if not suffix and damage(last) is not None:
            # the compatibility shim resumes from the newest complete checkpoint instead: build for it
            last = newest_complete_checkpoint(last) or last
        if finetune_from_model:
            _check_same_stage(last, finetune_from_model, save_dir)
        return last
    if continue_once:
        return continue_once
    return finetune_from_model if finetune_from_model and os.path.exists(finetune_from_model) else None


def _check_same_stage(last: str, finetune_from_model: str, save_dir: str) -> None:
    """Refuse to start a ``--finetune-from-model`` stage on another run's ``checkpoint_last.pt``."""
    try:
        cfg = read_checkpoint(last).get("cfg") or {}
    except Exception:  # unreadable: fairseq's own loading reports it
        return
    previous = (cfg.get("checkpoint") or {}).get("finetune_from_model")
    if _same_file(previous, finetune_from_model):
        return  # this stage was interrupted and is resumed: fine
    raise ConfigError(
        f"--save-dir {save_dir} already holds {os.path.basename(last)} of another run "
        f"(trained {'from ' + previous if previous else 'without --finetune-from-model'}); fairseq would resume "
        f"it instead of starting from --finetune-from-model {finetune_from_model}. Give this stage a new "
        "--save-dir (e.g. the length stage its own folder next to stage 1's)"
    )


def load_fairseq_model(path: str, flag: str, overrides: dict, trust: bool = False, error=ConfigError,
                       hint: str = "train it on this data folder"):
    """``(models, task)`` of any fairseq checkpoint ``path`` (given by the option ``flag``), its task
    built with ``overrides`` (e.g. ``{"data": folder}``), the models in eval mode.

    Every way it can fail is an ``error`` naming ``flag`` and the file: no such file, another
    vocabulary than ``overrides["data"]``'s (``hint`` says what to do), not a fairseq checkpoint;
    the plugin's own :class:`~fairseq_dlm.errors.UserError` messages pass through."""
    from fairseq import checkpoint_utils

    from ..errors import UserError

    if not os.path.isfile(path):
        raise error(f"{flag} {path}: no such file (a fairseq checkpoint .pt)")
    try:
        with safe_load.trusting(trust):
            models, _, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
    except UserError:
        raise  # the plugin's own messages: not a checkpoint, untrusted, a dictionary mismatch
    except RuntimeError as e:
        if "size mismatch" in str(e):
            raise error(f"{flag} {path}: its vocabulary is not the one of {overrides.get('data')} (the embeddings "
                        f"have another size); {hint}") from None
        raise error(f"{flag} {path} cannot be loaded as a fairseq model: {e}") from None
    except (KeyError, AttributeError, EOFError) as e:
        raise error(f"{flag} {path} is not a fairseq checkpoint that can be loaded: {type(e).__name__}: {e}") from None
    for m in models:
        m.eval()
    return models, task
