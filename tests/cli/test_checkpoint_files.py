"""Checkpoint files survive a kill during a save, and damaged ones get a clear message
(``fairseq_dlm/checkpoints/files.py``): a kill mid-copy, in-process loads of damaged files, and
the real ``fairseq-train`` and ``fairseq-generate`` on a tiny model."""
import os
import re
import shutil
import signal
import sys
import types

import pytest
import torch

import fairseq_dlm
from conftest import USER_DIR, cli
from fairseq import checkpoint_utils
from fairseq.dataclass.configs import CheckpointConfig
from fairseq.file_io import PathManager as FairseqPathManager
from fairseq_dlm.checkpoints import CheckpointFileError

fairseq_dlm.register()  # installs the shims, as --user-dir does

TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_tiny",
         "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--lr", "1e-3", "--max-tokens", 2000,
         "--cpu", "--seed", 1, "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", 1,
         "--save-interval-updates", 2]


def _truncate(path, size=None):
    """Cut ``path`` to ``size`` bytes (default: half), as a kill during a non-atomic copy does."""
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2 if size is None else size)


def _copy_killed_midway(copy, src, dst):
    """Run ``copy(src, dst, overwrite=True)`` in a forked child that SIGKILLs itself right after the
    first MiB reaches the destination file (``shutil.copyfile`` copies with ``os.sendfile``)."""
    pid = os.fork()
    if pid == 0:  # child: never returns to pytest
        try:
            sendfile = os.sendfile

            def sendfile_then_die(out_fd, in_fd, offset, count):
                sendfile(out_fd, in_fd, offset, min(count, 1 << 20))
                os.kill(os.getpid(), signal.SIGKILL)

            os.sendfile = sendfile_then_die
            copy(str(src), str(dst), overwrite=True)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the copy was not killed midway"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="shutil.copyfile uses os.sendfile on Linux")
@pytest.mark.parametrize("which", ["installed", "fairseq"])
def test_kill_during_copy_keeps_the_previous_file(tmp_path, which):
    src, dst = tmp_path / "checkpoint_1_4.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(os.urandom(4 << 20))
    old = b"previous good checkpoint" * 100_000
    dst.write_bytes(old)
    copy = checkpoint_utils.PathManager.copy if which == "installed" else FairseqPathManager.copy
    _copy_killed_midway(copy, src, dst)
    if which == "installed":
        assert dst.read_bytes() == old, "the destination changes only by os.replace"
        assert 0 < (tmp_path / "checkpoint_last.pt.tmp").stat().st_size < 4 << 20, "killed while writing the .tmp"
    else:  # what the shim prevents: fairseq's own copy destroys the previous file
        assert 0 < dst.stat().st_size < 4 << 20
    # the next save's copy completes and replaces the stale temporary file
    assert checkpoint_utils.PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == src.read_bytes() and not (tmp_path / "checkpoint_last.pt.tmp").exists()


def _fake_checkpoint(path, updates, mtime):
    torch.save({"model": {"w": torch.zeros(64)}, "args": None, "extra_state": {"train_iterator": {"epoch": 1}},
                "optimizer_history": [{"num_updates": updates, "optimizer_name": "x",
                                       "lr_scheduler_state": {}}]}, path)
    os.utime(path, ns=(mtime, mtime))


@pytest.mark.parametrize("size", [0, None])
def test_damaged_file_is_a_clear_error_naming_the_newest_complete_one(tmp_path, size):
    for updates, name in ((2, "checkpoint_1_2.pt"), (4, "checkpoint_1_4.pt"), (4, "checkpoint_last.pt")):
        _fake_checkpoint(tmp_path / name, updates, mtime=updates * 10**9 + len(name))
    (tmp_path / "checkpoint_1_6.pt.tmp").write_bytes(b"PK")  # leftovers are never candidates
    _truncate(tmp_path / "checkpoint_1_4.pt", 100)  # a damaged newer one is skipped
    _truncate(tmp_path / "checkpoint_last.pt", size)
    bad = str(tmp_path / "checkpoint_last.pt")
    with pytest.raises(CheckpointFileError) as err:
        checkpoint_utils.load_checkpoint_to_cpu(bad)
    msg = str(err.value)
    assert f"checkpoint file {bad} is truncated or corrupt" in msg
    assert ("empty (0 bytes)" if size == 0 else "not a complete zip archive") in msg
    alt = tmp_path / "checkpoint_1_2.pt"
    assert f"The newest complete checkpoint in {tmp_path} is {alt}: use it with --path {alt}" in msg
    assert checkpoint_utils.load_checkpoint_to_cpu(str(alt))["optimizer_history"][-1]["num_updates"] == 2


