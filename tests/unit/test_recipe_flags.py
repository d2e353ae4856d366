"""The paper's scripts' flags (``fairseq_dlm.recipes``): parsing, the ``--ds_config`` translation and
the checkpoint a folder stands for; no command runs (those tests: ``tests/cli/test_paper_scripts.py``)."""
import json

import pytest

from fairseq_dlm.recipes import checkpoint_choice as choice
from fairseq_dlm.recipes import commands, flags, settings


def test_flag_parsing():
    notes = []
    values = flags.parse("eval_task", ["--data_path=d", "--ckpt", "c", "--output_dir=o", "--length_bema=4"], notes)
    assert values["length_beam"] == "4" and values["max_iter"] == "50" and values["metric"] == "bleu"
    assert notes == ["--length_bema read as --length_beam (a misspelling in the paper's README)"]
    with pytest.raises(flags.FlagError, match=r"unknown flag --train_steps; known: --data_path --ckpt"):
        flags.parse("eval_task", ["--train_steps=3"], [])
    with pytest.raises(flags.FlagError, match=r"--metric=meteor is not one of bleu, rouge"):
        flags.parse("eval_task", ["--metric=meteor"], [])
    with pytest.raises(flags.FlagError, match=r"missing --data_path --output_dir --train_steps --mini_bsz"):
        flags.parse("task_train", [], [])
    with pytest.raises(flags.FlagError, match=r"--ckpt needs a value"):
        flags.parse("eval_task", ["--ckpt"], [])
    with pytest.raises(flags.FlagError, match=r"--mini_bsz=many is not a whole number"):
        flags.positive_int({"mini_bsz": "many"}, "mini_bsz")
    assert "--length_beam (default: '1')" in flags.usage("eval_task")


def test_ds_config_translation(tmp_path):
    def translate(config, cuda):
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(config))
        notes = []
        return settings.ds_config_flags(str(path), cuda, notes), notes

    zero2 = {"zero_optimization": {"stage": 2},
             "fp16": {"enabled": True, "initial_scale_power": 1, "loss_scale_window": 1000, "min_loss_scale": 0.01}}
    out, notes = translate(zero2, True)
    assert out == ["--ddp-backend", "fully_sharded", "--no-reshard-after-forward", "--fp16", "--fp16-init-scale", "2",
                   "--fp16-scale-window", "1000", "--min-loss-scale", "0.01"]
    assert notes == [f"--ds_config={tmp_path / 'ds.json'}: ZeRO 2 → FSDP without resharding, fp16"]
    assert translate({"zero_optimization": {"stage": 1}, "bf16": {"enabled": True}}, True)[0] == \
        ["--zero-sharding", "os", "--autocast-bf16"]
    out, notes = translate({"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}}, True)
    assert out == ["--ddp-backend", "fully_sharded", "--fp16"] and "fairseq's FSDP takes fp16 only" in notes[0]
    assert translate(zero2, False)[0] == []
    (tmp_path / "bad.json").write_text("{stage: 2}")
    with pytest.raises(flags.FlagError, match=r"--ds_config=.*bad.json is not JSON \(line 1"):
        settings.ds_config_flags(str(tmp_path / "bad.json"), True, [])
    # a ZeRO stage DeepSpeed does not have, or a quoted boolean, is named instead of read as something else
    for config, message in [
            ({"zero_optimization": {"stage": 7}}, r'"zero_optimization.stage" must be 0, 1, 2 or 3 .*not 7'),
            ({"zero_optimization": {"stage": "abc"}}, r'"zero_optimization.stage" must be 0, 1, 2 or 3 .*not "abc"'),
            ({"zero_optimization": {"stage": True}}, r'"zero_optimization.stage" must be 0, 1, 2 or 3 .*not true'),
            ({"zero_optimization": 5}, r'"zero_optimization" must be an object such as \{"stage": 2\}, not 5'),
            ({"fp16": {"enabled": "false"}}, r'"fp16.enabled" must be true, false or "auto" .*not "false"'),
            ({"bf16": {"enabled": 1}}, r'"bf16.enabled" must be true, false or "auto" .*not 1'),
            ({"bf16": True}, r'"bf16" must be an object such as \{"enabled": true\}, not true')]:
        for cuda in (True, False):
            with pytest.raises(flags.FlagError, match=r"--ds_config=.*ds\.json: " + message):
                translate(config, cuda)
    assert translate({"fp16": {"enabled": False}, "zero_optimization": {"stage": 0}}, True)[0] == []


def test_checkpoint_choice(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint_best.pt, checkpoint_E_U.pt, checkpoint_last.pt or checkpoint.pt"):
        choice.resolve_checkpoint(str(tmp_path))
    for name in ("checkpoint_last.pt", "checkpoint_3_5000.pt", "checkpoint_9_30000.pt"):
        (tmp_path / name).write_bytes(b"")
    assert choice.resolve_checkpoint(str(tmp_path)).endswith("checkpoint_9_30000.pt")
    (tmp_path / "checkpoint_best.pt").write_bytes(b"")
    assert choice.resolve_checkpoint(str(tmp_path)).endswith("checkpoint_best.pt")
    notes = []
    values = flags.parse("eval_task", ["--data_path", str(tmp_path), "--ckpt", str(tmp_path / "none"),
                                       "--output_dir", "o"], notes)
    with pytest.raises(flags.FlagError, match=r"--ckpt=.*none: checkpoint .*none does not exist"):
        commands.build("eval_task", values, False, notes)
