#!/usr/bin/env python
"""Write a fairseq dictionary of just the SentencePiece pieces that some jsonl data uses.

XLM-R's dictionary has 250k pieces; the embedding matrix and the output projection over them
dominate the cost of a small backbone (e5-small: 96M of its 118M parameters, most of each update's
time on a CPU).  A task whose data uses a few tens of thousands of pieces trains several times
faster with a pruned dictionary: ``fairseq-train`` maps every piece of the pruned dictionary onto
its row of the backbone's embeddings by name (SPEC §2.2), so nothing pretrained is lost for the
pieces kept, and text outside them becomes ``<unk>`` (the count is printed here, per file).

    python scripts/prune_dictionary.py --spm-model BACKBONE/sentencepiece.bpe.model \\
        --full-dict BACKBONE/dict.txt --out DATA/dict.txt DATA/ [--inputs-only EVAL_DIR ...]

Every ``*.jsonl`` / ``*.jsonl.gz`` under the given paths is read line by line (never whole);
``inputs`` and ``targets`` are both counted, except in files given with ``--inputs-only`` (use it
for evaluation files: their answers never shape the vocabulary).  Only pieces that the full
dictionary has are written, most frequent first, in fairseq's ``piece count`` format; a line that
is not a JSON object with string fields is reported as ``file:line`` and skipped.
"""
import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from fairseq_dlm.data.prune import count_pieces, jsonl_files, read_full_dict

logger = logging.getLogger("prune_dictionary")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="jsonl files or folders whose inputs and targets are counted")
    p.add_argument("--inputs-only", nargs="*", type=Path, default=[], metavar="PATH",
                   help="jsonl files or folders whose inputs only are counted (evaluation files)")
    p.add_argument("--spm-model", required=True, type=Path, help="the backbone's sentencepiece.bpe.model")
    p.add_argument("--full-dict", required=True, type=Path, help="the backbone's full dict.txt (XLM-R's pieces)")
    p.add_argument("--out", required=True, type=Path, help="the pruned dict.txt to write")
    p.add_argument("--min-count", type=int, default=1, help="keep pieces seen at least this often")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(levelname)s | %(message)s", level=logging.INFO, stream=sys.stderr)
    if a.min_count < 1:
        p.error("--min-count must be at least 1")
    if not a.spm_model.is_file():
        raise SystemExit(f"error: no SentencePiece model at {a.spm_model}")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(a.spm_model))
    full = read_full_dict(a.full_dict)
    known = set(full)
    counts: Counter = Counter()
    count_pieces(sp, jsonl_files(a.paths), ("inputs", "targets"), counts, known)
    if a.inputs_only:
        count_pieces(sp, jsonl_files(a.inputs_only), ("inputs",), counts, known)
    kept = sorted((piece for piece, c in counts.items() if c >= a.min_count), key=lambda s: (-counts[s], s))
    if not kept:
        raise SystemExit("error: no piece of the data is in the full dictionary: is --spm-model the backbone's?")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{piece} {counts[piece]}\n" for piece in kept)
    tmp.replace(a.out)
    total = sum(counts.values())
    covered = sum(counts[s] for s in kept)
    logger.info("wrote %s: %d of %d pieces (%.2f%% of the %d piece occurrences counted)", a.out, len(kept), len(full),
                100.0 * covered / max(total, 1), total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
