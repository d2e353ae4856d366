#!/usr/bin/env python
"""Multi30k de→en quality benchmark: four systems (six with distilled data), the same budget.

Systems (all trained with fairseq-train on the same binarized, prompted, SentencePiece data):
  1. dlm_pretrained  fairseq_dlm from the converted pretrained backbone (+ length head), LB=3
  2. dlm_scratch     the same architecture from random initialisation (label smoothing 0.1), LB=3
  3. cmlm            fairseq's CMLM (--task translation_lev --arch cmlm_transformer), LB=3 (1 on GPU: B8)
  4. transformer     fairseq's autoregressive transformer of comparable size, beam 5 (and greedy)
The diffusion systems train with the main job's recipe (``fairseq_dlm.recipes.adaptation``).
``--distilled DIR`` (``scripts/distill.py``) adds ``dlm_distilled`` and ``cmlm_distilled``: the
same systems trained on the teacher's targets; ``--reranker CKPT`` (an autoregressive translation
model, e.g. the distillation teacher) adds the diffusion models' rows with ``--external-reranker
CKPT`` and the reranker's own row (beam 5; its updates and time are its own run's).  Each system
gets ``--updates`` updates (the diffusion systems then the quickstart's length-head updates), or
``--minutes`` of training (the diffusion systems split it 85/15 between the diffusion and the
length stage), and is decoded with its usual settings on every test set, scored against the raw
references.  Output: one
table per test set with cased sacrebleu BLEU, the paper's lower-cased BLEU, sentences/second and
network evaluations (forward passes) per sentence, the updates and seconds of training each
row's checkpoint stores, plus JSON and a figure of the quality/speed frontier (BLEU against
sentences/s, PNG + SVG next to the JSON; ``--plot-only JSON`` draws it again).

    python benchmarks/translation_quality.py --data DATA_BIN --backbone BACKBONE_DIR \
        [--minutes 2 | --updates 300] [--distilled DISTILLED_BIN] [--reranker TEACHER.pt] \
        [--test-sets test] [--scale check|cpu|full] [--json results.json]

``--scale check`` (CPU, to check the pipeline): 2+2 layers of 256 for the baselines and
``--backbone-layers 2`` for the diffusion models; ``--scale cpu`` (a longer CPU comparison): the
first 6 of e5's layers / a 6 × 384 random encoder against 3+3 × 384 baselines; ``--scale full``
(GPU): the whole backbone, sizes comparable to multilingual-e5-small (12 × 384 encoder;
CMLM/transformer 6+6 × 384), bf16. ``--dlm-threshold τ`` adds a row: the pretrained diffusion
model decoded once more with confidence-threshold decoding (SPEC's fast path), no extra training.
Test sets are fairseq splits of the data folder: prepare further Multi30k years, or a small
subset for CPU checks, with ``scripts/prepare_translation.py --splits ... test1=PREFIX``.

``--speed`` (issue 12's decoding-speed table) adds a fifth system, ``dlm_prefix``: the pretrained
model trained with ``--attention-strategy prefix_lm`` under the same budget, and decodes the same
test sets once more with the speed options — full attention with the approximate prompt cache
(``--prompt-cache-refresh`` 2, 5, 0), length beam 1, dynamic int8; prefix_lm with its exact cache,
without it, LB = 1, int8 and S = 6 steps — with the backbone tokens
per sentence the generator counts.  ``--decode-only`` decodes the systems an earlier run left in
``--work`` again (after a decoder change) without training them anew.
"""
import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from fairseq_dlm.checkpoints import trained_updates, training_seconds
from fairseq_dlm.metrics.bleu import bleu_report
from fairseq_dlm.recipes import adaptation
from fairseq_dlm.tools import fairseq_tool
from figures import pyplot, save  # benchmarks/figures.py, next to this script

ROOT = Path(__file__).resolve().parents[1]

