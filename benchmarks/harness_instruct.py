#!/usr/bin/env python
"""lm-evaluation-harness on the instruction model of ``scripts/instruct_quickstart.py``: MMLU (and
BBH-NLP) answered by likelihood (the Monte-Carlo diffusion bound, ``dlm_mmlu``) and by generation
(``dlm_mmlu_gen``), next to the majority and chance baselines of the same rows; the generated answers
compared row by row with ``scripts/eval_instruct.py`` run with the same settings; and the spread of
the bound over seeds for several ``mc_samples`` (on multi-piece continuations: a one-letter answer's
bound is exact).

    python benchmarks/harness_instruct.py --work runs/instruct [--seeds 1 2 3] [--mc-samples 16] \
        [--spread-mc 4 16 64] [--spread-rows 100] [--bbh-limit 100] [--out OUT]

``--work``: the quickstart's working directory (``ckpt_instruct``, ``ckpt_length``, ``mix``,
``dict.pruned.txt``).  Output: a table, ``OUT.json`` and a figure ``OUT.png/.svg`` (default
``WORK/harness``).  Validation rows only (MMLU val, BBH-NLP validation).
"""
import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from figures import pyplot, save  # benchmarks/figures.py, next to this script

ROOT = Path(__file__).resolve().parents[1]


