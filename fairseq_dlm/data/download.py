"""Downloads that leave no file looking complete when interrupted, and multi-part joins."""
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import List

from ..errors import PrepareError

logger = logging.getLogger(__name__)


def fetch(url: str, dest: Path, offline_hint: str) -> Path:
    """``dest``, downloaded from ``url`` unless it is there (streamed into ``dest.part``, then renamed,
    so an interrupted download leaves no file that looks complete); ``offline_hint`` ends the error."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    logger.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise PrepareError(f"could not download {url} ({e}); if this machine is offline, {offline_hint}") from e
    tmp.replace(dest)
    return dest


def join_parts(parts: List[Path], dest: Path) -> Path:
    """``dest``: the files ``parts`` concatenated in order (through ``dest.part``, then renamed, so a
    partial join never looks complete); the parts are removed afterwards."""
    tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") as joined:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined, 1 << 20)
    tmp.replace(dest)
    for part in parts:
        part.unlink()
    logger.info("%s: joined from %d parts", dest, len(parts))
    return dest
