#!/usr/bin/env python
"""Prepare WMT14 en→de as the paper's folder ``data/wmt14.en-de.prompted.xlm-r-dict.bin``.

    python scripts/prepare_wmt14.py --spm-model XLMR_DIR/sentencepiece.bpe.model [--full-dict XLMR_DIR/dict.txt] \\
        (--raw DIR | --download) [--workers 8] [--out-dir ...]

1. the release: ``--raw DIR`` holding the WMT archives (``training-parallel-europarl-v7.tgz``,
   ``training-parallel-commoncrawl.tgz``, ``training-parallel-nc-v9.tgz``, ``test-full.tgz``) or their
   unpacked files, or ``--download`` (each archive fetched once into ``--cache-dir``);
2. raw text split as fairseq's ``prepare-wmt14en2de.sh`` does, streamed (``fairseq_dlm/data/wmt14.py``:
   valid = every 100th training line, test = newstest2014);
3. ``scripts/prepare_translation.py`` with the translation template in the en→de direction (SPEC
   §2.3), SentencePiece with ``--workers`` threads and ``fairseq-preprocess --workers``.
"""
import argparse
import logging
import shlex
import sys
import tempfile
from pathlib import Path

from fairseq_dlm.data import wmt14
from fairseq_dlm.data.download import fetch
from fairseq_dlm.data.prepare import add_corpus_arguments, prepare_extracted
from fairseq_dlm.errors import PrepareError

logger = logging.getLogger("prepare_wmt14")
URLS = {  # fairseq's prepare-wmt14en2de.sh
    "training-parallel-europarl-v7.tgz": "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    "training-parallel-commoncrawl.tgz": "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "training-parallel-nc-v9.tgz": "http://statmt.org/wmt14/training-parallel-nc-v9.tgz",
    "test-full.tgz": "http://statmt.org/wmt14/test-full.tgz",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--raw", type=Path, help="folder with the WMT14 archives (.tgz) or their unpacked files")
    src.add_argument("--download", action="store_true", help="fetch the archives (once, into --cache-dir)")
    p.add_argument("--cache-dir", type=Path, default=Path("data-raw/wmt14"), help="where --download keeps them")
    add_corpus_arguments(p, "data/wmt14.en-de.prompted.xlm-r-dict.bin")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    raw = a.cache_dir if a.download else a.raw
    try:
        if a.download:
            for name, url in URLS.items():
                fetch(url, raw / name, f"copy the archives ({name}, ...) into a folder and pass --raw DIR")
    except PrepareError as e:
        raise SystemExit(f"error: {e}") from None
    if not raw.is_dir():
        raise SystemExit(f"error: --raw {raw} is not a folder")
    staging = Path(a.out_dir).resolve().parent  # the unpacked release is large: next to the output, not in /tmp
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wmt14-raw-", dir=staging) as tmp:
        try:
            counts = wmt14.extract(wmt14.unpack(raw, Path(tmp) / "release"), Path(tmp) / "text")
        except wmt14.WmtError as e:
            raise SystemExit(f"error: {e}") from None
        logger.info("WMT14 en-de raw text: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        try:
            print(prepare_extracted(Path(tmp) / "text", a, "en", "de", "wmt14", "translation", shlex.join(["python", *sys.argv])))
        except PrepareError as e:
            raise SystemExit(f"prepare_wmt14.py: error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
