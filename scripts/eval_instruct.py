#!/usr/bin/env python
"""Evaluate a diffusion checkpoint on the paper's instruction benchmarks (SPEC §7.3, §7.4).

    python scripts/eval_instruct.py --ckpt CKPT --data-dir DIR --files F1 [F2 ...] \\
        [--benchmark auto|mmlu|bbh-nlp|mgsm|tydiqa|iwslt14] [--max-iter S] \\
        [--oracle-length | --fixed-canvas-length N | --length-beam K] [--batch-size B] \\
        [--limit N] [--output-dir OUT] [--cpu] [--bf16]

``DIR`` holds the backbone's ``dict.txt`` and ``sentencepiece.bpe.model`` (or pass ``--dict`` /
``--spm-model``; default: the folders recorded in the checkpoint).  Each file (or folder) is
decoded and scored; ``OUT/{bench}.{name}.{shot}.json`` gets the settings, the scores and one
prediction per row, and a table per benchmark is printed.  Without ``--oracle-length`` or
``--fixed-canvas-length`` the length head predicts ``--length-beam`` lengths.
"""
import argparse
import logging
import sys

from fairseq_dlm import safe_load
from fairseq_dlm.diffusion.options import DEFAULTS
from fairseq_dlm.evaluation import DecodeSettings, evaluate_files, load_decoder, load_job
from fairseq_dlm.metrics.instruct import BENCHMARKS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint file, or a folder (checkpoint_best.pt, else the highest update)")
    p.add_argument("--files", nargs="+", required=True, help="evaluation jsonl(.gz) files or folders")
    p.add_argument("--data-dir", help="folder with dict.txt and sentencepiece.bpe.model (default: the checkpoint's)")
    p.add_argument("--spm-model", help="SentencePiece model (default: DATA/sentencepiece.bpe.model)")
    p.add_argument("--dict", help="fairseq dictionary (default: DATA/dict.txt)")
    p.add_argument("--benchmark", default="auto", choices=["auto", *BENCHMARKS],
                   help="benchmark of every file (default: from each path)")
    p.add_argument("--max-iter", type=int, default=DEFAULTS.max_iter, help="denoising steps S (paper: MMLU/BBH 1, TyDiQA 10, IWSLT/MGSM 50)")
    canvas = p.add_mutually_exclusive_group()
    canvas.add_argument("--oracle-length", action="store_true", help="canvas = the target's length (SPEC §6.3)")
    canvas.add_argument("--fixed-canvas-length", type=int, metavar="N",
                        help="every canvas has N slots (the leak-free MGSM variant of SPEC §7.4)")
    p.add_argument("--length-beam", type=int, default=DEFAULTS.length_beam, help="predicted lengths per row (length head)")
    p.add_argument("--response-room", type=int, default=64,
                   help="with predicted lengths: slots kept free when long prompts are cut from the left")
    p.add_argument("--decoding-strategy", default=DEFAULTS.strategy, help="see fairseq-generate --decoding-strategy")
    p.add_argument("--suppress-special-tokens", action="store_true")
    p.add_argument("--batch-size", type=int, default=8, help="rows per batch")
    p.add_argument("--limit", type=int, help="evaluate only the first N rows of each group (BBH task, TyDiQA "
                   "language, MMLU subject; a one-group file: its first N rows), a stated subset")
    p.add_argument("--output-dir", help="write {bench}.{name}.{shot}.json files here")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of sampled decoding strategies")
    p.add_argument("--cpu", action="store_true", help="decode on CPU even when CUDA is available")
    p.add_argument("--bf16", action="store_true", help="forward passes under bfloat16 autocast")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load a checkpoint that holds objects beyond what fairseq checkpoints hold (unpickling it "
                   "can run code: only files from a source you trust)")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> DecodeSettings:
    canvas = "oracle" if args.oracle_length else "fixed" if args.fixed_canvas_length else "predicted"
    return DecodeSettings(
        max_iter=args.max_iter, canvas=canvas, fixed_canvas_length=args.fixed_canvas_length,
        length_beam=args.length_beam, response_room=args.response_room, batch_size=args.batch_size,
        decoding_strategy=args.decoding_strategy, suppress_special_tokens=args.suppress_special_tokens,
        seed=args.seed, bf16=args.bf16,
    )


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        stream=sys.stderr)
    args = parse_args(argv)
    settings = settings_from_args(args)
    for path in args.files:  # fail on a bad file before loading the model
        load_job(path, args.benchmark, args.limit)
    safe_load.set_trusted(args.trust_checkpoint)
    decoder = load_decoder(args.ckpt, args.data_dir, args.spm_model, args.dict, cpu=args.cpu)
    reports = evaluate_files(args.files, decoder, settings, args.benchmark, args.limit, args.output_dir,
                             progress=not args.no_progress)
    for report in reports:
        print(report["table"], flush=True)
        if report.get("limit"):
            limit = report["limit"]
            print(f"  ({limit['rows']} of {limit['of']} rows: the first {limit['per_group']} "
                  "of each group, --limit)", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError, KeyError, safe_load.UntrustedCheckpointError) as e:
        # EvalFileError / UnknownBenchmarkError are ValueErrors
        print(f"eval_instruct: error: {e}", file=sys.stderr)
        sys.exit(2)
