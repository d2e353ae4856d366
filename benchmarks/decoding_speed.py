#!/usr/bin/env python
"""Decoding speed of the prompt cache, the length beam and int8 (issue 12), in process.

Decodes one binarized test split with a ``full``-attention checkpoint and, if given, a
``prefix_lm`` one (both with length heads, trained on the same data for the same budget), under
each configuration, and prints one table: BLEU, sentences/second, network evaluations (NFE) and
backbone tokens per sentence (prompt passes included); writes the same as JSON.

    python benchmarks/decoding_speed.py DATA_BIN --full CKPT [--prefix CKPT] [--steps 10] \\
        [--length-beams 1 3] [--post-process sentencepiece] [--json out.json]

Configurations (each at every ``--length-beams`` value):
  full                  today's decoder: the whole canvas every step (R = 1, exact)
  full R=2 / R=5 / R=0  full attention, prompt keys/values refreshed every R steps (0 = never): approximate
  full int8             dynamic int8 linear layers (CPU)
  prefix_lm             prefix-LM attention, prompt cache once per example (exact)
  prefix_lm no cache    the same model over the whole canvas (the reference the cache must equal)

Sentences/second are wall-clock on this machine (``torch.get_num_threads()`` threads), after one
warm-up batch; run nothing else meanwhile.  fairseq's autoregressive and CMLM baselines are trained
and decoded by ``benchmarks/translation_quality.py``.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from fairseq import checkpoint_utils, utils

from decoding_nfe import decode  # this folder (the script's, first on sys.path): BLEU, NFE and sentences/s

import fairseq_dlm
from fairseq_dlm.generator import DiffusionGenerator

fairseq_dlm.register()

CONFIGS = [
    ("full", "full", {}),
    ("full R=2", "full", {"prompt_cache_refresh": 2}),
    ("full R=5", "full", {"prompt_cache_refresh": 5}),
    ("full R=0 (never refreshed)", "full", {"prompt_cache_refresh": 0}),
    ("full int8", "full", {"quantize_dynamic": True}),
    ("prefix_lm (cache)", "prefix", {}),
    ("prefix_lm no cache", "prefix", {"prompt_cache": False}),
]


def load(path, data, split):
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data})
    task.load_dataset(split)
    return models[0].eval(), task


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="fairseq-preprocess output directory")
    p.add_argument("--full", required=True, help="full-attention checkpoint with a length head")
    p.add_argument("--prefix", default=None, help="prefix_lm checkpoint with a length head (same data and budget)")
    p.add_argument("--split", default="test")
    p.add_argument("--steps", type=int, default=10, help="--iter-decode-max-iter")
    p.add_argument("--length-beams", type=int, nargs="+", default=[1, 3])
    p.add_argument("--batch-size", type=int, default=50, help="sentences per batch")
    p.add_argument("--post-process", default=None, help="e.g. sentencepiece")
    p.add_argument("--configs", nargs="*", default=None, help="names of the configurations to run (default: all)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    paths = {"full": a.full, "prefix": a.prefix}
    rows, loaded = [], {}
    for name, which, options in CONFIGS:
        if a.configs and name not in a.configs or paths[which] is None:
            continue
        for beam in a.length_beams:
            if options.get("quantize_dynamic"):  # int8 replaces the weights in place: a copy of its own
                model, task = load(paths[which], a.data, a.split)
            else:
                if which not in loaded:
                    loaded[which] = load(paths[which], a.data, a.split)
                model, task = loaded[which]
            ds = task.datasets[a.split]
            gen = DiffusionGenerator(task.target_dictionary, max_iter=a.steps, length_beam=beam, **options)
            warm = ds.collater([ds[i] for i in range(min(a.batch_size, len(ds)))])
            gen.generate([model], warm if not torch.cuda.is_available() else utils.move_to_cuda(warm))
            gen.stats = {"sentences": 0, "nfe": 0, "forward_tokens": 0}
            result = decode(model, task, a.split, gen, a.batch_size, a.post_process)
            result.update(config=name, length_beam=beam,
                          tokens_per_sentence=round(gen.stats["forward_tokens"] / max(gen.stats["sentences"], 1), 1))
            rows.append(result)
            print(f"{name:28s} LB={beam}  BLEU {result['bleu']:6.2f}  {result['sentences_per_second']:7.1f} sent/s  "
                  f"NFE {result['nfe_per_sentence']:5.1f}  backbone tokens {result['tokens_per_sentence']:8.1f}",
                  flush=True)
    print("\n| configuration | LB | BLEU | sentences/s | NFE/sentence | backbone tokens/sentence |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['length_beam']} | {r['bleu']} | {r['sentences_per_second']} | "
              f"{r['nfe_per_sentence']} | {r['tokens_per_sentence']} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"threads": torch.get_num_threads(), "steps": a.steps, "rows": rows},
                                           indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
