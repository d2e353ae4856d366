"""For the scripts that drive fairseq's command-line tools: locating them, and running a command
on the console (printed first, its output streamed and logged)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path


def fairseq_tool(name: str) -> str:
    """``fairseq-*`` next to the running Python (a venv), else on ``PATH`` (e.g. the GPU kit's)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def run(cmd, log=None) -> None:
    """Run ``cmd``, written to stdout first; its output goes to ``log`` (a file) and, without a log or
    for the lines that show progress, to stdout; ``SystemExit`` with its last 40 lines on failure."""
    cmd = [str(c) for c in cmd]
    sys.stdout.write("\n$ " + " ".join(cmd) + "\n")
    sys.stdout.flush()
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    with open(log, "w") if log else open(os.devnull, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        tail = []
        for line in proc.stdout:
            f.write(line)
            f.flush()
            tail = (tail + [line])[-40:]
            if not log or _interesting(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        if proc.wait() != 0:
            raise SystemExit(f"command failed ({proc.returncode}):\n{''.join(tail)}")


def _interesting(line):
    return any(k in line for k in ("train_inner", "| valid |", "Stopping", "done training", "BLEU", "%|"))
