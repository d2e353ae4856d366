#!/usr/bin/env python
"""Which training recipe for the main job?  Variants of the quickstart's recipe, one factor at a
time, at the same update budget, compared on Multi30k's **validation** set.

Every variant is :data:`fairseq_dlm.recipes.adaptation.SWEEP_BASE` (the quickstart's recipe before
the sweep) with one change (``VARIANTS``): the
learning rate and the warm-up, the tokens per update (``--update-freq 2``), all 12 backbone layers
instead of 6 (at equal updates, and at equal training time: its checkpoint whose training clock is
closest to the base run's), constant instead of linear loss weighting, label smoothing, no dropout,
and the distilled targets of ``scripts/distill.py`` (``--distilled``).  ``--combine A B`` adds a
variant with the changes of A and B together.  Each variant trains stage 1 with ``fairseq-train``
for ``--updates`` updates and is decoded on valid with oracle lengths (``--steps`` steps), so that
the denoiser alone is compared; BLEU is always against the raw references.  A variant already
measured in ``--work`` with the same settings is not trained again.

Output: a table (valid BLEU cased and lower-cased, seconds per update, difference to the base), a
JSON file and a figure (PNG + SVG: valid BLEU per variant, the masked tokens' training NLL against
updates).

    python benchmarks/recipe_sweep.py --data DATA_BIN --backbone BACKBONE_DIR [--distilled DISTILLED_BIN] \
        [--updates 300] [--jobs 2 --threads 1] [--only base "lr 1e-3"] [--combine "lr 1e-3" "dropout 0"]

``--jobs 2 --threads 1`` trains two variants at once with one thread each (on 2 cores this measures
more variants per hour; all variants of one sweep must use the same thread count).
"""
import argparse
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

from fairseq_dlm.checkpoints import training_seconds
from fairseq_dlm.recipes.adaptation import CPU, SWEEP_BASE, AdaptationRecipe
from fairseq_dlm.tools import fairseq_tool, run
from figures import pyplot, save  # benchmarks/figures.py and training_curves.py, next to this script
from training_curves import curve, valid_bleu

ROOT = Path(__file__).resolve().parents[1]
BASE = "base"
DISTILLED = "distilled data"
TWELVE = "12 layers"
TWELVE_EQUAL_TIME = "12 layers, equal time"
VARIANTS = {  # name -> changes to SWEEP_BASE (DISTILLED: the same recipe, distilled targets)
    BASE: {},
    "lr 1e-3": {"lr": 1e-3},
    "lr 2e-3": {"lr": 2e-3},
    "lr 1e-3, warmup 150": {"lr": 1e-3, "warmup_updates": 150},
    "update-freq 2": {"update_freq": 2},
    TWELVE: {"backbone_layers": 0},
    "constant weighting": {"weighting": "constant"},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "dropout 0": {"dropout": 0.0},
    DISTILLED: {},
}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", name).strip("_")


def loss_curve(train_log: Path):
    """``[(updates, nll_loss), ...]`` of a fairseq-train log (the masked tokens' NLL in bits:
    comparable across loss weightings, unlike ``loss``)."""
    return curve(train_log, "nll_loss")


def evaluate(a, ckpt: Path, out: Path) -> dict:
    """Valid BLEU of ``ckpt`` (oracle lengths, raw references of ``--data``)."""
    return valid_bleu(a.data, ckpt, out, a.steps)


