#!/usr/bin/env python
"""Average the weights of several fairseq checkpoints, or extract the EMA weights of ``--store-ema``.

The installed fairseq package does not ship fairseq's repository script
``scripts/average_checkpoints.py``; this one takes the same options and does the same thing for
this plugin's checkpoints (length-head checkpoints included)::

    # the last 5 checkpoint_E_U.pt of a run (--save-interval-updates), newest first
    python scripts/average_checkpoints.py --inputs SAVE_DIR --num-update-checkpoints 5 --output avg.pt
    # the last 3 checkpointE.pt (epoch checkpoints), none after epoch 20
    python scripts/average_checkpoints.py --inputs SAVE_DIR --num-epoch-checkpoints 3 \\
        --checkpoint-upper-bound 20 --output avg.pt
    # named files
    python scripts/average_checkpoints.py --inputs a.pt b.pt --output avg.pt
    # the EMA weights of a --store-ema run (of one checkpoint, or averaged over several)
    python scripts/average_checkpoints.py --inputs SAVE_DIR/checkpoint_best.pt --ema --output ema.pt

The output decodes like any checkpoint (``fairseq-generate --path avg.pt``).  Every floating-point
tensor of ``model`` is the mean of the inputs' tensors (summed in float64, stored in its own dtype);
other tensors and every other entry (``cfg``, the optimizer state, ``extra_state``...) are the first
input's, which is the newest with ``--num-*-checkpoints``, as in fairseq.  Tied tensors (the LM
head's decoder and the word embeddings, both saved) are averaged key by key and so stay equal.
``extra_state["averaged"]`` records the inputs.

``--ema`` averages ``extra_state["ema"]`` (the EMA model fairseq-train saves under
``--store-ema``) instead of ``model`` and writes it as ``model``; ``extra_state["ema"]`` then holds
the same weights (so that a resumed ``--store-ema`` run keeps them) and the stale
``ema_fp32_params`` are dropped (fairseq rebuilds them from ``ema`` under ``--ema-fp32``).

Inputs must hold the same tensor names and shapes (else: an error naming the two files); an
existing ``--output`` is kept unless ``--overwrite``; the output is written to a temporary file
next to it and moved into place, so that an interrupted run leaves no partial checkpoint.
"""
import argparse
import logging
import os
import sys
from typing import List

from fairseq_dlm import safe_load
from fairseq_dlm.checkpoints.average import AverageError, average_checkpoints, last_checkpoints, save_atomically

logger = logging.getLogger("average_checkpoints")


def input_paths(args) -> List[str]:
    """The checkpoint files that ``--inputs`` and ``--num-*-checkpoints`` name, newest first."""
    count = args.num_update_checkpoints or args.num_epoch_checkpoints
    if count is not None:
        if len(args.inputs) != 1 or not os.path.isdir(args.inputs[0]):
            raise AverageError("--num-update-checkpoints/--num-epoch-checkpoints take one folder as --inputs, "
                               f"got {' '.join(args.inputs)}")
        return last_checkpoints(args.inputs[0], count, args.num_update_checkpoints is not None,
                                args.checkpoint_upper_bound)
    for path in args.inputs:
        if os.path.isdir(path):
            raise AverageError(f"{path} is a folder: pass --num-update-checkpoints N or --num-epoch-checkpoints N "
                               "to average its last N checkpoints, or name the files")
        if not os.path.isfile(path):
            raise AverageError(f"no checkpoint file {path}")
    return list(args.inputs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True, metavar="PATH",
                        help="checkpoint files, or one folder with --num-update-checkpoints/--num-epoch-checkpoints")
    parser.add_argument("--output", required=True, metavar="FILE", help="the checkpoint to write")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--num-epoch-checkpoints", type=int, metavar="N",
                       help="average the last N checkpointE.pt of the --inputs folder")
    count.add_argument("--num-update-checkpoints", type=int, metavar="N",
                       help="average the last N checkpoint_E_U.pt of the --inputs folder")
    parser.add_argument("--checkpoint-upper-bound", type=int, metavar="N",
                        help="with --num-*-checkpoints: ignore checkpoints numbered above this epoch/update")
    parser.add_argument("--ema", action="store_true",
                        help="average (or extract, for one input) the EMA weights saved by --store-ema "
                             "instead of the model weights")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read inputs that hold objects beyond what fairseq checkpoints hold (unpickling them "
                             "can run code: only files from a source you trust)")
    args = parser.parse_args(argv)
    for flag in ("num_epoch_checkpoints", "num_update_checkpoints"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.checkpoint_upper_bound is not None and not (args.num_epoch_checkpoints or args.num_update_checkpoints):
        parser.error("--checkpoint-upper-bound requires --num-epoch-checkpoints or --num-update-checkpoints")
    return args


def main(argv=None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stderr)
    args = parse_args(argv)
    safe_load.set_trusted(args.trust_checkpoint)
    try:
        if os.path.exists(args.output) and not args.overwrite:  # before reading any input
            raise AverageError(f"{args.output} exists; pass --overwrite to replace it")
        paths = input_paths(args)
        what = "EMA weights" if args.ema else "weights"
        if len(paths) == 1:
            logger.info("copying the %s of %s", what, paths[0])
        else:
            logger.info("averaging the %s of %d checkpoints: %s", what, len(paths), ", ".join(paths))
        state = average_checkpoints(paths, ema=args.ema)
        save_atomically(state, args.output, args.overwrite)
    except AverageError as e:
        logger.error("%s", e)
        return 1
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