def test_damaged_file_alone_legacy_format_and_other_errors(tmp_path):
    bad = tmp_path / "model.pt"
    _fake_checkpoint(bad, 1, 10**9)
    _truncate(bad)
    with pytest.raises(CheckpointFileError, match=rf"There is no other complete checkpoint\*\.pt in {tmp_path}\.$"):
        checkpoint_utils.load_checkpoint_to_cpu(str(bad))
    legacy = tmp_path / "legacy.pt"  # torch < 1.6 format (older released models): no structural test
    torch.save({"model": {"w": torch.zeros(4096)}}, legacy, _use_new_zipfile_serialization=False)
    _truncate(legacy)
    with pytest.raises(CheckpointFileError, match=r"legacy.pt is truncated or corrupt: torch cannot read it"):
        checkpoint_utils.load_checkpoint_to_cpu(str(legacy))
    with pytest.raises(FileNotFoundError):  # not a damaged file: fairseq's own error, untouched
        checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "missing.pt"))


class _Trainer:
    """What ``checkpoint_utils.load_checkpoint`` needs of fairseq's Trainer; its ``load_checkpoint``
    reads the file as the real one does, through ``checkpoint_utils.load_checkpoint_to_cpu``."""
    checkpoint_suffix = ""

    def __init__(self):
        self.loaded = []

    def load_checkpoint(self, filename, *args, **kwargs):
        self.loaded.append(checkpoint_utils.load_checkpoint_to_cpu(filename))

    def get_train_iterator(self, epoch, **kwargs):
        return types.SimpleNamespace(epoch=epoch)

    def lr_step(self, epoch):
        pass


@pytest.fixture
def save_dir(tmp_path):
    """checkpoint_1_2.pt (complete) and a truncated checkpoint_last.pt written after it."""
    _fake_checkpoint(tmp_path / "checkpoint_1_2.pt", 2, mtime=2 * 10**9)
    _fake_checkpoint(tmp_path / "checkpoint_last.pt", 4, mtime=4 * 10**9)
    _truncate(tmp_path / "checkpoint_last.pt")
    return tmp_path


def test_implicit_resume_falls_back_with_a_warning(save_dir, caplog):
    trainer = _Trainer()
    checkpoint_utils.load_checkpoint(CheckpointConfig(save_dir=str(save_dir)), trainer)
    assert [s["optimizer_history"][-1]["num_updates"] for s in trainer.loaded] == [2]
    assert (f"checkpoint file {save_dir / 'checkpoint_last.pt'} is truncated or corrupt: it is not a complete zip "
            f"archive") in caplog.text
    assert f"resuming from the newest complete checkpoint in the save dir instead: {save_dir / 'checkpoint_1_2.pt'}" \
        in caplog.text
    with pytest.raises(CheckpointFileError):  # the fallback is scoped to that resume
        checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"))


def test_explicitly_named_damaged_files_are_errors_with_the_flag_to_use(save_dir, tmp_path_factory):
    last, alt = save_dir / "checkpoint_last.pt", save_dir / "checkpoint_1_2.pt"
    cfg = CheckpointConfig(save_dir=str(tmp_path_factory.mktemp("new")), restore_file=str(last))
    with pytest.raises(CheckpointFileError, match=re.escape(f"use it with --restore-file {alt}.")):
        checkpoint_utils.load_checkpoint(cfg, _Trainer())
    cfg = CheckpointConfig(save_dir=str(tmp_path_factory.mktemp("new")), finetune_from_model=str(last))
    with pytest.raises(CheckpointFileError, match=re.escape(f"use it with --finetune-from-model {alt}.")):
        checkpoint_utils.load_checkpoint(cfg, _Trainer())
    alt.unlink()  # nothing left to fall back to: an error, also on an implicit resume
    with pytest.raises(CheckpointFileError, match=r"no other complete checkpoint\*\.pt in .*; move the file away"):
        checkpoint_utils.load_checkpoint(CheckpointConfig(save_dir=str(save_dir)), _Trainer())


