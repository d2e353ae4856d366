"""A checkpoint's backbone wins over the command line whenever fairseq-train loads it (issue 8.1, 8.6).

With a pruned dictionary the LM head is untied from the embeddings.  Resuming or starting the
length stage without ``--pretrained`` used to rebuild a *tied* backbone from the arch preset, and
loading then silently overwrote the decoder with the embeddings.
"""
import json
import re
import shutil

import pytest
import torch

from conftest import USER_DIR, cli

TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--criterion", "diffusion_lm", "--cpu",
         "--arch", "xlmr_diffusion_tiny", "--optimizer", "torch_adamw", "--max-tokens", 2000,
         "--log-format", "simple", "--log-interval", 1, "--no-epoch-checkpoints", "--seed", 1]
EMB, DEC = "hf.roberta.embeddings.word_embeddings.weight", "hf.lm_head.decoder.weight"


def _model(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, translation_data, tiny_pretrained):
    """6 updates from the tiny pretrained backbone on a pruned dictionary: an untied LM head."""
    save = tmp_path_factory.mktemp("stage1")
    cli("train", translation_data, *TRAIN, "--pretrained", tiny_pretrained, "--lr", "1e-3",
        "--max-update", 6, "--save-dir", save)
    state = torch.load(save / "checkpoint_last.pt", weights_only=False)
    assert json.loads(state["cfg"]["model"]["backbone_state"])["config"]["tie_word_embeddings"] is False
    model = state["model"]
    assert (model[EMB] - model[DEC]).abs().max() > 1e-4, "the test needs an LM head that differs from the embeddings"
    return save


def test_length_stage_without_pretrained_keeps_the_untied_head(stage1, translation_data, tmp_path):
    proc = cli("train", translation_data, *TRAIN, "--length-head", "--freeze-backbone", "--criterion",
               "diffusion_length", "--finetune-from-model", stage1 / "checkpoint_last.pt", "--lr", "1e-3",
               "--max-update", 2, "--save-dir", tmp_path)
    assert "backbone built from the config saved in" in proc.stdout + proc.stderr
    before, after = _model(stage1 / "checkpoint_last.pt"), _model(tmp_path / "checkpoint_last.pt")
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed in the frozen length stage"
    assert any(k.startswith("length_head.") for k in after)


@pytest.mark.parametrize("reset", [True, False], ids=["reset-optimizer", "keep-optimizer"])
def test_resume_without_pretrained_loads_the_checkpoint_exactly(stage1, translation_data, tmp_path, reset):
    save = tmp_path / "resumed"
    shutil.copytree(stage1, save)
    flags = ["--reset-optimizer"] if reset else []
    # a learning rate of 1e-12 leaves the weights as loaded, up to ~1e-12
    proc = cli("train", translation_data, *TRAIN, "--lr", "1e-12", "--max-update", 7, "--save-dir", save, *flags)
    assert re.search(r"Loaded checkpoint .*checkpoint_last.pt", proc.stdout + proc.stderr)
    before, after = _model(stage1 / "checkpoint_last.pt"), _model(save / "checkpoint_last.pt")
    assert (after[DEC] - before[DEC]).abs().max() < 1e-8
    assert (after[EMB] - before[EMB]).abs().max() < 1e-8


def test_pretrained_that_disagrees_with_the_checkpoint_is_an_error(stage1, translation_data, tiny_pretrained, tmp_path):
    from transformers import XLMRobertaConfig

    other = tmp_path / "other_backbone"
    shutil.copytree(tiny_pretrained, other)
    config = XLMRobertaConfig.from_pretrained(other)
    config.num_hidden_layers = 3
    config.save_pretrained(other)
    save = tmp_path / "resumed"
    shutil.copytree(stage1, save)
    proc = cli("train", translation_data, *TRAIN, "--pretrained", other, "--lr", "1e-3", "--max-update", 7,
               "--save-dir", save, check=False)
    assert proc.returncode != 0
    assert f"--pretrained {other} does not match the backbone saved in {save / 'checkpoint_last.pt'}" in proc.stderr
    assert "num_hidden_layers 3 vs 2" in proc.stderr


def test_length_stage_in_stage_one_save_dir_gets_one_clear_message(stage1, translation_data, tmp_path):
    save = tmp_path / "same"
    shutil.copytree(stage1, save)
    proc = cli("train", translation_data, *TRAIN, "--length-head", "--freeze-backbone", "--criterion",
               "diffusion_length", "--finetune-from-model", save / "checkpoint_last.pt", "--max-update", 2,
               "--save-dir", save, check=False)
    assert proc.returncode != 0
    assert f"--save-dir {save} already holds checkpoint_last.pt of another run" in proc.stderr
    assert "Give this stage a new --save-dir" in proc.stderr
    assert "--reset-optimizer" not in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--num-diffusion-timesteps", "0"], "--num-diffusion-timesteps must be ≥ 1"),
    (["--label-smoothing", "1.0"], "--label-smoothing must be in [0, 1)"),
    (["--label-smoothing", "-0.1"], "--label-smoothing must be in [0, 1)"),
])
def test_criterion_options_are_validated(translation_data, tmp_path, flags, message):
    proc = cli("train", translation_data, *TRAIN, "--lr", "1e-3", "--max-update", 1, "--save-dir", tmp_path,
               *flags, check=False)
    assert proc.returncode == 1, proc.returncode  # a Python error, not an abort (134)
    assert message in proc.stderr
