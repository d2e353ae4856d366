"""The FLAN 2022 shards of the paper's instruction mixture (SPEC §9.3): where they are, their mixture
weights, and fetching one (``scripts/download_flan_2022.py``)."""
import logging
from pathlib import Path

from .download import fetch, join_parts

logger = logging.getLogger(__name__)

BASE_URL = "https://huggingface.co/datasets/SirNeural/flan_v2/resolve/main"
# shard → weight (SPEC §9.3; the official scripts/flan_2022_ratio.json, 40/32/20/5/3 per family)
RATIO = {
    "flan_fs_noopt_train.jsonl": 0.1, "flan_fs_opt_train.jsonl": 0.1, "flan_zs_noopt_train.jsonl": 0.1,
    "flan_zs_opt_train.jsonl": 0.1, "t0_fs_noopt_train.jsonl": 0.106, "t0_zs_noopt_train.jsonl": 0.107,
    "t0_zs_opt_train.jsonl": 0.107, "niv2_fs_opt_train.jsonl": 0.1, "niv2_zs_opt_train.jsonl": 0.1,
    "cot_fs_opt_train.jsonl": 0.025, "cot_zs_opt_train.jsonl": 0.025, "dialog_fs_opt_train.jsonl": 0.015,
    "dialog_zs_opt_train.jsonl": 0.015,
}
PARTS = {"flan_fs_opt_train.jsonl": 3}  # published in parts: {stem}_part{i}.jsonl.gz


def download_shard(name: str, base_url: str, out: Path) -> Path:
    """``out/{name}.gz``, fetched (and joined from its parts) unless already there."""
    dest = out / f"{name}.gz"
    if dest.is_file():
        logger.info("%s: already there", dest)
        return dest
    hint = f"download {name}.gz elsewhere and copy it into {out}"
    stem = name[: -len(".jsonl")]
    if name not in PARTS:
        return fetch(f"{base_url}/{name}.gz", dest, hint)
    parts = [fetch(f"{base_url}/{stem}_part{i}.jsonl.gz", out / f"{stem}_part{i}.jsonl.gz", hint)
             for i in range(1, PARTS[name] + 1)]
    return join_parts(parts, dest)
