#!/usr/bin/env python
"""Turn models trained elsewhere into checkpoints of this plugin.

Subcommands:
  official   the paper's released models (HF-Trainer folders: args.json + checkpoint-<step>/, SPEC §9.4)
  hf         a HuggingFace directory written by scripts/export_hf.py (config.json, model.safetensors,
             tokenizer, dict.txt, optional length_head.safetensors)

Each writes OUT/checkpoint.pt with the dictionary and SentencePiece model next to it; load it with
`fairseq-generate DATA --path OUT/checkpoint.pt`, `scripts/eval_instruct.py --ckpt OUT` or
`fairseq_dlm.DiffusionLM.from_pretrained(OUT)`.

Examples:
  python scripts/convert_checkpoint.py official flan_v2.xxl.length --out ckpts/flan-xlmr-xxl \\
      --cache-dir cache             # the tokenizer of facebook/xlm-roberta-xxl from the HF cache
  python scripts/convert_checkpoint.py official flan_v2.base.length --out ckpts/flan-xlmr-base \\
      --tokenizer path/to/xlm-roberta-base
  python scripts/convert_checkpoint.py official my_llama_run --out ckpts/llama \\
      --base-model path/to/llama-7b-hf   # a LLaMA run (or a LoRA adapter folder) of the official trainer
  python scripts/convert_checkpoint.py hf exported/ --out ckpts/back
"""
import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    o = sub.add_parser("official", help="the paper's released model folder → plugin checkpoint")
    o.add_argument("src", help="unpacked official folder (args.json + checkpoint-<step>/), or one checkpoint-<step>/")
    o.add_argument("--out", required=True, help="output folder (checkpoint.pt, dict.txt, sentencepiece.bpe.model)")
    o.add_argument("--step", type=int, default=None,
                   help="convert checkpoint-STEP (default: the highest step, compared as a number)")
    o.add_argument("--tokenizer", default=None,
                   help="folder (or file) with the backbone's SentencePiece model (XLM-R: sentencepiece.bpe.model, "
                   "LLaMA: tokenizer.model), when the release has none; default: the release folder, the base model, "
                   "then args.json's pretrained name in --cache-dir")
    o.add_argument("--base-model", default=None,
                   help="local HF folder of the backbone the run started from (args.json's pretrained), when that "
                   "path is not local here: needed for LLaMA releases (config.json, tokenizer.model) and LoRA adapter "
                   "folders (the frozen base weights)")
    o.add_argument("--cache-dir", "--cache_dir", default=None,
                   help="HF cache folder where args.json's pretrained model (e.g. facebook/xlm-roberta-xxl) is found")
    o.add_argument("--config", default=None,
                   help="local HF folder whose config.json describes the backbone (needed only for sizes that match "
                   "no XLM-R preset)")
    o.add_argument("--data", default=None,
                   help="a task run's binarized data folder (dict.SRC.txt: the pruned dictionary it trained on), when "
                   "args.json's data_path is not local here")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    h = sub.add_parser("hf", help="exported HuggingFace directory → plugin checkpoint")
    h.add_argument("src", help="directory written by scripts/export_hf.py")
    h.add_argument("--out", required=True, help="output folder (checkpoint.pt, dict.txt, sentencepiece.bpe.model)")
    h.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def run(args) -> str:
    """Run one subcommand; returns the one-line summary."""
    if args.command == "official":
        from fairseq_dlm.convert.official import convert_official

        r = convert_official(args.src, args.out, tokenizer=args.tokenizer, config=args.config,
                             cache_dir=args.cache_dir, step=args.step, overwrite=args.overwrite,
                             base_model=args.base_model, data=args.data)
        lora = f", LoRA r={r['lora']['r']} on {','.join(r['lora']['target_modules'])}" if r.get("lora") else ""
        lora += f", {r['weights_dtype']} weights (loaded as float32)" if r.get("half_precision") else ""
        return (f"wrote {args.out}/checkpoint.pt: {r['backbone']} ({r['model_type']}, {r['layers']} × {r['hidden']}, "
                f"vocabulary {r['vocabulary']}, {'tied' if r['tied_lm_head'] else 'untied'} LM head, "
                f"{'with a' if r['length_head'] else 'no'} length head{lora}) from {r['checkpoint']}")
    from fairseq_dlm.convert.from_hf import convert_hf_dir

    r = convert_hf_dir(args.src, args.out, overwrite=args.overwrite)
    return f"wrote {args.out}/checkpoint.pt from {args.src} ({'with a' if r['length_head'] else 'no'} length head)"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    try:
        summary = run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"convert_checkpoint.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
