"""Checkpoint files: reading them ahead of fairseq (:mod:`.reading`: what a run will restore, the
training clock, any fairseq model with clear errors) and the shims that make fairseq's own
checkpoint files safe (:mod:`.files`: atomic copies, clear errors for damaged files, resume from the
newest complete one; installed by :func:`fairseq_dlm.compat.install`).  Loading goes through
:mod:`fairseq_dlm.safe_load`."""
from .files import CheckpointFileError, remove_stale_temporaries
from .reading import (LAST, checkpoint_to_restore, load_fairseq_model, read_checkpoint, trained_updates,
                      training_seconds)

__all__ = ["CheckpointFileError", "LAST", "checkpoint_to_restore", "load_fairseq_model", "read_checkpoint",
           "remove_stale_temporaries", "trained_updates", "training_seconds"]