SIZES = {  # baseline sizes per scale: (layers per side, dim, ffn, heads)
    "check": (2, 256, 1024, 4),
    "cpu": (3, 384, 1536, 6),
    "full": (6, 384, 1536, 6),
}
# encoder layers of the diffusion models per scale (pretrained: the first N of e5's 12; 0 = all)
DLM_LAYERS = {"check": 2, "cpu": 6, "full": 0}


SYSTEMS = ("dlm_pretrained", "dlm_scratch", "dlm_distilled", "dlm_prefix", "cmlm", "cmlm_distilled", "transformer")
WALL_SECONDS = {}  # log file name -> wall-clock seconds of its command (process start-up included)


def sh(cmd, log):
    cmd = [str(c) for c in cmd]
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}), see {log}:\n" + "".join(open(log).readlines()[-30:]))
    WALL_SECONDS[Path(log).name] = round(time.time() - t0, 1)


def updates_done(train_log) -> int:
    """The last ``num_updates`` a fairseq-train log reports (0 when it logged none)."""
    found = re.findall(r"num_updates[ =](\d+)", Path(train_log).read_text(encoding="utf-8"))
    return int(found[-1]) if found else 0


def speed_and_nfe(log_file, gen_file, system):
    log = Path(log_file).read_text(encoding="utf-8")
    m = re.search(r"Translated ([\d,]+) sentences .* in ([\d.]+)s \(([\d.]+) sentences/s", log)
    out = {"sentences_per_second": float(m.group(3)) if m else None}
    text = Path(gen_file).read_text(encoding="utf-8")
    if system.startswith("dlm"):
        nfe = re.findall(r"([\d.]+) network evaluations per sentence, ([\d.]+) backbone tokens", log)
        out["nfe_per_sentence"] = float(nfe[-1][0]) if nfe else None
        out["backbone_tokens_per_sentence"] = float(nfe[-1][1]) if nfe else None
    elif system.startswith("cmlm"):  # decoder passes: iterations of every length candidate + the encoder/length pass
        steps = [int(s) for s in re.findall(r"^I-\d+\t(\d+)$", text, re.M)]
        out["nfe_per_sentence"] = round(sum(steps) / max(len(steps), 1) + 1, 2) if steps else None
    else:  # autoregressive: one decoder pass per output token (+ </s>), beams batched
        lens = [len(h.split()) + 1 for h in re.findall(r"^H-\d+\t\S+\t(.*)$", text, re.M)]
        out["nfe_per_sentence"] = round(sum(lens) / max(len(lens), 1), 2)
    return out


def budget(a, fraction=1.0, clock=0.0, updates=None):
    """fairseq-train flags bounding a run: ``--updates`` (``updates`` overrides it), else ``fraction``
    of ``--minutes`` added to the training clock ``clock`` (seconds) a checkpoint carries over."""
    if a.updates:
        return ["--max-update", updates or a.updates]
    return ["--max-update", 10**6, "--stop-time-hours", clock / 3600 + a.minutes / 60 * fraction]


