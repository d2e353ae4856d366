#!/usr/bin/env python
"""Export a checkpoint of this plugin to a standard HuggingFace directory.

OUT gets config.json + model.safetensors (AutoModelForMaskedLM.from_pretrained(OUT)), the tokenizer
(tokenizer.json, tokenizer_config.json, sentencepiece.bpe.model; AutoTokenizer ids = dictionary
indices), dict.txt, length_head.safetensors (when the model has a length head) and
diffusion_config.json (task, prompt template, decoding defaults, vocabulary full|pruned, source).
A pruned vocabulary is exported as it is, with a tokenizer that maps to it.  Without a SentencePiece
model (a diffusion_lm checkpoint of pre-encoded data) the tokenizer maps whitespace-separated
symbols; pass --spm-model FILE for one of raw text.

Back to the plugin:
  fairseq-train DATA ... --pretrained OUT [--length-head]      (the length head is taken from OUT too)
  python scripts/convert_checkpoint.py hf OUT --out CKPT_DIR   (identical logits)

Examples:
  python scripts/export_hf.py checkpoints/mt --out exported/mt-xlmr
  python scripts/export_hf.py ckpt/checkpoint_best.pt --out exported/x --data data-bin/x --spm-model spm.model
"""
import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT",
                   help="checkpoint file, or a folder (checkpoint_best.pt, else the highest update, else "
                   "checkpoint_last.pt, else checkpoint.pt)")
    p.add_argument("--out", required=True, help="output directory (must not exist, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier export in --out (other files are kept)")
    p.add_argument("--data", default=None,
                   help="folder with the dictionary the model was trained with (default: the checkpoint's data)")
    p.add_argument("--spm-model", default=None,
                   help="SentencePiece model of the data (default: the task's spm_model, DATA/sentencepiece.bpe.model "
                   "or the checkpoint's --sentencepiece-model; none: a whitespace tokenizer is exported)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="read a checkpoint that holds objects beyond what fairseq checkpoints hold (unpickling it "
                   "can run code: only files from a source you trust)")
    p.add_argument("--merge-lora", action="store_true",
                   help="fold the checkpoint's LoRA adapters into the exported weights (a plain HF model); without "
                   "it a LoRA checkpoint exports its base weights and peft's adapter folder OUT/lora_adapter")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    if os.path.lexists(args.out) and not args.overwrite:  # before fairseq and torch load (seconds)
        print(f"export_hf.py: error: {args.out} already exists; pass --overwrite to replace the export there, "
              "or another --out", file=sys.stderr)
        return 2
    from fairseq_dlm import safe_load
    from fairseq_dlm.convert.export_hf import export_checkpoint

    safe_load.set_trusted(args.trust_checkpoint)
    try:
        r = export_checkpoint(args.checkpoint, args.out, data=args.data, spm_model=args.spm_model,
                              overwrite=args.overwrite, merge_lora=args.merge_lora)
    except (FileNotFoundError, ValueError, safe_load.UntrustedCheckpointError) as e:
        print(f"export_hf.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {r['task']} model, {r['vocabulary']} vocabulary of {r['vocabulary_size']}, "
          f"{r['tokenizer']} tokenizer, {'with a' if r['length_head'] else 'no'} length head "
          f"(from {r['source_checkpoint']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
