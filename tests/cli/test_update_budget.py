"""An update budget makes training a function of seed, data and thread count, not of the machine's
speed (the quickstarts' ``--updates``): a run slowed down by competing busy processes ends with the
same weights and optimizer state as an unhurried one."""
import subprocess
import sys
import time

import torch

from conftest import REVERSE_TRAIN, cli
from fairseq_dlm.checkpoints import trained_updates

BUSY = "import time\nend = time.time() + 300\nwhile time.time() < end:\n    pass\n"


def _train(data, save_dir):
    start = time.perf_counter()
    cli("train", data, *REVERSE_TRAIN, "--criterion", "diffusion_lm", "--lr", 3e-3, "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", 5, "--max-update", 15, "--disable-validation", "--save-dir", save_dir)
    return time.perf_counter() - start


def test_an_update_budget_gives_the_same_checkpoint_on_a_busy_machine(reverse_data, tmp_path):
    quiet = _train(reverse_data, tmp_path / "quiet")
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]  # one per core of a 2-core machine
    try:
        slowed = _train(reverse_data, tmp_path / "busy")
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print(f"unhurried {quiet:.1f} s, with two busy processes {slowed:.1f} s")
    a, b = (torch.load(tmp_path / run / "checkpoint_last.pt", map_location="cpu", weights_only=False)
            for run in ("quiet", "busy"))
    assert trained_updates(tmp_path / "quiet" / "checkpoint_last.pt") == 15
    assert trained_updates(tmp_path / "busy" / "checkpoint_last.pt") == 15
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    moments = [(s["exp_avg"], t["exp_avg"]) for s, t in zip(a["last_optimizer_state"]["state"].values(),
                                                             b["last_optimizer_state"]["state"].values())]
    assert moments and all(torch.equal(x, y) for x, y in moments)
