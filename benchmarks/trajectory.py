#!/usr/bin/env python
"""The denoising of one prompt, step by step, as a picture: response slots × steps, each cell the
token committed there (▢ while masked), coloured by the probability the model gave it when it was
committed; a bold frame marks the slots committed at that step.  The chosen candidate of the length
beam is drawn (the same decoding as ``DiffusionLM.generate`` and the demo page).

    python benchmarks/trajectory.py --path CKPT [--data DATA_BIN] --prompt "..." [--steps 10] \
        [--length-beam 3] [--spm-model SPM] [--out docs/figures/trajectory]

Writes OUT.png, OUT.svg and OUT.json (every step's canvas).
"""
import argparse
import json
from pathlib import Path

from fairseq_dlm.inference import add_model_arguments
from figures import pyplot, save  # benchmarks/figures.py, next to this script


def record(lm, prompt: str, steps: int, length_beam: int):
    """``(result, events)``: ``DiffusionLM.generate``'s dict and the demo's step events."""
    from fairseq_dlm.demo.events import CanvasView

    view, events = CanvasView(lm), []
    result = lm.generate(prompt, steps=steps, length_beam=length_beam, return_dict=True,
                         on_step=lambda state, active: events.append(view.step_event(state, active, 0.0)))
    return result, events


def draw(prompt: str, result: dict, events: list, out: Path, join_spm: bool) -> None:
    from matplotlib.patches import Rectangle

    plt = pyplot()

    rows = [e["candidates"][result["chosen"]] for e in events]
    width = rows[0]["length"]
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * width + 1.5), 0.42 * len(rows) + 1.6))
    cmap = plt.get_cmap("RdYlGn")
    for s, row in enumerate(rows):
        for j in range(width):
            piece, status, p = row["pieces"][j], row["status"][j], row["confidence"][j]
            colour = "#dddddd" if piece is None else cmap(p)
            ax.add_patch(Rectangle((j, s), 1, 1, facecolor=colour, edgecolor="black" if status == "n" else "white",
                                   linewidth=2 if status == "n" else 0.5))
            text = "▢" if piece is None else (piece.replace("\u2581", "") if join_spm else piece)
            ax.text(j + 0.5, s + 0.5, text, ha="center", va="center", fontsize=8)
    ax.set_xlim(0, width)
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([s + 0.5 for s in range(len(rows))], [str(e["step"]) for e in events])
    ax.set_xticks([])
    ax.set_ylabel("step")
    short = prompt if len(prompt) < 90 else prompt[:87] + "…"
    ax.set_title(f"{short}\n→ {result['text']}  (length {result['length']}, NFE {result['nfe']})", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.01, label="probability when committed")
    save(fig, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, "checkpoint (anything DiffusionLM.from_pretrained loads)")
    p.add_argument("--prompt", required=True, help="the prompt to decode")
    p.add_argument("--steps", type=int, default=10, help="denoising steps")
    p.add_argument("--length-beam", type=int, default=3, help="lengths tried (the chosen one is drawn)")
    p.add_argument("--out", type=Path, default=Path("docs/figures/trajectory"), help="output path without suffix")
    a = p.parse_args(argv)
    from fairseq_dlm import DiffusionLM

    lm = DiffusionLM.from_pretrained(a.path, data=a.data, spm_model=a.spm_model, trust_checkpoint=a.trust_checkpoint)
    result, events = record(lm, a.prompt, a.steps, a.length_beam)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({"prompt": a.prompt, "result": result, "steps": events},
                                                     indent=1, ensure_ascii=False))
    draw(a.prompt, result, events, a.out, lm.bpe is not None)
    print(f"{result['text']}\nwrote {a.out}.png, .svg, .json")


if __name__ == "__main__":
    main()