def claim(work: Path) -> bool:
    """Take ``work`` for this process (``WORK/<slug>.lock`` holds its pid); False while another live
    process holds it, so that several sweeps can share one ``--work``."""
    lock = work.with_name(work.name + ".lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            return False  # a live process measures this variant
        except (ValueError, ProcessLookupError):
            lock.unlink()  # left by a process that is gone
            return claim(work)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def train_variant(a, name: str, recipe: AdaptationRecipe, data: Path):
    """Train stage 1 of one variant in ``WORK/<slug>`` and score it on valid; reuse a finished one.
    None when another process is measuring it."""
    work = Path(a.work) / slug(name)
    done = work / "result.json"
    settings = {"recipe": asdict(recipe), "data": str(data), "steps": a.steps, "threads": a.threads}
    if done.exists():
        result = json.loads(done.read_text())
        if result["settings"] == settings:
            result["loss_curve"] = loss_curve(work / "train.log")  # read again: the log is the source
            print(f"[{name}] measured before: valid BLEU {result['bleu']:.2f} ({done})", flush=True)
            return result
    if not claim(work):
        print(f"[{name}] another sweep is measuring it ({work}.lock); left out of this table", flush=True)
        return None
    try:
        return _train_variant(a, name, recipe, data, work, settings)
    finally:
        work.with_name(work.name + ".lock").unlink()


def _train_variant(a, name, recipe, data, work, settings) -> dict:
    done = work / "result.json"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    keep = ["--save-interval-updates", 25, "--keep-interval-updates", -1] if name == TWELVE else []
    t0 = time.time()
    run([fairseq_tool("fairseq-train"), data, "--user-dir", ROOT / "fairseq_dlm", "--task", "diffusion_lm",
         "--arch", "xlmr_diffusion_base", "--pretrained", a.backbone, *recipe.model_args(), *recipe.stage1_args(),
         "--optimizer", "torch_adamw", "--weight-decay", 0.01, "--adam-betas", "(0.9,0.98)", "--clip-norm", 1.0,
         "--seed", a.seed, "--cpu", "--no-epoch-checkpoints", "--disable-validation", "--log-format", "simple",
         "--log-interval", 10, "--num-workers", 0, *keep, "--save-dir", work / "ckpt"], log=work / "train.log")
    ckpt = work / "ckpt" / "checkpoint_last.pt"
    seconds = training_seconds(ckpt)
    result = {"settings": settings, "changes": recipe.differences(SWEEP_BASE), "updates": recipe.updates,
              "train_seconds": round(seconds, 1), "seconds_per_update": round(seconds / recipe.updates, 3),
              "wall_seconds": round(time.time() - t0, 1), "loss_curve": loss_curve(work / "train.log"),
              **evaluate(a, ckpt, work / "gen")}
    done.write_text(json.dumps(result, indent=2))
    print(f"[{name}] valid BLEU {result['bleu']:.2f} after {recipe.updates} updates "
          f"({result['seconds_per_update']:.2f} s/update)", flush=True)
    return result


def equal_time(a, results: dict) -> dict:
    """The 12-layer run's checkpoint whose training clock is closest to the base run's, scored."""
    base_seconds = results[BASE]["train_seconds"]
    ckpts = sorted((Path(a.work) / slug(TWELVE) / "ckpt").glob("checkpoint_*_*.pt"),
                   key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    ckpt = min(ckpts, key=lambda p: abs(training_seconds(p) - base_seconds))
    updates = int(ckpt.stem.rsplit("_", 1)[1])
    out = Path(a.work) / slug(TWELVE_EQUAL_TIME)
    out.mkdir(exist_ok=True)
    done = out / "result.json"
    scored = json.loads(done.read_text()) if done.exists() else {}
    if scored.get("checkpoint") == str(ckpt):
        return scored  # this checkpoint was scored before
    result = {"changes": {"backbone_layers": [SWEEP_BASE.backbone_layers, 0]}, "updates": updates,
              "train_seconds": round(training_seconds(ckpt), 1), "checkpoint": str(ckpt),
              **evaluate(a, ckpt, out / "gen")}
    done.write_text(json.dumps(result, indent=2))
    return result


def draw(results: dict, path: Path, updates: int) -> None:
    plt = pyplot()
    names = sorted(results, key=lambda n: results[n]["bleu"])
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 0.35 * len(names) + 2.5))
    colours = ["tab:green" if n == BASE else "tab:blue" for n in names]
    bars.barh(names, [results[n]["bleu"] for n in names], color=colours)
    bars.axvline(results[BASE]["bleu"], color="grey", linestyle="--", linewidth=1)
    for i, n in enumerate(names):
        bars.text(results[n]["bleu"], i, f" {results[n]['bleu']:.2f}", va="center", fontsize=8)
    bars.set_xlabel("valid BLEU (oracle length)")
    bars.set_title(f"validation set, stage 1 of {updates} updates")
    for n in names:
        curve = results[n].get("loss_curve")
        if curve:
            curves.plot(*zip(*curve), label=n, linewidth=2 if n == BASE else 1)
    curves.set_xlabel("updates")
    curves.set_ylabel("training NLL of the masked tokens (bits)")
    curves.legend(fontsize=7)
    save(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="prepared Multi30k folder (scripts/prepare_translation.py)")
    p.add_argument("--backbone", required=True, type=Path, help="converted backbone (scripts/convert_backbone.py)")
    p.add_argument("--distilled", type=Path, default=None,
                   help="distilled copy of --data (scripts/distill.py); adds the 'distilled data' variant")
    p.add_argument("--updates", type=int, default=SWEEP_BASE.updates, help="stage-1 updates of every variant")
    p.add_argument("--steps", type=int, default=10, help="decoding steps on valid")
    p.add_argument("--seed", type=int, default=1, help="training seed of every variant")
    p.add_argument("--only", nargs="+", default=None, metavar="VARIANT", help=f"variants to run, of: {list(VARIANTS)}")
    p.add_argument("--combine", nargs="+", action="append", default=[], metavar="VARIANT",
                   help="also run the changes of these variants together (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    p.add_argument("--threads", type=int, default=None, help="torch threads of each run (OMP_NUM_THREADS)")
    p.add_argument("--work", default=str(ROOT / "runs" / "recipe_sweep"), help="working directory (reused)")
    p.add_argument("--json", type=Path, default=None, help="results JSON (default WORK/results.json)")
    a = p.parse_args(argv)
    for path, flag in ((a.data, "--data"), (a.backbone, "--backbone"), (a.distilled, "--distilled")):
        if path is not None and not path.is_dir():
            p.error(f"{flag} {path}: no such folder")
    unknown = [n for n in (a.only or []) + sum(a.combine, []) if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    names = list(a.only or VARIANTS)
    if DISTILLED in names and a.distilled is None:
        if a.only:
            p.error("the 'distilled data' variant needs --distilled DISTILLED_BIN (scripts/distill.py)")
        names.remove(DISTILLED)
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(a.threads)
    plan = {n: (replace(SWEEP_BASE, updates=a.updates, **VARIANTS[n]), a.distilled if n == DISTILLED else a.data)
            for n in names}
    for group in a.combine:
        changes = {k: v for n in group for k, v in VARIANTS[n].items()}
        plan[" + ".join(group)] = (replace(SWEEP_BASE, updates=a.updates, **changes),
                                   a.distilled if DISTILLED in group else a.data)
    if TWELVE in plan and BASE not in plan:
        plan = {BASE: (replace(SWEEP_BASE, updates=a.updates), a.data), **plan}  # the equal-time row needs the base
    Path(a.work).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = {n: pool.submit(train_variant, a, n, *spec) for n, spec in plan.items()}
        results = {n: r for n, f in futures.items() if (r := f.result()) is not None}
    if TWELVE in results and BASE in results:
        results[TWELVE_EQUAL_TIME] = equal_time(a, results)

    base = results.get(BASE, {}).get("bleu")
    chosen = max(results, key=lambda n: results[n]["bleu"])
    out = Path(a.json or Path(a.work) / "results.json")
    out.write_text(json.dumps({"device": f"CPU ({os.cpu_count()} cores)", "threads": a.threads, "jobs": a.jobs,
                               "updates": a.updates, "steps": a.steps, "base_recipe": asdict(SWEEP_BASE),
                               "quickstart_recipe": asdict(CPU), "best_on_valid": chosen, "results": results},
                              indent=2))
    draw(results, out.with_name("recipe_sweep"), a.updates)
    sentences = next(iter(results.values()))["sentences"]
    print(f"\nvalid ({sentences} sentences), oracle length, {a.steps} steps; stage 1 of the recipe before "
          f"the sweep with one change each, {a.updates} updates unless stated")
    print(f"{'variant':<34} {'updates':>7} {'BLEU':>6} {'BLEU lc':>8} {'vs base':>8} {'s/update':>9}")
    for n in sorted(results, key=lambda n: -results[n]["bleu"]):
        r = results[n]
        delta = "" if base is None else f"{r['bleu'] - base:+.2f}"
        spu = r["train_seconds"] / r["updates"]
        print(f"{n:<34} {r['updates']:>7} {r['bleu']:>6.2f} {r['bleu_lc']:>8.2f} {delta:>8} {spu:>9.2f}")
    print(f"sacrebleu {next(iter(results.values()))['signature']}")
    print(f"best on valid: {chosen}\nwrote {out}, {out.with_name('recipe_sweep.png')} and .svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
