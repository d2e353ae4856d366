#!/usr/bin/env python
"""Decode the golden configurations with ``fairseq-generate``'s own ``main``, all in one process.

    python tests/golden/decode.py OUT_DIR [--root tests/golden]

For each configuration of :data:`CONFIGS` (the models and decoding options of
``examples/reverse/run.sh`` with full and prefix-LM attention, plus every decoding strategy and
mode) this runs ``fairseq_cli.generate.main`` on ``ROOT/data`` (the toy task's 200 test strings)
with ``--results-path OUT_DIR/NAME`` and writes ``OUT_DIR/hp.txt``: a ``== NAME`` header, then the
H- and P- lines of that configuration in id order.  ``--batch-invariant`` switches on torch's
deterministic algorithms for the rest of the process, so it runs last.
"""
import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
USER_DIR = str(HERE.parents[1] / "fairseq_dlm")
COMMON = ["--task", "diffusion_lm", "--gen-subset", "test", "--cpu", "--batch-size", "64", "--num-workers", "0",
          "--iter-decode-max-iter", "10"]
ORACLE = ["--oracle-length"]
# name -> (checkpoint under ROOT/models, fairseq-generate flags); each model has its length head, on a
# backbone that the length stage kept bit-identical to stage 1's
CONFIGS = {
    "full-oracle": ("full.pt", ORACLE),
    "full-lb3": ("full.pt", ["--iter-decode-with-beam", "3"]),
    "prefix_lm-oracle": ("prefix_lm.pt", ORACLE),
    "prefix_lm-lb3": ("prefix_lm.pt", ["--iter-decode-with-beam", "3"]),
    "cmlm": ("full.pt", [*ORACLE, "--decoding-strategy", "cmlm"]),
    "ar": ("full.pt", [*ORACLE, "--decoding-strategy", "ar"]),
    "threshold": ("full.pt", [*ORACLE, "--decoding-strategy", "threshold"]),
    "blocks": ("full.pt", [*ORACLE, "--block-length", "3"]),
    "patience": ("full.pt", [*ORACLE, "--early-exit", "patience", "--exit-patience", "2"]),
    "stochastic": ("full.pt", [*ORACLE, "--decoding-strategy", "reparam-cond-stochastic1.0-linear", "--seed", "7"]),
    "sampling": ("full.pt", ["--iter-decode-with-beam", "2", "--decoding-temperature", "1.0", "--seed", "7"]),
    "batch-invariant": ("full.pt", ["--iter-decode-with-beam", "3", "--batch-invariant"]),
}
_ID = re.compile(r"^[HP]-(\d+)\t")


def arguments(name: str, root: Path, out: Path) -> List[str]:
    """The ``fairseq-generate`` arguments of configuration ``name`` (results under ``out/name``)."""
    checkpoint, flags = CONFIGS[name]
    return [str(root / "data"), "--user-dir", USER_DIR, *COMMON, "--path", str(root / "models" / checkpoint),
            "--results-path", str(out / name), *flags]


def hp_lines(out: Path, name: str) -> List[str]:
    """The H/P lines that ``fairseq-generate`` wrote for ``name``, in id order."""
    lines = [line for line in (out / name / "generate-test.txt").read_text(encoding="utf-8").splitlines()
             if _ID.match(line)]
    return sorted(lines, key=lambda line: (int(_ID.match(line).group(1)), line[0]))


def decode(root: Path, out: Path, names=None) -> Dict[str, List[str]]:
    """``{name: [H/P lines in id order]}`` for ``names`` (default: every configuration)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import generate

    results = {}
    for name in names or CONFIGS:
        parser = options.get_generation_parser()
        args = options.parse_args_and_arch(parser, arguments(name, root, out))
        generate.main(convert_namespace_to_omegaconf(args))
        results[name] = hp_lines(out, name)
    return results


def write(results: Dict[str, List[str]], path: Path) -> None:
    path.write_text("".join(f"== {name}\n" + "".join(line + "\n" for line in lines)
                            for name, lines in results.items()), encoding="utf-8")


def read(path: Path) -> Dict[str, List[str]]:
    results, name = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("== "):
            name = line[3:]
            results[name] = []
        else:
            results[name].append(line)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder for the fairseq-generate outputs and hp.txt")
    p.add_argument("--root", type=Path, default=HERE, help="folder with data/ and models/ (default: %(default)s)")
    a = p.parse_args(argv)
    write(decode(a.root, a.out), a.out / "hp.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
