"""Output paths of the converters: checked before any work, written through a staging copy.

A conversion loads hundreds of MB before it writes, so a bad ``--out`` is refused first
(``check_out_dir`` / ``check_out_file``, an ``OutputPathError`` naming the path and the fix), and
the output is written into a temporary directory or file next to it (inside it, for an existing
directory) that replaces it only once everything is written (``staged_dir`` / ``staged_file``): a
failure half-way leaves ``--out`` as it was.

Stdlib only: ``scripts/convert_backbone.py`` loads this file by path to check ``--out`` before it
imports ``fairseq_dlm`` (fairseq and torch take seconds).

Writability is probed by creating (and removing) an empty directory, not by reading mode bits:
``root`` ignores those, but not a read-only file system.
"""
import contextlib
import logging
import os
import shutil
import tempfile
from typing import Iterator, Sequence

from ..errors import UserError

logger = logging.getLogger(__name__)


class OutputPathError(UserError, ValueError):
    """An output path that cannot be written; the message names the path and the fix."""


def _nearest_existing(path: str) -> str:
    """``path`` or its closest ancestor that exists."""
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _within(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies inside it (both already resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _probe_writable(directory: str, what: str, out: str) -> None:
    """Create and remove an empty directory in ``directory``; ``OutputPathError`` if that fails."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=directory))
    except OSError as e:
        raise OutputPathError(f"cannot write {what} {out}: {directory} is not writable ({e.strerror}); "
                              "pass --out a path in a writable directory") from e


def _check_parent(out: str, what: str) -> None:
    """The closest existing ancestor of a new ``out`` must be a writable directory."""
    base = _nearest_existing(os.path.dirname(os.path.abspath(out)))
    if not os.path.isdir(base):
        raise OutputPathError(f"cannot create {what} {out}: {base} is a file, not a directory; "
                              "pass --out a path under a directory")
    _probe_writable(base, what, out)


def refuse_existing(out: str, overwrite: bool, what: str) -> None:
    """An existing ``out`` is kept unless ``overwrite`` (``--overwrite``); ``what`` names the output."""
    if os.path.lexists(out) and not overwrite:
        raise OutputPathError(f"{out} already exists; pass --overwrite to replace the {what} there, or another --out")


def check_out_dir(out_dir: str, sources: Sequence[str] = ()) -> None:
    """Refuse an output directory that is a file, not writable, or equal to / inside a source directory.

    ``sources`` are input directories (symlinks resolved): converting into one would delete or mix
    its own files (e.g. its ``sentencepiece.bpe.model``) before they are read.
    """
    what = "output directory"
    real = os.path.realpath(out_dir)
    for src in sources:
        src_real = os.path.realpath(src)
        if _within(real, src_real):
            where = "is the source directory" if real == src_real else "is inside the source directory"
            raise OutputPathError(f"{what} {out_dir} {where} {src}; converting in place would delete or mix the "
                                  f"source's files; pass --out a directory outside it, e.g. "
                                  f"{src_real.rstrip(os.sep)}-xlmr")
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise OutputPathError(f"{what} {out_dir} is an existing file, not a directory; pass --out a directory "
                              "path (it is created if missing) or remove the file")
    if os.path.isdir(out_dir):
        _probe_writable(real, what, out_dir)
    else:
        _check_parent(out_dir, what)


def check_out_file(out_file: str, inputs: Sequence[str] = ()) -> None:
    """Refuse an output file path that is a directory, an input file, or in a directory that cannot be written."""
    what = "output file"
    if os.path.isdir(out_file):
        raise OutputPathError(f"{what} {out_file} is a directory; pass --out a file path, e.g. "
                              f"{os.path.join(out_file, 'e5-mt.npz')}")
    real = os.path.realpath(out_file)
    for path in inputs:
        if path and os.path.realpath(path) == real:
            raise OutputPathError(f"{what} {out_file} is also an input of this command ({path}); "
                                  "pass --out a new file path")
    if os.path.lexists(out_file) and not os.path.isfile(out_file):
        raise OutputPathError(f"{what} {out_file} exists and is not a regular file; pass --out a file path")
    _check_parent(out_file, what)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _install(stage: str, out: str, owned: Sequence[str]) -> None:
    """Move the staged files into ``out``; drop ``owned`` files of an earlier output that were not rewritten."""
    if not os.path.isdir(out):
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)   # mkdtemp makes it private; the final directory should not be
        os.rename(stage, out)             # a new directory appears complete, in one step
        return
    names = os.listdir(stage)
    stale = [f for f in owned if f not in names and os.path.lexists(os.path.join(out, f))]
    for name in stale:   # a previous conversion's files must not mix with this one's
        _remove(os.path.join(out, name))
    replaced = stale + [f for f in names if os.path.lexists(os.path.join(out, f))]
    for name in names:
        target = os.path.join(out, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)  # a folder of the output (e.g. an adapter folder) is replaced as a whole
        os.replace(os.path.join(stage, name), target)
    if replaced:
        logger.info("%s: replaced the files of a previous conversion (%s)", out, ", ".join(sorted(replaced)))


@contextlib.contextmanager
def staged_dir(out_dir: str, owned: Sequence[str] = ()) -> Iterator[str]:
    """Yield an empty staging directory whose files become ``out_dir``'s when the block succeeds.

    A new ``out_dir`` is staged next to it (``.<name>.partial-*``) and renamed into place. An existing
    one is staged inside itself (same file system, even for a mount point) and updated file by file;
    files of an earlier output named in ``owned`` that were not written again are removed, any other
    file is kept. When the block fails, ``out_dir`` is left as it was and the staging copy is removed.
    """
    out = os.path.abspath(out_dir)
    if os.path.isdir(out):
        stage = tempfile.mkdtemp(prefix=".partial-", dir=out)
    else:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=os.path.dirname(out))
    try:
        yield stage
        _install(stage, out, owned)
    finally:
        if os.path.isdir(stage):
            shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_file(out_file: str) -> Iterator[str]:
    """Yield a temporary path next to ``out_file`` that replaces it (``os.replace``) when the block succeeds."""
    out = os.path.abspath(out_file)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, stage = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.partial-", dir=os.path.dirname(out))
    os.close(fd)
    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o666 & ~umask)   # mkstemp makes it private
        os.replace(stage, out)
    finally:
        if os.path.exists(stage):
            os.remove(stage)
