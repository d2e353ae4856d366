#!/usr/bin/env python
"""Quality and network evaluations (NFE) per sentence of the decoding options (issue 3).

Decodes a binarized test split with a diffusion_lm checkpoint (with a length head) under several
generator configurations, in process, and prints a table of sacrebleu BLEU, mean NFE per
sentence (length prediction included) and sentences/second; writes the same as JSON.

    python benchmarks/decoding_nfe.py DATA_BIN CKPT [--steps 10] [--beam 3] [--json out.json]
"""
import argparse
import json
import logging
import time

import torch
from fairseq import checkpoint_utils, utils

from fairseq_dlm.generator import DiffusionGenerator
from fairseq_dlm.metrics import get_metric

CONFIGS = {
    "all steps (no early exit)": dict(early_exit="none"),
    "exact early exit, fixed points only": dict(early_exit="exact", cycle_window=1),
    "exact early exit (default)": dict(early_exit="exact"),
    "threshold tau=0.9": dict(strategy="threshold", confidence_threshold=0.9),
    "threshold tau=0.7": dict(strategy="threshold", confidence_threshold=0.7),
    "threshold tau=0.5": dict(strategy="threshold", confidence_threshold=0.5),
    "patience 1 (lossy)": dict(early_exit="patience", exit_patience=1),
    "patience 2 (lossy)": dict(early_exit="patience", exit_patience=2),
    "blocks of 4 (semi-AR)": dict(block_length=4),
    "oracle length, exact early exit": dict(oracle_length=True),
}


def decode(model, task, split, gen, batch_size, post_process):
    ds = task.datasets[split]
    d = task.target_dictionary
    hyps, refs, nfe = {}, {}, 0
    start = time.perf_counter()
    for lo in range(0, len(ds), batch_size):
        ids = list(range(lo, min(lo + batch_size, len(ds))))
        batch = utils.move_to_cuda(ds.collater([ds[i] for i in ids])) if torch.cuda.is_available() else ds.collater([ds[i] for i in ids])
        for i, h in zip(ids, gen.generate([model], batch)):
            hyps[i] = d.string(h[0]["tokens"], post_process)
            refs[i] = d.string(utils.strip_pad(ds.tgt[i], d.pad()), post_process)
            nfe += h[0]["nfe"]
    elapsed = time.perf_counter() - start
    order = sorted(hyps)
    bleu = get_metric("bleu").score([hyps[i] for i in order], [refs[i] for i in order])
    return {"bleu": round(bleu.value, 2), "nfe_per_sentence": round(nfe / len(order), 2),
            "sentences_per_second": round(len(order) / elapsed, 1), "signature": bleu.signature}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="fairseq-preprocess output directory")
    p.add_argument("checkpoint", help="diffusion_lm checkpoint with a length head")
    p.add_argument("--split", default="test")
    p.add_argument("--steps", type=int, default=10, help="--iter-decode-max-iter")
    p.add_argument("--beam", type=int, default=3, help="length beam")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--post-process", default=None, help="e.g. sentencepiece")
    p.add_argument("--json", default="decoding_nfe.json", help="where to write the results")
    p.add_argument("--configs", nargs="*", default=None,
                   help="run only the configurations whose name contains one of these strings")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([a.checkpoint], arg_overrides={"data": a.data})
    model = models[0].eval()
    if torch.cuda.is_available():
        model.cuda()
    task.load_dataset(a.split)
    rows = []
    for name, opts in CONFIGS.items():
        if a.configs and not any(c in name for c in a.configs):
            continue
        gen = DiffusionGenerator(task.target_dictionary, max_iter=a.steps,
                                 length_beam=1 if opts.get("oracle_length") else a.beam, **opts)
        rows.append({"config": name, **decode(model, task, a.split, gen, a.batch_size, a.post_process)})
    width = max(len(r["config"]) for r in rows)
    print(f"{'config':<{width}}  {'BLEU':>6}  {'NFE/sent':>8}  {'sent/s':>7}")
    for r in rows:
        print(f"{r['config']:<{width}}  {r['bleu']:>6.2f}  {r['nfe_per_sentence']:>8.2f}  {r['sentences_per_second']:>7.1f}")
    print(f"steps S={a.steps}, length beam={a.beam}; sacrebleu {rows[0]['signature']}")
    with open(a.json, "w") as f:
        json.dump({"steps": a.steps, "beam": a.beam, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
