"""Loading fairseq checkpoints without letting the file run code.

A ``.pt`` file is a pickle, and a pickle can name any importable callable for the loader to run
(``Evil.__reduce__`` returning ``(exec, ("...",))``).  fairseq checkpoints need none of that:
they hold tensors, plain containers, numbers and strings, and, in older files, an
``argparse.Namespace`` (``args``), omegaconf containers (``cfg``) and numpy scalars/arrays (metric
values).  Every fairseq checkpoint this package reads -- fairseq's own loading (``fairseq-train``
resume and ``--finetune-from-model``, ``fairseq-generate``/``-interactive --path``, through
:mod:`fairseq_dlm.compat`), the task's look-ahead (:mod:`fairseq_dlm.checkpoints`), the Python API,
``scripts/average_checkpoints.py`` and ``scripts/export_hf.py`` -- goes through :func:`load`:
``torch.load(weights_only=True)`` with exactly :data:`SAFE_GLOBALS` allowed.  Anything else is
refused with :class:`UntrustedCheckpointError`, which names the class and the opt-in:

* command line: ``--trust-checkpoint`` (a task flag of ``fairseq-train``/``-generate``/``-interactive``,
  and a flag of the scripts that read checkpoints);
* Python: ``DiffusionLM.from_pretrained(path, trust_checkpoint=True)``;
* anywhere: the environment variable ``FAIRSEQ_DLM_TRUST_CHECKPOINT=1``.

Files that are safe to share and load from anyone: an exported HF folder (``scripts/export_hf.py``:
safetensors and JSON); the official releases are read with ``weights_only=True`` too.
"""
import argparse
import collections
import functools
import logging
import os
import re
import typing
from contextlib import contextmanager

import torch

from .errors import UserError

logger = logging.getLogger(__name__)

TRUST_ENV = "FAIRSEQ_DLM_TRUST_CHECKPOINT"
OPT_IN = (f"--trust-checkpoint (Python: trust_checkpoint=True; or the environment variable {TRUST_ENV}=1)")
_trusted = False


class UntrustedCheckpointError(UserError, RuntimeError):
    """A checkpoint that holds objects beyond what fairseq checkpoints hold (loading it could run code)."""


def _numpy_globals() -> list:
    import numpy as np

    try:
        multiarray = np._core.multiarray  # numpy ≥ 2
    except AttributeError:  # pragma: no cover  (numpy 1.x)
        multiarray = np.core.multiarray
    dtypes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGUS"]  # numeric, bool and string dtypes, not object
    return [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, *dtypes]


def _omegaconf_globals() -> list:
    from omegaconf import DictConfig, ListConfig, base, nodes

    return [DictConfig, ListConfig, base.ContainerMetadata, base.Metadata, nodes.AnyNode, nodes.StringNode,
            nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode, typing.Any]


@functools.lru_cache(maxsize=None)
def safe_globals() -> tuple:
    """What a fairseq checkpoint may name besides torch's defaults (tensors, dicts, lists, ...); built once."""
    return (argparse.Namespace, collections.defaultdict, dict, list, tuple, set, int, float, str, bool,
            *_omegaconf_globals(), *_numpy_globals())


def trusted() -> bool:
    """Whether checkpoints are loaded without the allow-list (opted in by flag, argument or environment)."""
    return _trusted or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def set_trusted(value: bool) -> None:
    """Opt in (``--trust-checkpoint``) or back out, for the rest of the process."""
    global _trusted
    if value and not _trusted:
        logger.warning("--trust-checkpoint: checkpoints are unpickled without the allow-list; a file from an "
                       "untrusted source can run code")
    _trusted = bool(value)


@contextmanager
def trusting(value: bool = True):
    """``with trusting():`` loads inside the block without the allow-list (when ``value``)."""
    global _trusted
    before = _trusted
    _trusted = before or bool(value)
    try:
        yield
    finally:
        _trusted = before


# what torch's weights-only unpickler says when a pickle names a global it does not allow
_REFUSED_OBJECT = re.compile(r"Unsupported global|allowlisted|unrecognized function|Unsupported class|but got <class")
_CLASS = [re.compile(p) for p in (r"GLOBAL ([\w.]+)", r"got <class '([\w.]+)'>", r"<class '([\w.]+)'>",
                                  r"global ([\w.]+)")]


def _refused_class(message: str) -> str:
    for pattern in _CLASS:
        match = pattern.search(message)
        if match:
            return match.group(1)
    return "an object that is not a tensor, container, number or string"


def torch_load(f, *args, **kwargs):
    """``torch.load`` of a fairseq checkpoint (a path or an open file): the allow-list unless trusted.

    An explicit ``weights_only=False`` from a caller is honoured only when trusted.
    """
    if trusted():
        kwargs["weights_only"] = False
        return torch.load(f, *args, **kwargs)
    kwargs["weights_only"] = True
    try:
        with torch.serialization.safe_globals(list(safe_globals())):
            return torch.load(f, *args, **kwargs)
    except Exception as e:  # noqa: BLE001  (torch raises pickle.UnpicklingError; keep any other error as it is)
        text = str(e)
        if not _REFUSED_OBJECT.search(text):  # e.g. "Unsupported operand": not a pickle of ours at all
            raise
        name = getattr(f, "name", f)
        raise UntrustedCheckpointError(
            f"{name} was not loaded: its pickle refers to {_refused_class(text)}, which fairseq checkpoints never "
            "do (only tensors, containers, numbers, strings, argparse/omegaconf configurations and numpy values "
            "are loaded), and unpickling it could run code from the file. If you trust where the file came "
            f"from, pass {OPT_IN}; to share a model safely, export it (scripts/export_hf.py)") from None


def load(path: str, mmap: bool = True) -> dict:
    """The checkpoint dict of ``path`` on the CPU (memory-mapped when the format allows)."""
    try:
        return torch_load(path, map_location="cpu", mmap=mmap)
    except RuntimeError as e:
        if not mmap or "mmap" not in str(e) or isinstance(e, UntrustedCheckpointError):
            raise
        return torch_load(path, map_location="cpu")  # legacy (non-zip) format
