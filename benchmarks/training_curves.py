#!/usr/bin/env python
"""The main job's training curves: stage 1's masked-token NLL and stage 2's length NLL and accuracy
against updates, from its fairseq-train logs (``scripts/quickstart.py`` logs every 5 updates), and
the validation BLEU (oracle lengths, S = 10, all of Multi30k's valid) of every stage-1 checkpoint a
run saved with ``scripts/quickstart.py --save-every N``.

    python benchmarks/training_curves.py [--work runs/quickstart] [--out docs/figures/training_curves]

Prints the curves every 50 updates and writes OUT.json, OUT.png and OUT.svg.
"""
import argparse
import json
import re
from pathlib import Path

from fairseq_dlm.checkpoints import trained_updates
from fairseq_dlm.metrics.bleu import bleu_report
from fairseq_dlm.tools import fairseq_tool, run
from figures import pyplot, save  # benchmarks/figures.py, next to this script

ROOT = Path(__file__).resolve().parents[1]


def curve(train_log: Path, key: str):
    """``[(updates, value), ...]`` of ``key`` (e.g. ``nll_loss``) on a fairseq-train log's ``train_inner`` lines."""
    text = Path(train_log).read_text(encoding="utf-8")
    return [(int(u), float(v)) for v, u in re.findall(rf"train_inner .*? {key}=([-\d.]+),.*?num_updates=(\d+)", text)]


def valid_bleu(data: Path, ckpt: Path, out: Path, steps: int = 10) -> dict:
    """Valid BLEU of ``ckpt`` on the prepared folder ``data`` (oracle lengths, raw references);
    ``fairseq-generate``'s output goes to ``out``."""
    run([fairseq_tool("fairseq-generate"), data, "--user-dir", ROOT / "fairseq_dlm", "--task", "diffusion_lm",
         "--path", ckpt, "--gen-subset", "valid", "--oracle-length", "--iter-decode-max-iter", steps,
         "--post-process", "sentencepiece", "--cpu", "--max-tokens", 4096, "--num-workers", 0,
         "--results-path", out], log=out.with_suffix(".log"))
    report = bleu_report(out / "generate-valid.txt")
    report.pop("examples")
    return report


def interval_checkpoints(folder: Path):
    """``[(updates, path), ...]``: a stage-1 folder's ``checkpoint_E_U.pt`` files and its last checkpoint."""
    found = {int(m.group(1)): p for p in folder.glob("checkpoint_*_*.pt")
             if (m := re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", p.name))}
    last = folder / "checkpoint_last.pt"
    if found and last.is_file():
        found.setdefault(trained_updates(last), last)
    return sorted(found.items())


def draw(curves: dict, out: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(*zip(*curves["stage1_nll"]))
    left.set_xlabel("stage-1 updates")
    left.set_ylabel("masked tokens' NLL (bits)", color="tab:blue")
    left.set_title("stage 1: diffusive adaptation", fontsize=9)
    if curves.get("stage1_valid_bleu"):
        bleu = left.twinx()
        bleu.plot(*zip(*curves["stage1_valid_bleu"]), "o-", color="tab:red")
        bleu.set_ylabel("valid BLEU (oracle length, S=10)", color="tab:red")
    right.plot(*zip(*curves["stage2_length_nll"]), color="tab:orange")
    right.set_xlabel("stage-2 updates")
    right.set_ylabel("length NLL (bits)", color="tab:orange")
    acc = right.twinx()
    acc.plot(*zip(*curves["stage2_length_acc"]), color="tab:green")
    acc.set_ylabel("exact length accuracy (%)", color="tab:green")
    right.set_title("stage 2: length head (backbone frozen)", fontsize=9)
    save(fig, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/quickstart"), help="the main job's working directory")
    p.add_argument("--out", type=Path, default=Path("docs/figures/training_curves"), help="output path without suffix")
    a = p.parse_args(argv)
    logs = {stage: a.work / f"{stage}.log" for stage in ("stage1", "stage2")}
    for log in logs.values():
        if not log.is_file():
            raise SystemExit(f"{log} not found: run the main job (bash scripts/quickstart.sh --work {a.work}) first")
    curves = {"stage1_nll": curve(logs["stage1"], "nll_loss"), "stage2_length_nll": curve(logs["stage2"], "length_nll"),
              "stage2_length_acc": curve(logs["stage2"], "length_acc")}
    if not all(curves.values()):
        raise SystemExit(f"no train_inner lines with the expected keys in {a.work}/stage*.log")
    saved = interval_checkpoints(a.work / "ckpt_diffusion")
    if saved:
        data = a.work / "data-bin" / "multi30k.de-en.prompted.xlm-r-dict.bin"
        curves["stage1_valid_bleu"] = [(u, valid_bleu(data, ckpt, a.work / f"curve_valid_{u}")["bleu"])
                                       for u, ckpt in saved]
    else:
        print(f"no interval checkpoints in {a.work}/ckpt_diffusion: validation BLEU not drawn "
              "(scripts/quickstart.py --save-every 50 saves them)")
    print(f"{'curve':<18} {'updates':>8} {'value':>8}")
    for name, points in curves.items():
        for u, v in points:
            if u % 50 == 0:
                print(f"{name:<18} {u:>8} {v:>8.3f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(curves))
    draw(curves, a.out)
    print(f"wrote {a.out}.json, .png, .svg")


if __name__ == "__main__":
    main()
