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

from fairseq_dlm.data.flan import BASE_URL, RATIO, download_shard
from fairseq_dlm.errors import PrepareError

logger = logging.getLogger("download_flan_2022")


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
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    (a.out / "ratio.json").write_text(json.dumps(RATIO, indent=1) + "\n", encoding="utf-8")
    logger.info("%s: %d shards and ratio.json", a.out, len(RATIO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
