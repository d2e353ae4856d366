"""A downloaded checkpoint cannot run code (``fairseq_dlm/safe_load.py``, issue 18.1).

A pickle whose ``__reduce__`` returns ``(exec, ...)`` is refused, with a message naming what it
refers to and the opt-in, by every loader: ``fairseq-generate --path``, ``fairseq-train`` (resume and
``--finetune-from-model``), ``DiffusionLM.from_pretrained``, ``scripts/average_checkpoints.py`` and
``scripts/export_hf.py``; the payload never runs unless ``--trust-checkpoint`` /
``trust_checkpoint=True`` is given.  What the project writes still loads without the opt-in: stage 1
and the length stage here; EMA and averaged checkpoints (``test_average_ema.py``), converted official
releases (``test_official_import.py``) and checkpoints with the backbone in the task state
(``test_task_base.py``) are decoded by ``fairseq-generate`` in their own tests, through the same loader.
"""
import argparse
import collections
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, REVERSE_TRAIN, USER_DIR, cli


class Payload:
    """What a malicious checkpoint holds: unpickling it writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('the payload ran')",)


@pytest.fixture
def evil(tmp_path, reverse_model):
    """``(checkpoint, marker)``: the trained reverse model with a payload in its ``extra_state``."""
    state = torch.load(reverse_model, weights_only=False)
    marker = tmp_path / "PWNED"
    state["extra_state"]["note"] = Payload(marker)
    path = tmp_path / "downloaded" / "checkpoint_last.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path, marker


def _refused(proc, path, tool):
    """The command failed with the one-line message (no stack trace) naming the file, exec and the opt-in."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"{tool}: error: {path} was not loaded: its pickle refers to exec"), message
    assert "--trust-checkpoint" in message and "scripts/export_hf.py" in message


def _script(name, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_fairseq_tools_refuse_the_payload_unless_trusted(evil, reverse_data, tmp_path):
    path, marker = evil
    generate = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", path, "--gen-subset", "test",
                "--oracle-length", "--cpu", "--max-sentences", 64]
    _refused(cli("generate", reverse_data, *generate, check=False), path, "fairseq-generate")
    assert not marker.exists()
    # fairseq-train: the file to fine-tune from, and a checkpoint_last.pt to resume
    train = [reverse_data, *REVERSE_TRAIN, "--criterion", "diffusion_lm", "--lr", "1e-3", "--max-update", 1,
             "--disable-validation"]
    _refused(cli("train", *train, "--finetune-from-model", path, "--save-dir", tmp_path / "ft", check=False),
             path, "fairseq-train")
    _refused(cli("train", *train, "--save-dir", path.parent, check=False), path, "fairseq-train")
    assert not marker.exists() and not (tmp_path / "ft" / "checkpoint_last.pt").exists()
    # the opt-in really loads it (and so runs what it holds): the refusal was the allow-list, not a bad file
    proc = cli("generate", reverse_data, *generate, "--trust-checkpoint")
    assert "BLEU" in proc.stdout and marker.read_text() == "the payload ran"


def test_python_api_refuses_the_payload_unless_trusted(evil, reverse_data, reverse_model, tmp_path):
    from fairseq_dlm import DiffusionLM
    from fairseq_dlm.safe_load import UntrustedCheckpointError

    path, marker = evil
    with pytest.raises(UntrustedCheckpointError, match=r"refers to exec.*trust_checkpoint=True"):
        DiffusionLM.from_pretrained(str(path), data=str(reverse_data))
    assert not marker.exists()
    # a checkpoint saved by a --trust-checkpoint run does not switch trust on for later loads
    state = torch.load(reverse_model, weights_only=False)
    state["cfg"]["task"]["trust_checkpoint"] = True
    torch.save(state, tmp_path / "trusting.pt")
    m = DiffusionLM.from_pretrained(str(tmp_path / "trusting.pt"), data=str(reverse_data))
    assert m.task.cfg.trust_checkpoint is False
    with pytest.raises(UntrustedCheckpointError):
        DiffusionLM.from_pretrained(str(path), data=str(reverse_data))
    assert not marker.exists()
    m = DiffusionLM.from_pretrained(str(path), data=str(reverse_data), trust_checkpoint=True)
    assert marker.exists() and m.generate("reverse : a b c =", steps=4, oracle_lengths=[3]) == "c b a"


def test_scripts_refuse_the_payload_unless_trusted(evil, reverse_data, tmp_path):
    path, marker = evil
    proc = _script("average_checkpoints.py", "--inputs", path, path, "--output", tmp_path / "avg.pt")
    assert proc.returncode == 1 and "refers to exec" in proc.stderr and "--trust-checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "avg.pt").exists()
    proc = _script("export_hf.py", path, "--out", tmp_path / "hf", "--data", reverse_data)
    assert proc.returncode == 2 and "refers to exec" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "hf").exists()
    proc = _script("average_checkpoints.py", "--inputs", path, "--output", tmp_path / "avg.pt", "--trust-checkpoint")
    assert proc.returncode == 0 and marker.exists()


def test_what_fairseq_checkpoints_hold_loads_without_trust(reverse_model, reverse_length_model, tmp_path):
    """Stage 1, the length stage, and an older fairseq checkpoint's objects: an ``argparse.Namespace``
    (``args``), an omegaconf ``cfg``, numpy values, defaultdicts."""
    from omegaconf import OmegaConf

    from fairseq_dlm import safe_load

    for path in (reverse_model, reverse_length_model[0]):
        assert set(safe_load.load(str(path))) >= {"cfg", "model", "optimizer_history", "extra_state"}
    older = {"args": argparse.Namespace(arch="transformer", lr=[0.001], max_tokens=4096),
             "cfg": OmegaConf.create({"task": {"_name": "translation", "data": "bin"}, "common": {"seed": 1}}),
             "model": {"w": torch.ones(2)}, "extra_state": {"best": np.float64(3.5), "counts": np.arange(3),
                                                           "meters": collections.defaultdict(list)}}
    torch.save(older, tmp_path / "older.pt")
    state = safe_load.load(str(tmp_path / "older.pt"))
    assert state["args"].lr == [0.001] and state["cfg"].task.data == "bin"
    assert state["extra_state"]["best"] == 3.5 and state["extra_state"]["counts"].tolist() == [0, 1, 2]
