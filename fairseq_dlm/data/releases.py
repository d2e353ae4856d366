"""Locating a corpus release given as an archive or a folder (the corpus modules' shared first step).

No fairseq or torch import: the preparation scripts start without them.
"""
import tarfile
from pathlib import Path
from typing import Type

from ..errors import UserError



class ReleaseError(UserError, ValueError):
    """A release archive or folder that is not what the corpus needs (the message names it)."""


def unpack(archive: Path, dest: Path, error: Type[Exception] = ReleaseError) -> Path:
    """Unpack a tar archive (any compression) into ``dest`` (members outside it refused); ``dest``."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise error(f"{archive}: not a readable tar archive ({e})") from None
    return dest


def find_release(raw: Path, work: Path, marker: str, folder: str, error: Type[Exception] = ReleaseError) -> Path:
    """The release folder holding ``marker`` (a relative file path): ``raw`` itself, its ``folder``
    child, or -- when ``raw`` is an archive -- the same inside it, unpacked into ``work``."""
    if raw.is_file():
        raw = unpack(raw, work, error)
    for candidate in (raw, raw / folder):
        if (candidate / marker).is_file():
            return candidate
    raise error(f"{raw}: no {marker} (in it or in {folder}/): not the release this corpus needs")
