"""The paper's released checkpoints (HF ``yegcjs/diffusion_llm``): fetching their parts in order,
joining and unpacking them (``scripts/download_ckpts.py``; conversion: :mod:`.official`)."""
import logging
import shutil
from pathlib import Path

from ..data import releases
from ..data.download import fetch, join_parts
from ..errors import PrepareError

logger = logging.getLogger(__name__)
BASE_URL = "https://huggingface.co/yegcjs/diffusion_llm/resolve/main"
PARTS = {"base": 1, "large": 1, "xl": 3, "xxl": 6}


def download_archive(size: str, base_url: str, work: Path) -> Path:
    """``work/flan_v2.{size}.length.tar.gz``: its parts fetched in order (0, 1, 2, ...) and joined."""
    name = f"flan_v2.{size}.length"
    archive = work / f"{name}.tar.gz"
    if archive.is_file():
        logger.info("%s: already there", archive)
        return archive
    hint = f"download {name}.tar.gz.part* elsewhere and copy them into {work}"
    parts = [fetch(f"{base_url}/{name}/{name}.tar.gz.part{i}", work / f"{name}.tar.gz.part{i}", hint)
             for i in range(PARTS[size])]
    return join_parts(parts, archive)


def unpack_release(archive: Path, size: str, out: Path) -> Path:
    """The official folder (the one with ``args.json``) unpacked from ``archive`` under ``out``."""
    folder = out / f"flan_v2.{size}.length"
    if (folder / "args.json").is_file():
        return folder
    work = out / f".unpack-{size}"
    shutil.rmtree(work, ignore_errors=True)  # a killed earlier run's partial unpacking
    try:
        releases.unpack(archive, work, PrepareError)
        found = sorted(p.parent for p in work.rglob("args.json"))
        if not found:
            raise PrepareError(f"{archive} holds no args.json: not an official model archive")
        found[0].replace(folder)
    finally:  # success or not, nothing is left behind but the release folder
        shutil.rmtree(work, ignore_errors=True)
    return folder