def train_systems(a, work, gpu):
    dev = ["--autocast-bf16"] if gpu else ["--cpu"]
    # --user-dir everywhere: the plugin's compat shim lets stock fairseq load checkpoints on torch >= 2.6
    base = ["--user-dir", ROOT / "fairseq_dlm", "--seed", 1, "--no-epoch-checkpoints",
            "--disable-validation", "--log-format", "simple", "--log-interval", 50, "--num-workers", 0]
    tok = ["--max-tokens", 8192 if gpu else 2048]
    fp = ["--fp16"] if gpu else ["--cpu"]
    layers = DLM_LAYERS[a.scale]
    # the main job's recipe (fairseq_dlm.recipes.adaptation, chosen by benchmarks/recipe_sweep.py)
    recipe = replace(adaptation.GPU if gpu else adaptation.CPU, backbone_layers=layers,
                     max_tokens=8192 if gpu else 2048)
    dlm = [*base, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_base", *recipe.model_args(),
           "--optimizer", "torch_adamw", "--adam-betas", "(0.9,0.98)", "--weight-decay", 0.01, "--clip-norm", 1.0, *dev]
    stage1 = recipe.stage1_args()  # its --max-update is overridden by budget() (the last one wins)
    scratch_size = ["--encoder-layers", layers or 12, "--encoder-embed-dim", 384,
                    "--encoder-attention-heads", 6, "--encoder-ffn-embed-dim", 1536]
    pretrained = [*dlm, "--pretrained", a.backbone]
    systems = {  # name: (data, arguments of both stages, arguments of the diffusion stage)
        "dlm_pretrained": (a.data, pretrained, stage1),
        "dlm_scratch": (a.data, [*dlm, *scratch_size],
                        [*stage1, "--lr", 7e-4, "--lr-scheduler", "inverse_sqrt", "--label-smoothing", 0.1]),
    }
    if a.distilled:  # the same recipe on the teacher's targets
        systems["dlm_distilled"] = (a.distilled, pretrained, stage1)
    if a.speed:  # the same pretrained model with prefix-LM attention (its prompt cache is exact)
        systems["dlm_prefix"] = (a.data, [*pretrained, "--attention-strategy", "prefix_lm"], stage1)
    L, D, F, H = SIZES[a.scale]
    size = ["--encoder-layers", L, "--decoder-layers", L, "--encoder-embed-dim", D, "--decoder-embed-dim", D,
            "--encoder-ffn-embed-dim", F, "--decoder-ffn-embed-dim", F, "--encoder-attention-heads", H,
            "--decoder-attention-heads", H, "--share-all-embeddings", "--dropout", 0.3]
    # the same fused AdamW for every system (fairseq's --optimizer adam is a Python loop without apex)
    opt = ["--optimizer", "torch_adamw", "--adam-betas", "(0.9,0.98)", "--lr", 7e-4, "--lr-scheduler", "inverse_sqrt",
           "--warmup-updates", 400, "--clip-norm", 1.0, "--weight-decay", 0.0001]
    cmlm = [*base, *tok, "--task", "translation_lev", "--noise", "random_mask", "--arch", "cmlm_transformer",
            "--criterion", "nat_loss", "--label-smoothing", 0.1, "--apply-bert-init", *size, *opt, *fp]
    ar = [*base, *tok, "--task", "translation", "--arch", "transformer", "--criterion", "label_smoothed_cross_entropy",
          "--label-smoothing", 0.1, *size, *opt, *fp]
    ckpts = {}
    for name, (data, args, stage1_only) in systems.items():
        save = work / name
        if a.only and name not in a.only:
            continue
        sh([fairseq_tool("fairseq-train"), data, *args, *stage1_only, *budget(a, 0.85),
            "--save-dir", save / "diffusion"], work / f"{name}.train.log")
        # the length head learns fast at a fixed 1e-3 (as in the quickstart); a warm-up would waste the short stage;
        # the stage-1 clock carries over through --finetune-from-model: a time budget adds this stage's share
        sh([fairseq_tool("fairseq-train"), data, *args, *recipe.stage2_args(),
            "--finetune-from-model", save / "diffusion" / "checkpoint_last.pt",
            *budget(a, 0.15, training_seconds(save / "diffusion" / "checkpoint_last.pt"), recipe.length_updates),
            "--save-dir", save / "length"], work / f"{name}.length.log")
        ckpts[name] = save / "length" / "checkpoint_last.pt"
    baselines = [("cmlm", a.data, cmlm), ("transformer", a.data, ar)]
    if a.distilled:
        baselines.insert(1, ("cmlm_distilled", a.distilled, cmlm))
    for name, data, args in baselines:
        if a.only and name not in a.only:
            continue
        sh([fairseq_tool("fairseq-train"), data, *args, *budget(a), "--save-dir", work / name],
           work / f"{name}.train.log")
        ckpts[name] = work / name / "checkpoint_last.pt"
    return ckpts


def trained_checkpoints(a, work):
    """``{system: checkpoint}`` of an earlier run in ``work`` (``--decode-only``)."""
    found = {}
    for name in SYSTEMS:
        ckpt = work / name / ("length" if name.startswith("dlm") else "") / "checkpoint_last.pt"
        if ckpt.exists() and (not a.only or name in a.only):
            found[name] = ckpt
    if not found:
        raise SystemExit(f"--decode-only: no trained system in {work} (expected e.g. {work}/transformer/"
                         "checkpoint_last.pt); run without --decode-only first")
    return found


