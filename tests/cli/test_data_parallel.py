"""Two hand-launched gloo ranks of the real fairseq-train on the CPU (ENVIRONMENT.md B6).

Each rank reads the same virtual epoch and fairseq's iterator deals the batches out, so an epoch
of E examples in batches of b per rank takes exactly E / (2b) updates of 2b examples: every
example once, on one rank (a duplicated epoch would take twice the updates)."""
import os
import re
import socket
import subprocess

import pytest

from conftest import BIN, USER_DIR
from test_instruct_task import instruct_data  # noqa: F401  (fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(data, *args, timeout=300):
    port = _free_port()
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [str(BIN / "fairseq-train"), str(data), *map(str, args), "--cpu", "--distributed-world-size", "2",
             "--distributed-rank", str(rank), "--distributed-init-method", f"tcp://127.0.0.1:{port}",
             "--distributed-no-spawn", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for rank in (0, 1)
    ]
    logs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return logs


def _epochs(log):
    """``[(epoch, bsz, num_updates)]`` of the ``train`` summary lines."""
    return [(int(e), float(b), int(u)) for e, b, u in
            re.findall(r"\| train \| epoch (\d+) \|.*?\| bsz ([\d.]+) \| num_updates (\d+)", log)]


def test_instruction_epochs_are_dealt_out_across_ranks(instruct_data, tmp_path):  # noqa: F811
    logs = _two_ranks(instruct_data, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch",
                      "xlmr_diffusion_tiny", "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--lr",
                      "1e-3", "--seed", 1, "--batch-size", 4, "--epoch-size", 40, "--max-positions", 24,
                      "--max-epoch", 2, "--disable-validation", "--log-format", "simple", "--save-dir", tmp_path)
    assert _epochs(logs[0]) == [(1, 8.0, 5), (2, 8.0, 10)]  # 40 examples = 5 updates × 2 ranks × 4
    assert (tmp_path / "checkpoint_last.pt").is_file()


def test_translation_trains_data_parallel(translation_data, tmp_path):
    logs = _two_ranks(translation_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch",
                      "xlmr_diffusion_tiny", "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--lr",
                      "1e-3", "--seed", 1, "--batch-size", 25, "--max-epoch", 1, "--disable-validation",
                      "--log-format", "simple", "--save-dir", tmp_path)
    [(epoch, bsz, updates)] = _epochs(logs[0])  # batches of ≤ 25 per rank, as batch_by_size makes them
    assert round(bsz * updates) == 300, (bsz, updates)  # every pair once in the epoch
    assert (tmp_path / "checkpoint_last.pt").is_file()
