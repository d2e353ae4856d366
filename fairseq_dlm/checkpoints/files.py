"""Checkpoint-file shims for the ``fairseq-fixed`` fork: atomic copies, clear errors, safe resume.

Installed by :func:`fairseq_dlm.compat.install`; like the ``torch.load`` shim there, every hook is
a name replaced *inside* ``fairseq.checkpoint_utils`` (no fairseq file is patched, no other module
is touched).

1. **Atomic copies.** ``save_checkpoint`` writes the first due checkpoint (``checkpoint_E_U.pt``,
   ``checkpointE.pt`` or ``checkpoint_best.pt``) atomically (``.tmp`` + rename), then *copies* it
   to the other names, ``checkpoint_last.pt`` included, with ``PathManager.copy``, i.e.
   ``shutil.copyfile``, which truncates the destination and rewrites it in place: a kill during
   that copy left a 0 B or truncated ``checkpoint_last.pt``, the previous good copy gone.  The
   ``PathManager`` name of ``checkpoint_utils`` is now a proxy whose ``copy`` writes
   ``<dst>.tmp``, fsyncs it and ``os.replace``-s it onto ``<dst>``: the destination is always the
   old file or the new one.  Remote (ioPath) paths keep fairseq's own copy.
2. **Clear errors.** ``checkpoint_utils.load_checkpoint_to_cpu`` (every load: resume,
   ``--restore-file``, ``--finetune-from-model``, and ``--path`` of ``fairseq-generate``/
   ``-interactive``/``-validate`` through ``load_model_ensemble_and_task``) is wrapped: when a
   local file cannot be loaded because it is damaged, :class:`CheckpointFileError` says the file
   is truncated or corrupt, gives its size, and names the newest complete checkpoint in the same
   folder with the flag to use it, instead of torch's ``EOFError: Ran out of input`` or
   ``failed finding central directory``.  "Complete" is a cheap structural test (a zip archive
   whose central directory, written last, is present and lists ``data.pkl``): it catches
   truncation, the failure a kill causes, without unpickling gigabytes.
3. **Resume falls back, with a warning.** On an implicit resume (default ``--restore-file``, so
   ``<save-dir>/checkpoint_last.pt``), an unreadable ``checkpoint_last.pt`` is replaced by the
   newest complete checkpoint of the save dir.  Why automatically rather than an error: the
   implicit resume is what preempted/requeued jobs rely on (re-run the same command), and in the
   failure guarded against (a kill during the copy to ``checkpoint_last.pt``, e.g. after files
   written before this fix) the checkpoint written just before it holds the very same state, so
   nothing is lost; the warning names both files and the trainer then logs the update it resumed
   at.  An explicitly named file (``--restore-file X``, ``--finetune-from-model X``, ``--path X``)
   is never swapped: that is an error with the hint.  Not for sharded checkpoints
   (``checkpoint_last-shard0.pt``: every rank would have to pick the same step), nor when no
   complete checkpoint is left (error: move the file away to start from scratch).
4. **EMA from a checkpoint without one.** ``--store-ema`` with ``--finetune-from-model`` (or a
   resumed run saved without EMA) crashed in fairseq's trainer (``KeyError: 'model'``); see
   :func:`_seed_ema`.
5. **Trust is not inherited** from a loaded checkpoint's ``--trust-checkpoint``; see :func:`_forget_trust`.
"""
import functools
import logging
import os
import pickle
import re
import shutil
import zipfile

from ..errors import UserError

logger = logging.getLogger(__name__)

_PATCHED = False
_RESUME = {}  # set during checkpoint_utils.load_checkpoint: {"cfg": CheckpointConfig, "last": path or None}
_NAMES = re.compile(r"checkpoint.*\.pt")
_SHARDS = re.compile(r".*(-shard|_part)\d+\.pt")
NOT_A_CHECKPOINT = "it is not a PyTorch checkpoint file"


class CheckpointFileError(UserError, RuntimeError):
    """A checkpoint file that cannot be loaded because it is truncated or corrupt."""


def atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    """Copy ``src_path`` to ``dst_path`` via ``<dst>.tmp`` + ``os.replace`` (ioPath's return value)."""
    if not overwrite and os.path.exists(dst_path):
        logger.error(f"not copying {src_path} to {dst_path}: the destination exists")
        return False
    tmp = dst_path + ".tmp"
    try:
        shutil.copyfile(src_path, tmp)
        with open(tmp, "rb") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, dst_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return True


class _PathManagerProxy:
    """Forwards every attribute to fairseq's ``PathManager`` except ``copy`` (atomic for local paths)."""

    def __init__(self, path_manager):
        self._pm = path_manager

    def __getattr__(self, name):
        return getattr(self._pm, name)

    def copy(self, src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if self._pm.path_requires_pathmanager(src_path) or self._pm.path_requires_pathmanager(dst_path):
            return self._pm.copy(src_path, dst_path, overwrite=overwrite)
        return atomic_copy(src_path, dst_path, overwrite=overwrite)


def remove_stale_temporaries(save_dir: str) -> list:
    """Delete the ``checkpoint*.pt.tmp`` files a killed save left in ``save_dir`` (fairseq's own
    ``.tmp`` + rename, and :func:`atomic_copy`'s); the paths removed.  Called when fairseq-train
    starts, before it writes anything: no save of this run can be in progress."""
    if not save_dir or not os.path.isdir(save_dir):
        return []
    removed = []
    for name in sorted(os.listdir(save_dir)):
        if name.endswith(".pt.tmp") and _NAMES.fullmatch(name[:-len(".tmp")]):
            path = os.path.join(save_dir, name)
            try:
                os.remove(path)
            except FileNotFoundError:  # another rank of the same run removed it
                continue
            removed.append(path)
            logger.warning("removed %s, left by a save that was interrupted", path)
    return removed


def damage(path: str):
    """Why the local file ``path`` is structurally incomplete, or ``None`` if it looks complete.

    Only torch's zip format (every ``torch.save`` since torch 1.6) is tested; a legacy-format file
    (older released models) has no cheap test and counts as complete.
    """
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in archive.namelist()):
                return "its zip archive has no data.pkl record"
    except (zipfile.BadZipFile, OSError) as exc:
        return f"it is not a complete zip archive ({size} bytes; zipfile: {exc})"
    return None


def newest_complete_checkpoint(path: str):
    """The most recently written complete ``checkpoint*.pt`` next to ``path`` (not ``path``), or ``None``."""
    folder = os.path.dirname(os.path.abspath(path))
    found = []
    for name in os.listdir(folder):
        full = os.path.join(folder, name)
        if _NAMES.fullmatch(name) and not _SHARDS.fullmatch(name) and os.path.isfile(full) \
                and not os.path.samefile(full, path):
            found.append((os.stat(full).st_mtime_ns, name, full))
    for _, _, full in sorted(found, reverse=True):
        if damage(full) is None:
            return full
    return None


