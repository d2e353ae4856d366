#!/usr/bin/env python
"""Prepare a prompted translation data folder for ``fairseq_dlm`` (SPEC §2, §9.2).

raw parallel text (plain or .gz) → normalisation (NFC, whitespace stripped and collapsed; pairs
with an empty or invisible-only side are dropped and counted) → the prompt template on the source side (SPEC §2.3)
→ SentencePiece pieces of the backbone's model → ``fairseq-preprocess --joined-dictionary``
(pruned dictionary, or ``--srcdict`` with ``--full-dict``) → ``<dest-root>/<name>.<src>-<tgt>.
prompted.xlm-r-dict.bin`` holding ``dict.{src,tgt}.txt`` (identical), ``{split}.{src}-{tgt}.
{src|tgt}.{bin,idx}``, a README.md recording the command, counts and template, and (unless
``--no-keep-intermediate``) the normalised text in ``text/`` and its pieces in ``spm/``.

Example (Multi30k de→en):
    python scripts/prepare_translation.py --raw-dir ../shared/data/multi30k --src de --tgt en \\
        --spm-model XLMR_DIR/sentencepiece.bpe.model [--full-dict XLMR_DIR/dict.txt]
"""
import argparse
import logging
import shlex
import sys
from typing import List, Optional

from fairseq_dlm.data.prepare import TranslationPrep, prepare, summary
from fairseq_dlm.data.templates import TRANSLATION_TEMPLATE
from fairseq_dlm.errors import PrepareError

PREP = TranslationPrep()  # the defaults


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag documented)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-dir", help="folder with the raw parallel files <prefix>.<lang>[.gz] "
                   "(required unless --download)")
    p.add_argument("--src", default=PREP.src, help=f"source language code (file suffix), default {PREP.src}")
    p.add_argument("--tgt", default=PREP.tgt, help=f"target language code (file suffix), default {PREP.tgt}")
    p.add_argument("--name", default=PREP.name, help="data set name, first part of the output folder name")
    p.add_argument("--splits", nargs="+", default=PREP.splits, metavar="SPLIT=PREFIX",
                   help="fairseq split → raw file prefix relative to --raw-dir (absolute paths allowed); replaces "
                   "the Multi30k default 'train=train valid=val test=test_2016_flickr'; extra sets are valid1, "
                   "test1, ... e.g. test1=test_2017_flickr")
    p.add_argument("--spm-model", required=True,
                   help="the backbone's subword model: SentencePiece (XLM-R: sentencepiece.bpe.model; LLaMA: "
                   "tokenizer.model) or an HF tokenizer.json (Qwen2's byte-level BPE)")
    p.add_argument("--full-dict", metavar="DICT", help="keep this full fairseq dictionary (e.g. XLM-R's dict.txt, "
                   "passed as --srcdict) instead of pruning to the training pieces")
    p.add_argument("--template", help="source prompt with {src} (and optionally {src_lang}/{tgt_lang}); default: "
                   f"{TRANSLATION_TEMPLATE!r}, language names from ISO codes")
    p.add_argument("--max-train", type=int, help="use only the first N training pairs (logged)")
    p.add_argument("--workers", type=int, default=PREP.workers, help="fairseq-preprocess workers and SentencePiece threads")
    p.add_argument("--dest-root", default=PREP.dest_root, help="parent of the default output folder (default data-bin)")
    p.add_argument("--out-dir", help="output folder (default <dest-root>/<name>.<src>-<tgt>.prompted.xlm-r-dict.bin)")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder this script wrote before")
    p.add_argument("--keep-intermediate", action=argparse.BooleanOptionalAction, default=PREP.keep_intermediate,
                   help="keep the normalised text (text/) and its SentencePiece pieces (spm/) in the output folder")
    p.add_argument("--download", action="store_true", help="download missing Multi30k task-1 raw files from "
                   "github.com/multi30k/dataset into --raw-dir (or --cache-dir when --raw-dir is not given)")
    p.add_argument("--cache-dir", default=PREP.cache_dir,
                   help="where --download puts the raw files when --raw-dir is not given (default data-raw/multi30k)")
    p.add_argument("--download-url", default=PREP.download_url, help="base URL of the raw files for --download")
    p.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Parse flags, run the preparation, print the summary; a PrepareError is one line and exit 1."""
    argv = sys.argv[1:] if argv is None else argv
    a = vars(build_parser().parse_args(argv))
    logging.basicConfig(format="%(asctime)s | %(levelname)s | prepare_translation | %(message)s",
                        datefmt="%H:%M:%S", level=a.pop("log_level").upper(), stream=sys.stderr)
    command = shlex.join(["python", sys.argv[0] if sys.argv[0] else "scripts/prepare_translation.py", *argv])
    prep = TranslationPrep(**a)
    try:
        out, stats, dict_size = prepare(prep, command)
    except PrepareError as e:
        print(f"prepare_translation.py: error: {e}", file=sys.stderr)
        return 1
    print(summary(out, stats, dict_size, prep.full_dict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
