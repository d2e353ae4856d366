#!/usr/bin/env python
"""Download the FLAN 2022 shards of the paper's instruction mixture into ``data/flan_2022`` (SPEC §9.3).

    bash scripts/download_flan_2022.sh [--out data/flan_2022] [--base-url URL]

Fetches each shard the mixture uses once (the official script also fetches unused ``*_noopt``
shards, some twice) from the HF dataset ``SirNeural/flan_v2``: ``{shard}_train.jsonl.gz``, and
``flan_fs_opt_train`` as its three parts, joined into one gzip file (a gzip file may hold several
members; nothing is decompressed: ``--task diffusion_instruct`` streams .jsonl.gz).  Then writes
``ratio.json`` (the official mixture weights).  Files already there are kept, so an interrupted run
resumes; a partial download never looks complete (``.part`` until finished).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prepare_translation  # noqa: E402  (fetch)

logger = logging.getLogger("download_flan_2022")
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
        return prepare_translation.fetch(f"{base_url}/{name}.gz", dest, hint)
    parts = [prepare_translation.fetch(f"{base_url}/{stem}_part{i}.jsonl.gz", out / f"{stem}_part{i}.jsonl.gz", hint)
             for i in range(1, PARTS[name] + 1)]
    return prepare_translation.join_parts(parts, dest)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/flan_2022"), help="the shard folder (--data_path)")
    p.add_argument("--base-url", default=BASE_URL, help="where the shards are (an http(s):// or file:// URL)")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        for name in RATIO:
            download_shard(name, a.base_url.rstrip("/"), a.out)
    except prepare_translation.PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    (a.out / "ratio.json").write_text(json.dumps(RATIO, indent=1) + "\n", encoding="utf-8")
    logger.info("%s: %d shards and ratio.json", a.out, len(RATIO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
