#!/usr/bin/env python3
"""Build real instruction-tuning shards offline (issue 9 §2; SPEC §2.4, §7.3-§7.4, §9.3).

The FLAN 2022 shards are not available offline (DATA.md §6). This script writes shards in the same
format (``{"inputs": str, "targets": str, ...}`` per line, gzipped, plus ``ratio.json``), read by
``fairseq_dlm.data.jsonl_mixture.JsonlMixture``, from what exists in ``../shared/data``:

* ``translation_{zs,fs}_train``: Multi30k train, every language of ``--languages`` ↔ English in both
  directions, several instruction templates (the project's ``templates.TRANSLATION_TEMPLATE``, the
  paper's IWSLT14 evaluation wording, and FLAN-like variants); ``fs`` prepends ``--shots`` K
  demonstrations (other training lines, same direction and template), as IWSLT14 1-shot does.
* ``gsm8k_{zs,fs}_train``: GSM8K train problems in the MGSM prompt style
  (``Question: … Step-by-Step Answer:``); the target is the worked answer without the ``<<…>>``
  calculator annotations, ending ``The answer is N`` so that the last number is the answer (the MGSM
  scorer reads the last ``\\d+(,\\d+)*``). Demonstrations end ``The answer is N.`` as in MGSM.
* ``choice_{zs,fs}_train``: multiple choice answered by one letter, in the MMLU
  (``The following are multiple choice questions (with answers) about …. Q: … (A) … (B) … A:``) and
  BBH (``Q: … A: (A) … (B) … A:``) styles, built from the same data: "which is the X translation of
  …" with distractors drawn from other Multi30k sentences, and GSM8K problems with numeric
  distractors. Few-shot demonstrations are joined by `` | `` as in the MMLU/BBH k-shot files.

A ``valid/`` split comes from Multi30k val and a held-out slice (``--gsm8k-heldout``) of GSM8K train
(never used for training shards nor demonstrations). ``README.md`` in ``--out`` records the command,
the counts per shard and the sources.

**No evaluation data in training.** Nothing is read from ``paper-eval`` (MMLU, BBH, MGSM, TyDiQA,
IWSLT14) or GSM8K test except by :func:`leak_check`, run at the end of every build: it fails (exit
status 3, shards left in place for inspection) if any written ``inputs`` equals, after normalisation
and case folding, the ``inputs`` of any paper-eval file. It also counts (and warns about) written
examples that share a 13-word span with the 0-shot evaluation prompts.

Extra keys per line (ignored by the reader): ``task`` (e.g. ``translation.de-en``,
``choice.gsm8k``), ``template`` (index of the template or style), ``shots`` (fs only) and, for
multiple choice, ``answer`` (the text of the right option).

Few-shot prompts are capped by length (``--max-chars``, inputs + targets, about 4 characters per
XLM-R token for these languages; the model has 512 positions): a demonstration that would pass the
cap is replaced by another (a few tries), else left out; ``shots`` records how many were used.
Examples still longer than the cap are dropped and counted.

Deterministic for a ``--seed``: every shard has its own random generator seeded by (seed, shard name);
gzip headers carry no time or name. Shards are written one line at a time.

Example::

    .venv/bin/python scripts/build_instruct_mixture.py --out data/instruct_mix --shots 3
"""
import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from fairseq_dlm.data.instruct_mixture import DEFAULT_RATIOS, BuildError, LeakError, MixtureOptions, build

SHARED_DATA_ENV = "FAIRSEQ_DLM_SHARED_DATA"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULTS = MixtureOptions(out=Path("."), data_dir=DEFAULT_DATA_DIR)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (refused if non-empty without --overwrite)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get(SHARED_DATA_ENV, DEFAULT_DATA_DIR)),
                   help=f"folder with multi30k/ and gsm8k/ (default: ${SHARED_DATA_ENV}, else ../shared/data next to "
                        "the repository)")
    p.add_argument("--eval-dir", type=Path, default=None,
                   help="evaluation prompts for the leak check (default: DATA_DIR/paper-eval; skipped with a "
                        "warning when absent unless --require-leak-check)")
    p.add_argument("--require-leak-check", action="store_true", help="fail when the evaluation folder is absent")
    p.add_argument("--languages", default=DEFAULTS.languages, help="comma-separated Multi30k languages paired with English")
    p.add_argument("--shots", type=int, default=DEFAULTS.shots, help="demonstrations per few-shot prompt (K)")
    p.add_argument("--max-chars", type=int, default=DEFAULTS.max_chars,
                   help="cap on len(inputs)+len(targets) in characters (~4 per token; the model has 512 positions)")
    p.add_argument("--options", default=DEFAULTS.options, help="numbers of options to draw from for multiple choice")
    p.add_argument("--max-examples-per-shard", type=int, default=None, help="cap per training shard")
    p.add_argument("--max-valid-per-shard", type=int, default=DEFAULTS.max_valid_per_shard, help="cap per valid shard")
    p.add_argument("--gsm8k-heldout", type=int, default=DEFAULTS.gsm8k_heldout, help="last N GSM8K train problems held out for valid/")
    p.add_argument("--ratio", action="append", default=[], metavar="FAMILY=WEIGHT",
                   help=f"override a weight of ratio.json (defaults: {DEFAULT_RATIOS})")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of every shard's generator")
    p.add_argument("--overwrite", action="store_true", help="replace the shards of an existing --out")
    p.add_argument("--quiet", action="store_true", help="warnings only")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(get_parser().parse_args(argv))
    logging.basicConfig(level=logging.WARNING if args.pop("quiet") else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = shlex.join(["python", "scripts/build_instruct_mixture.py", *argv])
    try:
        summary = build(MixtureOptions(**args), command)
    except BuildError as e:
        print(f"build_instruct_mixture: error: {e}", file=sys.stderr)
        return 2
    except LeakError as e:
        print(f"build_instruct_mixture: LEAK: {e}", file=sys.stderr)
        return 3
    width = max(map(len, summary["counts"]))
    for name, n in summary["counts"].items():
        print(f"{name:<{width}}  {n:>8}")
    print(f"total {sum(summary['counts'].values())} examples, {summary['bytes'] / 1e6:.1f} MB, "
          f"{summary['seconds']} s; leak check: {summary['leak_check']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