def evaluate(lm, tasks, data_root: Path, limit=None) -> dict:
    """``lm_eval.simple_evaluate`` on the packaged offline tasks; the results and the samples."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from fairseq_dlm.harness.tasks import TASKS_DIR

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_root": str(data_root)})
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, log_samples=True, limit=limit)


def by_doc(samples) -> list:
    return sorted(samples, key=lambda s: s["doc_id"])


def eval_instruct(work: Path, ckpt: Path, rel: str, data_root: Path, out: Path, canvas: list, limit=None) -> dict:
    """``scripts/eval_instruct.py`` on one benchmark file: its report (predictions sorted by row)."""
    if not out.exists():
        cmd = [sys.executable, str(ROOT / "scripts" / "eval_instruct.py"), "--ckpt", str(ckpt), "--files",
               str(data_root / "paper-eval" / rel), "--data-dir", str(work / "mix"), "--dict",
               str(work / "dict.pruned.txt"), "--max-iter", "1", *canvas, "--batch-size", "16",
               "--output-dir", str(out), "--cpu", "--no-progress", *(["--limit", str(limit)] if limit else [])]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    report["predictions"].sort(key=lambda p: p["id"])
    return report


def agreement(samples, predictions) -> dict:
    """Rows where the harness's generated text is eval_instruct's, over the rows both score."""
    ours = [s["resps"][0][0] for s in by_doc(samples)]
    theirs = [p["hypothesis"] for p in predictions if p["target"].strip()]
    if len(ours) != len(theirs):
        raise SystemExit(f"the harness scored {len(ours)} rows, eval_instruct.py {len(theirs)}")
    return {"rows": len(ours), "same_text": sum(a == b for a, b in zip(ours, theirs))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--work", required=True, help="scripts/instruct_quickstart.py's working directory")
    p.add_argument("--data-root", help="folder holding paper-eval/ (default: ../shared/data)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seeds of the full MMLU likelihood runs")
    p.add_argument("--mc-samples", type=int, default=16, help="Monte-Carlo draws of the full runs")
    p.add_argument("--spread-mc", type=int, nargs="+", default=[4, 16, 64], help="mc_samples of the spread study")
    p.add_argument("--spread-seeds", type=int, default=5, help="seeds per mc_samples in the spread study")
    p.add_argument("--spread-rows", type=int, default=100, help="first IWSLT14 de→en validation rows of the spread study")
    p.add_argument("--bbh-limit", type=int, default=100, help="first rows of each BBH-NLP task (0: skip BBH)")
    p.add_argument("--out", help="OUT.json and OUT.png/.svg (default: WORK/harness)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from fairseq_dlm.harness.model import DiffusionHarnessLM
    from fairseq_dlm.harness.offline import find_data_root

    work, root = Path(a.work), find_data_root(a.data_root)
    out = Path(a.out) if a.out else work / "harness"
    tuned, length = work / "ckpt_instruct" / "checkpoint_last.pt", work / "ckpt_length" / "checkpoint_last.pt"
    model = dict(data=str(work / "mix"), batch_size=16)
    result = {"work": str(work), "mc_samples": a.mc_samples, "rows": {}, "mmlu": {}, "bbh": {}, "spread": {}}
    start = time.time()

    # 1. MMLU by likelihood, one full run per seed
    runs = {}
    for seed in a.seeds:
        lm = DiffusionHarnessLM(path=str(tuned), mc_samples=a.mc_samples, seed=seed, **model)
        t0 = time.time()
        res = evaluate(lm, ["dlm_mmlu"], root)
        runs[seed] = {"acc": 100 * res["results"]["dlm_mmlu"]["acc,none"], "seconds": time.time() - t0,
                      "picks": [max(range(len(s["resps"])), key=lambda i: s["resps"][i][0][0])
                                for s in by_doc(res["samples"]["dlm_mmlu"])]}
        docs = [s["doc"] for s in by_doc(res["samples"]["dlm_mmlu"])]
        print(f"MMLU likelihood, seed {seed}: {runs[seed]['acc']:.2f} ({runs[seed]['seconds']:.0f} s)", flush=True)
    first = runs[a.seeds[0]]["picks"]
    accs = [r["acc"] for r in runs.values()]
    result["mmlu"]["likelihood"] = {
        "per_seed": {s: round(r["acc"], 2) for s, r in runs.items()}, "mean": statistics.mean(accs),
        "min": min(accs), "max": max(accs), "seconds_per_run": statistics.mean(r["seconds"] for r in runs.values()),
        "answers_changed_vs_first_seed": {s: sum(x != y for x, y in zip(first, r["picks"])) for s, r in runs.items()},
        "picked": dict(Counter("ABCD"[i] for i in first))}
    targets = [d["targets"] for d in docs]
    result["rows"]["mmlu"] = len(targets)
    majority, count = Counter(targets).most_common(1)[0]
    result["mmlu"]["baselines"] = {"chance": 25.0, f"majority ({majority})": 100 * count / len(targets),
                                   **{f"always {x}": 100 * targets.count(x) / len(targets) for x in "AB"}}

    # 2. MMLU by generation (S=1): a one-slot canvas (the answer letter's length, as the paper's oracle
    #    length) and the length head's 3 best lengths; each checked against eval_instruct.py
    for name, ckpt, extra, canvas in (("gen, 1 slot", tuned, {"length": 1}, ["--fixed-canvas-length", "1"]),
                                      ("gen, length head LB=3", length, {"length_beam": 3}, ["--length-beam", "3"])):
        lm = DiffusionHarnessLM(path=str(ckpt), steps=1, **extra, **model)
        t0 = time.time()
        res = evaluate(lm, ["dlm_mmlu_gen"], root)
        samples = res["samples"]["dlm_mmlu_gen"]
        tag = name.replace(" ", "_").replace(",", "").replace("=", "")
        theirs = eval_instruct(work, ckpt, "mmlu/0-shot/val/full.jsonl", root, out.parent / f"{out.name}_{tag}", canvas)
        score = theirs["score"]["value"]
        result["mmlu"][name] = {"acc": 100 * res["results"]["dlm_mmlu_gen"]["acc,none"], "eval_instruct_acc": score,
                                "seconds": time.time() - t0, "answers": dict(Counter(
                                    s["resps"][0][0].strip()[:12] for s in samples).most_common(4)),
                                **agreement(samples, theirs["predictions"])}
        print(f"MMLU {name}: {result['mmlu'][name]['acc']:.2f}; eval_instruct {score:.2f}; same text on "
              f"{result['mmlu'][name]['same_text']}/{result['mmlu'][name]['rows']} rows", flush=True)

    # 3. the bound's spread over seeds.  A one-slot continuation (MMLU's letters) has one mask pattern,
    #    so its bound is exact and the seed changes nothing (checked on the full runs above); the spread
    #    is measured on multi-slot continuations: IWSLT14 de→en validation references given their prompts
    from lm_eval.api.instance import Instance

    from fairseq_dlm.evaluation import load_job

    rows = load_job(str(root / "paper-eval" / "iwslt14/0-shot/validation/deen.jsonl")).data.examples[:a.spread_rows]
    requests = [Instance("loglikelihood", {}, (ex.inputs, " " + ex.targets.strip()), i) for i, ex in enumerate(rows)]
    scorer = DiffusionHarnessLM(path=str(tuned), **model)
    pieces = [len(scorer.lm.encode(" " + ex.targets.strip(), check_length=False)) - 1 for ex in rows]
    for mc in a.spread_mc:
        t0 = time.time()
        bounds = []
        for seed in range(1, a.spread_seeds + 1):
            scorer.mc_samples, scorer.seed = mc, seed  # the same loaded model, other draws
            bounds.append([b for b, _ in scorer.loglikelihood(requests)])
        std = statistics.mean(statistics.pstdev(col) for col in zip(*bounds))
        mean = statistics.mean(statistics.mean(col) for col in zip(*bounds))
        result["spread"][mc] = {"bound_mean": mean, "bound_std_over_seeds": std, "rows": len(rows),
                                "pieces_mean": statistics.mean(pieces), "seeds": a.spread_seeds,
                                "seconds_per_seed": (time.time() - t0) / a.spread_seeds}
        print(f"spread, mc_samples={mc}: bound {mean:.2f} ± {std:.3f} nats (std over {a.spread_seeds} seeds, mean "
              f"over {len(rows)} references of {statistics.mean(pieces):.1f} pieces)", flush=True)

    # 4. BBH-NLP (the first rows of each task): likelihood vs generation with one slot
    if a.bbh_limit:
        for name, extra, task in (("likelihood", {"mc_samples": a.mc_samples}, "dlm_bbh"),
                                  ("gen, 1 slot", {"steps": 1, "length": 1}, "dlm_bbh_gen")):
            res = evaluate(DiffusionHarnessLM(path=str(tuned), **extra, **model), [task], root, limit=a.bbh_limit)
            result["bbh"][name] = 100 * res["results"][task]["acc,none"]
        rows = [s["doc"]["targets"] for k, v in res["samples"].items() for s in v]
        groups = {k: Counter(s["doc"]["targets"] for s in v) for k, v in res["samples"].items()}
        result["bbh"]["majority per task (macro)"] = statistics.mean(
            100 * c.most_common(1)[0][1] / sum(c.values()) for c in groups.values())
        result["bbh"]["chance (macro)"] = statistics.mean(
            100 / len(v[0]["doc"]["choices"]) for v in res["samples"].values())
        result["rows"]["bbh"] = len(rows)
        print(f"BBH-NLP: {result['bbh']}", flush=True)
    result["minutes"] = (time.time() - start) / 60
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    table(result)
    figure(result, out)


def table(r: dict) -> None:
    m = r["mmlu"]
    print(f"\nMMLU val ({r['rows']['mmlu']} rows), accuracy:")
    lk = m["likelihood"]
    print(f"  likelihood, mc_samples={r['mc_samples']}: {lk['mean']:.2f} (seeds: "
          + ", ".join(f"{s}: {v:.2f}" for s, v in lk["per_seed"].items()) + ")")
    for name in ("gen, 1 slot", "gen, length head LB=3"):
        g = m[name]
        print(f"  {name}: {g['acc']:.2f} (eval_instruct.py: {g['eval_instruct_acc']:.2f}; same text on "
              f"{g['same_text']}/{g['rows']} rows)")
    for name, v in m["baselines"].items():
        print(f"  {name}: {v:.2f}")
    first = next(iter(r["spread"].values()))
    print(f"spread of the bound over {first['seeds']} seeds (IWSLT14 de→en valid references, first {first['rows']}, "
          f"{first['pieces_mean']:.1f} pieces on average; MMLU's one-letter answers: exact, no spread):")
    for mc, s in r["spread"].items():
        print(f"  mc_samples={mc}: std {s['bound_std_over_seeds']:.3f} nats around {s['bound_mean']:.2f} "
              f"({s['seconds_per_seed']:.0f} s per seed)")
    if r["bbh"]:
        print(f"BBH-NLP ({r['rows']['bbh']} rows), macro accuracy: " +
              ", ".join(f"{k} {v:.2f}" for k, v in r["bbh"].items()))


def figure(r: dict, out: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    m = r["mmlu"]
    names = ["chance", *[k for k in m["baselines"] if k.startswith("majority")], "gen, 1 slot",
             "gen, length head LB=3", "likelihood"]
    values = [m["baselines"].get(n, m.get(n, {}).get("acc") if n != "likelihood" else m["likelihood"]["mean"])
              for n in names]
    left.barh(names, values, color=["#bbb", "#bbb", "#4c72b0", "#4c72b0", "#dd8452"])
    lk = m["likelihood"]
    left.errorbar([lk["mean"]], [len(names) - 1], xerr=[[lk["mean"] - lk["min"]], [lk["max"] - lk["mean"]]],
                  color="black", capsize=4)
    left.set_xlabel(f"MMLU val accuracy ({r['rows']['mmlu']} rows)")
    left.set_xlim(0, max(values) + 10)
    mcs = sorted(r["spread"], key=int)
    right.plot([int(x) for x in mcs], [r["spread"][x]["bound_std_over_seeds"] for x in mcs], marker="o")
    right.set_xscale("log", base=2)
    right.set_xlabel("mc_samples (draws of the bound)")
    right.set_ylabel("std of the bound over seeds (nats)")
    right.set_title(f"IWSLT14 de→en valid references (first {r['spread'][mcs[0]]['rows']})")
    save(fig, out)


if __name__ == "__main__":
    main()
