"""``--optimizer torch_adamw`` and ``--lr-scheduler log_warmup_constant`` in the real
``fairseq-preprocess`` / ``fairseq-train`` CLI on a tiny random corpus (the optimizer and schedule
themselves: ``tests/unit/test_optim.py``)."""
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from fairseq_dlm.optim import log_warmup_constant as lwc

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*version_base.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*_group_.*:UserWarning"),
]

BIN = Path(sys.executable).parent
# --------------------------------------------------------------------------- (d)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """A tiny random parallel corpus binarised with ``fairseq-preprocess``."""
    if not (BIN / "fairseq-train").exists():
        pytest.skip("fairseq CLI not installed next to this python")
    root = tmp_path_factory.mktemp("cli")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(20)]
    for split, n in (("train", 64), ("valid", 8)):
        src = [" ".join(rng.choices(words, k=rng.randint(3, 8))) for _ in range(n)]
        (root / f"{split}.src").write_text("\n".join(src) + "\n")
        tgt = [" ".join(reversed(s.split())) for s in src]  # task: reverse the words
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    _run([BIN / "fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
          "--trainpref", root / "train", "--validpref", root / "valid", "--destdir",
          root / "bin", "--joined-dictionary", "--workers", "1"], env, root)
    return root, env


def _run(cmd, env, cwd):
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.parametrize(
    "extra, W",
    [(["--warmup-ratio", "0.5"], 5),  # W = ceil(0.5 * max_update 10)
     (["--warmup-updates", "6", "--fp16", "--fp16-no-flatten-grads"], 6)],
    ids=["fp32", "fp16"],
)
def test_fairseq_train_cli(cli_env, extra, W):
    root, env = cli_env
    out = _run([BIN / "fairseq-train", root / "bin", "--task", "translation",
                "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
                "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
                "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
                "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
                "--user-dir", REPO / "fairseq_dlm",
                "--optimizer", "torch_adamw", "--torch-impl", "fused",
                "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.01",
                "--lr-scheduler", "log_warmup_constant", "--lr", "1e-3",
                "--max-update", "10", "--cpu", "--max-tokens", "100", "--no-save",
                "--disable-validation", "--log-format", "json", "--log-interval", "1",
                *extra], env, root)
    assert "torch_adamw: --torch-impl fused -> fused" in out
    logged = {}
    for line in out.splitlines():
        if "| train_inner | " in line:
            stats = json.loads(line.split("| train_inner | ", 1)[1])
            logged[int(stats["num_updates"])] = float(stats["lr"])
    # after update k fairseq logs the LR it just set for the next update: lr(k)
    assert sorted(logged) == list(range(1, 11))
    for k, lr in logged.items():
        assert lr == pytest.approx(lwc.log_warmup_lr(k, 1e-3, W), rel=1e-5), (k, logged)
    assert logged[1] == pytest.approx(1e-3 * math.log(2) / math.log(W), rel=1e-5)