def decoding_rows(a, ckpts):
    """Rows of the table: every system with its usual decoding, the transformer greedy too, plus
    (``--dlm-threshold τ``) the pretrained diffusion models again with confidence-threshold decoding
    and (``--reranker``) with their length-beam candidates reranked (no extra training).

    Returns ``{row name: (system, checkpoint, extra fairseq-generate arguments)}``."""
    rows = {}
    for name, ckpt in ckpts.items():
        rows[name] = (name, ckpt, [])
        if name in ("dlm_pretrained", "dlm_distilled") and a.reranker:
            rows[f"{name} +rerank"] = (name, ckpt, ["--external-reranker", a.reranker])
        if name in ("dlm_pretrained", "dlm_distilled") and a.dlm_threshold:
            rows[f"{name} τ={a.dlm_threshold:g}"] = (
                name, ckpt, ["--decoding-strategy", "threshold", "--confidence-threshold", a.dlm_threshold])
        if name == "transformer":
            rows[f"{name} greedy"] = (name, ckpt, ["--beam", 1])
        if a.speed:
            for label, extra in SPEED_ROWS.get(name, ()):
                rows[f"{name} {label}"] = (name, ckpt, extra)
    if a.reranker:  # the teacher itself, trained outside this run for its own budget (an AR translation model)
        rows["reranker (teacher)"] = ("transformer", Path(a.reranker), [])
    return rows


LB1 = ["--iter-decode-with-beam", 1]
S6 = ["--iter-decode-max-iter", 6]
SPEED_ROWS = {  # --speed: the decoding-speed options of issue 12, each on the same trained model
    "dlm_pretrained": [
        ("LB=1", LB1),
        ("R=2", ["--prompt-cache-refresh", 2]),
        ("R=5", ["--prompt-cache-refresh", 5]),
        ("R=0", ["--prompt-cache-refresh", 0]),
        ("R=0 LB=1", ["--prompt-cache-refresh", 0, *LB1]),
        ("int8", ["--quantize-dynamic"]),
        ("R=0 LB=1 int8", ["--prompt-cache-refresh", 0, *LB1, "--quantize-dynamic"]),
        ("R=0 S=6", ["--prompt-cache-refresh", 0, *S6]),
    ],
    "dlm_prefix": [
        ("no cache", ["--no-prompt-cache"]),
        ("LB=1", LB1),
        ("int8", ["--quantize-dynamic"]),
        ("LB=1 int8", [*LB1, "--quantize-dynamic"]),
        ("S=6", S6),
        ("S=6 LB=1", [*S6, *LB1]),
    ],
}


def decode(a, work, gpu, row, system, ckpt, extra, subset):
    dev = ["--autocast-bf16"] if gpu and system.startswith("dlm") else (["--fp16"] if gpu else ["--cpu"])
    # --user-dir for every system: the plugin's compat shim lets stock fairseq load its checkpoints
    # on torch >= 2.6; --required-batch-size-multiple 1: the fork's batching drops tails otherwise
    common = [a.data, "--path", ckpt, "--gen-subset", subset, "--post-process", "sentencepiece",
              "--user-dir", ROOT / "fairseq_dlm", "--required-batch-size-multiple", 1,
              "--num-workers", 0, "--batch-size", 128 if gpu else 32, *dev]
    if system.startswith("dlm"):
        usual = ["--task", "diffusion_lm", "--iter-decode-max-iter", 10,
                 "--iter-decode-with-beam", 3]
    elif system.startswith("cmlm"):
        usual = ["--task", "translation_lev", "--iter-decode-max-iter", 10, "--iter-decode-eos-penalty", 0,
                 "--iter-decode-with-beam", 1 if gpu else 3, "--print-step"]
    else:
        usual = ["--task", "translation", "--beam", 5]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", row.replace("τ", "tau"))  # ASCII file names
    out = work / f"gen.{slug}.{subset}"
    log = work / f"{slug}.{subset}.generate.log"
    sh([fairseq_tool("fairseq-generate"), *common, *usual, *extra, "--results-path", out], log)
    report = bleu_report(out / f"generate-{subset}.txt")
    report.pop("examples")
    return {**report, **speed_and_nfe(log, out / f"generate-{subset}.txt", system), **trained(str(ckpt), system)}


