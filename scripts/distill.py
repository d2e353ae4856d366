#!/usr/bin/env python
"""Sequence-level knowledge distillation: a teacher re-decodes the sources of a binarized folder.

    python scripts/distill.py --data DATA-BIN --teacher TEACHER.pt --out DISTILLED-BIN [--beam 5]

The teacher is any fairseq checkpoint trained on this folder's dictionary: fairseq's ``transformer``
(``--task translation``, e.g. the one ``benchmarks/translation_quality.py`` trains), a CMLM
(``translation_lev``) or a diffusion model of this plugin.  ``DISTILLED-BIN`` has the same sources,
dictionary and test sets, and the teacher's hypotheses as the targets of train and valid; train a
diffusion model on it as on ``DATA-BIN``.  An interrupted run resumes where it stopped.  The
teacher's BLEU on valid is printed (and written to ``DISTILLED-BIN/README.md``).
"""
import argparse
import logging
import shlex
import sys
from dataclasses import fields
from typing import List, Optional

from fairseq_dlm.distillation import DistillOptions, distill
from fairseq_dlm.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    helps = {f.name: f.metadata["help"] for f in fields(DistillOptions)}
    defaults = DistillOptions(data="", teacher="", out="")
    p.add_argument("--data", required=True, help=helps["data"])
    p.add_argument("--teacher", required=True, help=helps["teacher"])
    p.add_argument("--out", required=True, help=helps["out"])
    p.add_argument("--splits", nargs="+", default=defaults.splits, help=helps["splits"])
    for name in ("beam", "steps", "batch_size"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                       help=f"{helps[name]} (default {getattr(defaults, name)})")
    p.add_argument("--cpu", action="store_true", help=helps["cpu"])
    p.add_argument("--trust-checkpoint", action="store_true", help=helps["trust_checkpoint"])
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stderr)
    try:
        report = distill(DistillOptions(**vars(args)), shlex.join(["python", "scripts/distill.py", *argv]))
    except UserError as e:  # a bad flag, folder or teacher: one line naming it
        print(f"distill.py: error: {e}", file=sys.stderr)
        return 1
    for split, n in report["splits"].items():
        print(f"{split}: {n} targets distilled")
    if report["valid_bleu"]:
        b = report["valid_bleu"]
        print(f"teacher BLEU on valid: {b['bleu']:.2f} ({b['signature']}, {b['n']} sentences)")
    print(f"output: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
