#!/usr/bin/env python
"""Encode text files into SentencePiece pieces, one line in, one line out (no line is dropped).

Usage: python scripts/spm_encode.py --model sentencepiece.bpe.model --inputs a.txt b.txt --outputs a.spm b.spm
Whitespace is collapsed first (``" ".join(line.split())``) so ids match the HF tokenizer
(../shared/docs/DATA.md §3).  ``-`` reads stdin / writes stdout.
"""
import argparse
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="SentencePiece model file")
    p.add_argument("--inputs", nargs="+", default=["-"], help="input files ('-' = stdin)")
    p.add_argument("--outputs", nargs="+", default=["-"], help="output files ('-' = stdout)")
    a = p.parse_args()
    if len(a.inputs) != len(a.outputs):
        p.error("--inputs and --outputs need the same number of files")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=a.model)
    for src, dst in zip(a.inputs, a.outputs):
        fin = sys.stdin if src == "-" else open(src, encoding="utf-8")
        fout = sys.stdout if dst == "-" else open(dst, "w", encoding="utf-8")
        with fin, fout:
            for line in fin:
                fout.write(" ".join(sp.encode(" ".join(line.split()), out_type=str)) + "\n")


if __name__ == "__main__":
    main()