@functools.lru_cache(maxsize=None)
def trained(ckpt: str, system: str) -> dict:
    """The updates and training seconds ``ckpt`` stores (read once per checkpoint, not per row); a
    diffusion system's length stage counts its updates from 0 and carries stage 1's clock over."""
    out = {"updates": trained_updates(ckpt), "training_seconds": round(training_seconds(ckpt))}
    if system.startswith("dlm"):
        out["updates"] += trained_updates(Path(ckpt).parents[1] / "diffusion" / "checkpoint_last.pt")
    return out


def draw(results: dict, path: Path, title: str) -> None:
    """The quality/speed frontier of every decoded row: BLEU against sentences/s (log), one panel per
    test set; written to ``path`` .png and .svg."""
    from matplotlib.ticker import NullFormatter

    plt = pyplot()

    family = {"dlm": ("tab:blue", "o"), "cmlm": ("tab:orange", "s"), "transformer": ("tab:green", "^"),
              "reranker": ("tab:grey", "^")}
    fig, axes = plt.subplots(1, len(results), figsize=(10 * len(results), 5), squeeze=False)
    for ax, (subset, table) in zip(axes[0], results.items()):
        for i, (row, r) in enumerate(table.items(), 1):
            if r["sentences_per_second"] is None:
                continue
            colour, marker = family[next(k for k in family if row.startswith(k))]
            label = f"{i}. {row}" + (f" ({r['updates']} updates)" if "updates" in r else "")
            ax.scatter(r["sentences_per_second"], r["bleu"], color=colour, marker=marker, s=40, label=label)
            ax.annotate(str(i), (r["sentences_per_second"], r["bleu"]), fontsize=8, xytext=(5, 2),
                        textcoords="offset points")  # the legend names the numbers
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sentences / second (log)")
        ax.set_ylabel("BLEU (sacrebleu, cased)")
        ax.set_title(f"{subset}: {title}", fontsize=9)
        ax.grid(alpha=0.3)
    save(fig, path)


