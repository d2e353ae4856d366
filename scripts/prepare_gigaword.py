#!/usr/bin/env python
"""Prepare Gigaword-10K as the paper's folder ``data/gigaword-10k.prompted.xlm-r-dict.bin``.

    python scripts/prepare_gigaword.py --raw summary.tar.gz --spm-model XLMR_DIR/sentencepiece.bpe.model \\
        [--full-dict XLMR_DIR/dict.txt] [--train-size 10000] [--valid-size 1000] [--out-dir ...]

1. the release: ``--raw``, the preprocessed Gigaword of Rush et al. (``summary.tar.gz`` or its unpacked
   ``sumdata/``). It has no stable public URL (Gigaword is LDC-licensed; the preprocessed release is a
   Google Drive file), so there is no ``--download``: fetch it where you may and pass its path;
2. the first ``--train-size`` training and ``--valid-size`` validation pairs, the whole test set
   (``fairseq_dlm/data/gigaword.py``);
3. ``scripts/prepare_translation.py`` with the summarisation template (SPEC §2.3) on the ``src``/``tgt``
   pair, SentencePiece, ``fairseq-preprocess``.
"""
import argparse
import logging
import shlex
import sys
import tempfile
from pathlib import Path

from fairseq_dlm.data import gigaword
from fairseq_dlm.data.prepare import add_corpus_arguments, prepare_extracted
from fairseq_dlm.errors import PrepareError

logger = logging.getLogger("prepare_gigaword")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, required=True, help="summary.tar.gz or its unpacked sumdata/ folder")
    p.add_argument("--train-size", type=int, default=10000, help="first N training pairs (0 = all)")
    p.add_argument("--valid-size", type=int, default=1000, help="first N validation pairs (0 = all)")
    add_corpus_arguments(p, "data/gigaword-10k.prompted.xlm-r-dict.bin")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    if a.train_size < 0 or a.valid_size < 0:
        p.error("--train-size and --valid-size must be ≥ 0 (0 = all)")
    if not a.raw.exists():
        raise SystemExit(f"error: --raw {a.raw} does not exist")
    with tempfile.TemporaryDirectory(prefix="gigaword-") as tmp:
        try:
            release = gigaword.find_release(a.raw, Path(tmp) / "release")
            counts = gigaword.extract(release, Path(tmp) / "text", a.train_size or None, a.valid_size or None)
        except gigaword.GigawordError as e:
            raise SystemExit(f"error: {e}") from None
        logger.info("Gigaword raw text: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        try:
            print(prepare_extracted(Path(tmp) / "text", a, "src", "tgt", "gigaword-10k", "summarization", shlex.join(["python", *sys.argv])))
        except PrepareError as e:
            raise SystemExit(f"prepare_gigaword.py: error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
