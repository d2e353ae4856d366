"""For the scripts that drive fairseq's command-line tools: locating them, and running a command
on the console (printed first, its output streamed and logged, a ``fairseq-train`` run shown as
a progress line of updates done and time left)."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

_UPDATES = re.compile(r"\bnum_updates[=\s]+(\d+)")  # fairseq-train's train_inner / train lines, any log format


def fairseq_tool(name: str) -> str:
    """``fairseq-*`` next to the running Python (a venv), else on ``PATH`` (e.g. the GPU kit's)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class UpdateProgress:
    """One line of progress for a ``fairseq-train`` run with an update budget, e.g.
    ``stage 1: 120/300 updates (40%), 4:10 elapsed, ~6:15 left``, computed from the ``num_updates``
    of its log lines (the time left from the rate since the first count, so that start-up does not
    count).  On a terminal the line is rewritten in place; elsewhere it is written at each tenth of
    the budget.

    Args:
        total: the run's ``--max-update``.
        label: what is training.
        stream: where the line goes (default: stdout).
    """

    def __init__(self, total: int, label: str, stream: Optional[TextIO] = None):
        self.total, self.label = max(int(total), 1), label
        self.stream = stream or sys.stdout
        self.start, self.done, self._shown_tenth = time.monotonic(), 0, -1
        self._first = None  # (time, updates) of the first count seen: the rate excludes start-up

    def line(self) -> str:
        now = time.monotonic()
        elapsed = now - self.start
        if self._first is not None and self.done > self._first[1]:
            rate = (self.done - self._first[1]) / max(now - self._first[0], 1e-9)
        else:
            rate = self.done / elapsed if self.done and elapsed > 0 else None
        eta = "?" if rate is None else _clock((self.total - self.done) / rate)
        return (f"{self.label}: {self.done}/{self.total} updates ({100 * self.done // self.total}%), "
                f"{_clock(elapsed)} elapsed, ~{eta} left")

    def feed(self, text: str) -> None:
        """Read the update count from one output line of the run (other lines are ignored)."""
        found = _UPDATES.findall(text)
        if not found:
            return
        self.done = min(max(self.done, int(found[-1])), self.total)
        if self._first is None:
            self._first = (time.monotonic(), self.done)
        tenth = 10 * self.done // self.total
        if self.stream.isatty():
            self.stream.write("\r" + self.line())
        elif tenth > self._shown_tenth:
            self.stream.write(self.line() + "\n")
        self._shown_tenth = max(self._shown_tenth, tenth)
        self.stream.flush()

    def close(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}:{sec:02d}"


def run(cmd, log=None, progress: Optional[UpdateProgress] = None) -> None:
    """Run ``cmd``, written to stdout first; its output goes to ``log`` (a file) and, without a log or
    for the lines that show progress, to stdout (with ``progress``: that tracker's line instead of the
    training log lines); ``SystemExit`` with its last 40 lines on failure."""
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
            if progress is not None:
                progress.feed(line)
            elif not log or _interesting(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        if progress is not None:
            progress.close()
        if proc.wait() != 0:
            raise SystemExit(f"command failed ({proc.returncode}):\n{''.join(tail)}")


def _interesting(line):
    return any(k in line for k in ("train_inner", "| valid |", "Stopping", "done training", "BLEU", "%|"))