def _title(updates, minutes, device) -> str:
    spent = f"{updates} updates" if updates else f"{minutes} min"
    return f"Multi30k de→en, {spent} per system, {device}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="prepared data folder (scripts/prepare_translation.py); required")
    p.add_argument("--backbone", help="converted backbone (scripts/convert_backbone.py); required")
    p.add_argument("--minutes", type=float, default=2.0, help="training wall-clock budget per system")
    p.add_argument("--updates", type=int, default=None,
                   help="training budget in updates per system instead of --minutes (the diffusion systems: "
                        f"this many for stage 1, then {adaptation.CPU.length_updates} for the length head)")
    p.add_argument("--distilled", default=None,
                   help="distilled copy of --data (scripts/distill.py): adds dlm_distilled and cmlm_distilled")
    p.add_argument("--reranker", default=None,
                   help="an autoregressive fairseq checkpoint (e.g. the distillation teacher): adds the diffusion "
                        "models' rows with --external-reranker and the reranker's own row (beam 5)")
    p.add_argument("--test-sets", default="test", help="comma-separated fairseq splits to score")
    p.add_argument("--scale", choices=["check", "cpu", "full"], default=None,
                   help="model sizes (see above); default: full on GPU, check on CPU")
    p.add_argument("--dlm-threshold", type=float, default=0.9,
                   help="also decode dlm_pretrained with --decoding-strategy threshold at this τ (0: skip)")
    p.add_argument("--only", nargs="*", default=None, help="subset of systems to run")
    p.add_argument("--speed", action="store_true",
                   help="issue 12's decoding-speed table: also train dlm_prefix (prefix-LM attention, same budget) "
                        "and decode with the prompt cache (R = 2, 5, 0), LB = 1, int8 and AR greedy")
    p.add_argument("--decode-only", action="store_true",
                   help="reuse the checkpoints already in --work (no training; the updates are read from its logs)")
    p.add_argument("--work", default=str(ROOT / "runs" / "benchmark"), help="working directory")
    p.add_argument("--json", default=None, help="results JSON (default WORK/results.json); the figure is drawn "
                                                "next to it (.png, .svg)")
    p.add_argument("--plot-only", default=None, metavar="JSON",
                   help="draw the frontier figure of an earlier run's JSON again and stop")
    a = p.parse_args()
    if a.plot_only:
        saved = json.loads(Path(a.plot_only).read_text(encoding="utf-8"))
        title = _title(saved.get("updates_budget"), saved["minutes"], saved["device"])
        draw(saved["results"], Path(a.plot_only), title)
        print(f"wrote {Path(a.plot_only).with_suffix('.png')} and .svg")
        return
    if not (a.data and a.backbone):
        p.error("--data and --backbone are required (except with --plot-only)")
    import torch

    gpu = torch.cuda.is_available()
    a.scale = a.scale or ("full" if gpu else "check")
    work = Path(a.work)
    if a.decode_only:
        ckpts = trained_checkpoints(a, work)
    elif work.exists():  # every system trains from scratch for exactly its budget
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if gpu else f"CPU ({os.cpu_count()} cores)"
    t0 = time.time()
    if not a.decode_only:
        ckpts = train_systems(a, work, gpu)
    updates = {name: {stage: updates_done(log) for stage in ("train", "length")
                      if (log := work / f"{name}.{stage}.log").exists()} for name in ckpts}
    out = Path(a.json or work / "results.json")

    def save(results):  # after every decode, so a run cut short still leaves what it measured
        out.write_text(json.dumps({"device": device, "minutes": None if a.updates else a.minutes,
                                   "updates_budget": a.updates, "scale": a.scale, "results": results,
                                   "updates": updates, "wall_seconds": {"total": round(time.time() - t0),
                                                                        **WALL_SECONDS}}, indent=2))

    results, rows = {}, decoding_rows(a, ckpts)
    for subset in a.test_sets.split(","):
        for row, spec in rows.items():
            results.setdefault(subset, {})[row] = decode(a, work, gpu, row, *spec, subset)
            save(results)
    for subset, table in results.items():
        spent = f"{a.updates} updates" if a.updates else f"{a.minutes} min"
        print(f"\n{subset}: Multi30k de→en, {spent} of training per system, {device}, scale {a.scale}")
        print(f"{'system':<30} {'BLEU':>6} {'BLEU lc':>8} {'sent/s':>8} {'NFE/sent':>9} {'tokens/sent':>12}"
              f" {'updates':>8} {'train s':>8}")
        for n, r in table.items():
            sps = "-" if r["sentences_per_second"] is None else f"{r['sentences_per_second']:.1f}"
            nfe = "-" if r["nfe_per_sentence"] is None else f"{r['nfe_per_sentence']:.1f}"
            tok = r.get("backbone_tokens_per_sentence")
            tok = "-" if tok is None else f"{tok:.1f}"
            print(f"{n:<30} {r['bleu']:>6.2f} {r['bleu_lc']:>8.2f} {sps:>8} {nfe:>9} {tok:>12}"
                  f" {r['updates']:>8} {r['training_seconds']:>8}")
        print("sacrebleu " + next(iter(table.values()))["signature"])
    print("updates in the budget: " + ", ".join(
        f"{n} {u['train']}" + (f" + {u['length']} length" if "length" in u else "") for n, u in updates.items()))
    print(f"wall-clock: {round(time.time() - t0)} s in all (per command in the JSON)")
    draw(results, out, _title(a.updates, a.minutes, device))
    print(f"wrote {out} and the frontier figure {out.with_suffix('.png')} (.svg)")


if __name__ == "__main__":
    main()