# ---------------------------------------------------------------------------------------------
# The real command-line tools.

@pytest.fixture(scope="module")
def trained(tmp_path_factory, translation_data):
    """4 updates, an interval checkpoint every 2 (then copied to best and last)."""
    save = tmp_path_factory.mktemp("ckpt")
    cli("train", translation_data, *TRAIN, "--max-update", 4, "--save-dir", save)
    return save


def _updates(path):
    return torch.load(path, weights_only=False)["optimizer_history"][-1]["num_updates"]


def test_resume_from_damaged_last_falls_back_with_a_warning(trained, translation_data, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained, save)
    last = save / "checkpoint_last.pt"
    updates = {str(p): _updates(p) for p in save.glob("*.pt")}
    assert updates[str(last)] == 4
    _truncate(last)
    proc = cli("train", translation_data, *TRAIN, "--max-update", 5, "--save-dir", save)
    log = proc.stdout + proc.stderr
    warned = re.search(rf"WARNING .*checkpoint file {last} is truncated or corrupt: .*; resuming from the "
                       rf"newest complete checkpoint in the save dir instead: (\S+)", log)
    assert warned, log[-3000:]
    assert updates[warned.group(1)] == 4
    assert re.search(r"Loaded checkpoint .* \(epoch 1 @ 4 updates\)", log)
    assert _updates(last) == 5


def test_path_to_truncated_checkpoint_is_a_clear_error(trained, translation_data, tmp_path):
    """``fairseq-generate --path`` (``fairseq-interactive`` loads through the same
    ``load_model_ensemble`` → ``load_checkpoint_to_cpu``)."""
    bad = tmp_path / "checkpoint_best.pt"
    bad.write_bytes((trained / "checkpoint_best.pt").read_bytes()[:50_000])
    proc = cli("generate", translation_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", bad,
               "--cpu", "--gen-subset", "test", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr  # the message, not the stack
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"fairseq-generate: error: checkpoint file {bad} is truncated or corrupt")
    assert f"There is no other complete checkpoint*.pt in {tmp_path}." in last_line
    # a file that is no checkpoint at all is called that (not "cut short by a kill or a full disk")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, these are notes\n")
    proc = cli("generate", translation_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", notes,
               "--cpu", "--gen-subset", "test", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"fairseq-generate: error: checkpoint file {notes}: it is not a PyTorch checkpoint file (it starts with "
        "b'hell', neither a zip archive nor a pickle); pass a checkpoint_*.pt written by fairseq-train or "
        "scripts/convert_checkpoint.py")


def test_rerunning_a_finished_run_changes_nothing(trained, translation_data, tmp_path):
    """fairseq-train checks --max-update after an update: a finished command run again would train update
    N + 1 and overwrite checkpoint_last.pt.  It ends at once instead, and clears the .tmp files a save
    killed midway left behind."""
    save = tmp_path / "save"
    shutil.copytree(trained, save)
    before = {p.name: p.read_bytes() for p in save.glob("*.pt")}
    stale = [save / "checkpoint_last.pt.tmp", save / "checkpoint_1_4.pt.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (save / "notes.tmp").write_text("not ours")
    proc = cli("train", translation_data, *TRAIN, "--max-update", 4, "--save-dir", save)
    log = proc.stdout + proc.stderr
    assert f"{save / 'checkpoint_last.pt'} has already trained 4 updates and --max-update is 4: nothing to do" in log
    assert {p.name: p.read_bytes() for p in save.glob("*.pt")} == before
    assert not any(p.exists() for p in stale) and (save / "notes.tmp").exists()
    assert all(f"removed {p}, left by a save that was interrupted" in log for p in stale)
    # a finetuning stage from that checkpoint is not "finished": it starts its own count
    cli("train", translation_data, *TRAIN, "--max-update", 1, "--finetune-from-model",
        save / "checkpoint_last.pt", "--save-dir", tmp_path / "stage2")
    assert _updates(tmp_path / "stage2" / "checkpoint_last.pt") == 1