def not_a_checkpoint(path: str):
    """Why the local file ``path`` is no PyTorch file at all (a text file, say), or ``None``.

    torch writes a zip archive (``PK``) or, in its legacy format, a pickle (protocol 2+: ``0x80``)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head or head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    return f"{NOT_A_CHECKPOINT} (it starts with {head!r}, neither a zip archive nor a pickle)"


def _why_unreadable(path, exc):
    """A description when ``exc`` from loading ``path`` comes from a damaged local file, else ``None``."""
    from ..safe_load import UntrustedCheckpointError

    if isinstance(exc, UntrustedCheckpointError) or not isinstance(path, (str, os.PathLike)) \
            or not os.path.isfile(path):
        return None
    problem = not_a_checkpoint(path) or damage(path)
    if problem is None and (isinstance(exc, (EOFError, pickle.UnpicklingError))
                            or "PytorchStreamReader" in str(exc) or "unexpected EOF" in str(exc)):
        problem = f"torch cannot read it ({type(exc).__name__}: {exc})"
    return problem


def _flag(path):
    """The command-line flag that names ``path`` in the current command."""
    cfg = _RESUME.get("cfg")
    if cfg is None:
        return "--path"
    return "--finetune-from-model" if path == cfg.finetune_from_model else "--restore-file"


def _error(path, problem, alt):
    if problem.startswith(NOT_A_CHECKPOINT):  # not damaged: never was a checkpoint
        return CheckpointFileError(f"checkpoint file {path}: {problem}; pass a checkpoint_*.pt written by "
                                   "fairseq-train or scripts/convert_checkpoint.py")
    where = os.path.dirname(os.path.abspath(path))
    if alt:
        hint = f"The newest complete checkpoint in {where} is {alt}: use it with {_flag(path)} {alt}."
    else:
        hint = f"There is no other complete checkpoint*.pt in {where}" + (
            "; move the file away to start training afresh." if _RESUME.get("last") else ".")
    return CheckpointFileError(
        f"checkpoint file {path} is truncated or corrupt: {problem}. It was probably cut short by a "
        f"kill or a full disk while it was written. {hint}")


def _seed_ema(state, path):
    """Shim 4: a ``--store-ema`` run started from a checkpoint without EMA weights.

    fairseq 0.12's ``Trainer.load_checkpoint`` deletes ``state["model"]`` after loading it and then,
    finding no ``extra_state["ema"]``, re-initialises the EMA from ``state["model"]``: ``KeyError``
    (every ``--finetune-from-model`` stage, the length stage included, and resuming a run saved
    without EMA).  While fairseq-train loads with ``--store-ema``, the loaded weights are also put
    under ``extra_state["ema"]`` (the same tensors, no copy), which is the re-initialisation fairseq
    meant."""
    if not _RESUME.get("ema") or not isinstance(state, dict) or "model" not in state:
        return state
    extra = state.get("extra_state")
    if isinstance(extra, dict) and "ema" not in extra:
        extra["ema"] = state["model"]
        logger.info(f"{path} holds no EMA weights: the EMA of --store-ema starts from its model weights")
    return state


def _forget_trust(state):
    """Shim 5: ``--trust-checkpoint`` is the caller's decision, never a file's: a checkpoint saved by a
    run that had it would otherwise switch trust on for every later load in the process (the task
    built from its configuration sets it)."""
    task = state.get("cfg", {}).get("task") if isinstance(state, dict) and state.get("cfg") is not None else None
    if task is not None and task.get("trust_checkpoint"):
        from omegaconf import open_dict

        with open_dict(task):
            task["trust_checkpoint"] = False
    return state


def install() -> None:
    """Install the hooks into ``fairseq.checkpoint_utils`` (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import fairseq.checkpoint_utils as cu

    cu.PathManager = _PathManagerProxy(cu.PathManager)
    original_load_to_cpu, original_load_checkpoint = cu.load_checkpoint_to_cpu, cu.load_checkpoint

    @functools.wraps(original_load_to_cpu)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return _forget_trust(_seed_ema(original_load_to_cpu(path, *args, **kwargs), path))
        except Exception as exc:
            problem = _why_unreadable(path, exc)
            if problem is None:
                raise
            alt = newest_complete_checkpoint(path)
            if alt is None or _RESUME.get("last") != os.path.abspath(path):
                raise _error(path, problem, alt) from exc
            logger.warning(f"checkpoint file {path} is truncated or corrupt: {problem}; resuming from "
                           f"the newest complete checkpoint in the save dir instead: {alt}")
            _RESUME["last"] = None  # no second fallback: a damaged `alt` is an error naming the next one
            return load_checkpoint_to_cpu(alt, *args, **kwargs)

    @functools.wraps(original_load_checkpoint)
    def load_checkpoint(cfg, trainer, **passthrough_args):
        implicit = cfg.restore_file == "checkpoint_last.pt" and not trainer.checkpoint_suffix
        last = os.path.join(cfg.save_dir, "checkpoint_last.pt")
        _RESUME.update(cfg=cfg, last=os.path.abspath(last) if implicit else None,
                       ema=bool(getattr(getattr(getattr(trainer, "cfg", None), "ema", None), "store_ema", False)))
        try:
            return original_load_checkpoint(cfg, trainer, **passthrough_args)
        finally:
            _RESUME.clear()

    cu.load_checkpoint_to_cpu = load_checkpoint_to_cpu
    cu.load_checkpoint = load_checkpoint
    _PATCHED = True
