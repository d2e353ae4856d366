#!/usr/bin/env python
"""Prepare IWSLT14 de→en as the paper's folder ``data/iwslt14.de-en.prompted.xlm-r-dict.bin``.

    python scripts/prepare_iwslt14.py --spm-model XLMR_DIR/sentencepiece.bpe.model [--full-dict XLMR_DIR/dict.txt] \\
        (--raw de-en.tgz | --raw DIR_WITH_de-en | --download) [--workers 4] [--out-dir ...]

1. the release: ``--raw`` (the ``de-en.tgz`` archive or its unpacked folder) or ``--download`` (fetched
   once from ``--url`` into ``--cache-dir``);
2. raw text split as fairseq's ``prepare-iwslt14.sh`` does (``fairseq_dlm/data/iwslt14.py``: metadata
   lines dropped, valid = every 23rd training line, test = dev2010 + dev2012 + tst2010-2012);
3. ``scripts/prepare_translation.py``: the translation prompt template (SPEC §2.3), SentencePiece
   pieces of the backbone, ``fairseq-preprocess`` into ``--out-dir`` with a README of what was done.
"""
import argparse
import logging
import shlex
import sys
import tempfile
from pathlib import Path

from fairseq_dlm.data import iwslt14
from fairseq_dlm.data.download import fetch
from fairseq_dlm.data.prepare import add_corpus_arguments, prepare_extracted
from fairseq_dlm.errors import PrepareError

logger = logging.getLogger("prepare_iwslt14")
URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"  # fairseq's prepare-iwslt14.sh mirror


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--raw", type=Path, help="the IWSLT14 de-en release: de-en.tgz or the folder holding it unpacked")
    src.add_argument("--download", action="store_true", help="fetch de-en.tgz from --url (once, into --cache-dir)")
    p.add_argument("--url", default=URL, help="where --download fetches de-en.tgz")
    p.add_argument("--cache-dir", type=Path, default=Path("data-raw/iwslt14"), help="where --download keeps it")
    add_corpus_arguments(p, "data/iwslt14.de-en.prompted.xlm-r-dict.bin")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    try:
        raw = fetch(a.url, a.cache_dir / "de-en.tgz",
                    "copy de-en.tgz here and pass --raw de-en.tgz") if a.download else a.raw
    except PrepareError as e:
        raise SystemExit(f"error: {e}") from None
    if not raw.exists():
        raise SystemExit(f"error: --raw {raw} does not exist")
    with tempfile.TemporaryDirectory(prefix="iwslt14-") as tmp:
        try:
            release = iwslt14.find_release(raw, Path(tmp) / "release")
            counts = iwslt14.extract(release, Path(tmp) / "text")
        except iwslt14.IwsltError as e:
            raise SystemExit(f"error: {e}") from None
        logger.info("IWSLT14 de-en raw text: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        try:
            print(prepare_extracted(Path(tmp) / "text", a, "de", "en", "iwslt14", "translation", shlex.join(["python", *sys.argv])))
        except PrepareError as e:
            raise SystemExit(f"prepare_iwslt14.py: error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
