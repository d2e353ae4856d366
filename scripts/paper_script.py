#!/usr/bin/env python
"""Runs one of the paper's scripts (``bash scripts/task_train.sh --data_path=... ...``, SPEC §9.1).

    python scripts/paper_script.py SCRIPT [--flag=value ...]

SCRIPT: task_train | task_train_length | eval_task | instruction_tuning | instruction_train_length | eval_instruct

Prints what it corrected or chose (one line each), then the fairseq command, then runs it with this
environment's ``fairseq-train`` / ``fairseq-generate``; exits with that command's status.  ``--help``
lists the script's flags; ``--dry-run`` prints without running.
"""
import os
import shlex
import subprocess
import sys
from pathlib import Path

from fairseq_dlm.recipes import commands, flags  # standard library only: no torch or fairseq import


def cuda_available() -> bool:
    """A CUDA device is visible (nvidia-smi lists one), without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def main(argv=None, run=subprocess.call) -> int:
    """``argv``: SCRIPT and its flags; ``run``: runs the built command (a list) and returns its exit status
    (default: a subprocess)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in flags.SCRIPTS:
        print(__doc__, file=sys.stderr)
        return 2
    script, rest = argv[0], argv[1:]
    if "--help" in rest or "-h" in rest:
        print(flags.usage(script))
        return 0
    dry = "--dry-run" in rest
    rest = [a for a in rest if a != "--dry-run"]
    notes = []
    try:
        values = flags.parse(script, rest, notes)
        cmd = commands.build(script, values, cuda_available(), notes)
    except flags.FlagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bin_dir = Path(sys.executable).parent
    if cmd[0].endswith(".py"):  # a script of this repository
        tool = [sys.executable, str(Path(__file__).resolve().parent / cmd[0])]
    else:
        tool = [str(bin_dir / cmd[0]) if (bin_dir / cmd[0]).exists() else cmd[0]]
    for note in notes:
        print(f"{script}.sh: {note}", flush=True)
    print("$ " + shlex.join([*tool, *cmd[1:]]), flush=True)
    if dry:
        return 0
    if script.startswith("eval_"):
        Path(values["output_dir"]).mkdir(parents=True, exist_ok=True)
    return run([*tool, *cmd[1:]])


if __name__ == "__main__":
    sys.exit(main())
