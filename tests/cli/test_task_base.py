"""The shared diffusion task base: validation by a named metric, the --eval-bleu spellings, and
checkpoints written before the backbone state moved into the model config (issue 9, step 1)."""
import json
import re

import pytest
import torch

from conftest import USER_DIR, cli
from fairseq_dlm.metrics.rouge import rouge_report

TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--criterion", "diffusion_lm", "--cpu",
         "--arch", "xlmr_diffusion_tiny", "--optimizer", "torch_adamw", "--lr", "1e-3", "--max-tokens", 2000,
         "--log-format", "simple", "--log-interval", 1, "--no-epoch-checkpoints", "--seed", 1, "--max-update", 4,
         "--validate-interval-updates", 2, "--save-interval-updates", 2]


def _valid_lines(proc):
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "valid on 'valid' subset" in line]


def test_validation_metric_by_name_selects_the_best_checkpoint(translation_data, tmp_path, metric="rougeL"):
    proc = cli("train", translation_data, *TRAIN, "--eval-metric", metric, "--eval-post-process", "sentencepiece",
               "--best-checkpoint-metric", metric, "--maximize-best-checkpoint-metric", "--save-dir", tmp_path)
    lines = _valid_lines(proc)
    assert len(lines) >= 2
    scores = [float(re.search(rf"\| {metric} ([\d.]+) ", line).group(1)) for line in lines]
    assert all(0 <= s <= 100 for s in scores)
    best = torch.load(tmp_path / "checkpoint_best.pt", weights_only=False)["extra_state"]
    assert best["best"] == pytest.approx(max(scores))

    # the same ROUGE at test time: fairseq-generate --scoring rouge (the plugin's scorer)
    proc = cli("generate", translation_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path",
               tmp_path / "checkpoint_best.pt", "--cpu", "--gen-subset", "test", "--oracle-length",
               "--iter-decode-max-iter", 2, "--post-process", "sentencepiece", "--scoring", "rouge")
    printed = re.search(r"ROUGE F: rouge1 = ([\d.]+), rouge2 = ([\d.]+), rougeL = ([\d.]+) "
                        r"\(rouge-score, stemmer: yes, mean over 12 examples\)", proc.stdout)
    assert printed, proc.stdout[-500:]
    hyps = dict(re.findall(r"^D-(\d+)\t\S+\t(.*)$", proc.stdout, re.M))
    refs = dict(re.findall(r"^T-(\d+)\t(.*)$", proc.stdout, re.M))
    expected = rouge_report([hyps[i] for i in sorted(refs)], [refs[i] for i in sorted(refs)])
    assert [float(x) for x in printed.groups()] == pytest.approx([expected[k] for k in ("rouge1", "rouge2", "rougeL")],
                                                                 abs=0.006)


def test_eval_bleu_spellings_still_work(translation_data, tmp_path):
    proc = cli("train", translation_data, *TRAIN, "--eval-bleu", "--eval-bleu-args", '{"iter_decode_max_iter": 2}',
               "--eval-bleu-remove-bpe", "sentencepiece", "--eval-bleu-print-samples",
               "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric", "--save-dir", tmp_path)
    log = proc.stdout + proc.stderr
    assert all(re.search(r"\| bleu [\d.]+ ", line) for line in _valid_lines(proc))
    assert "example hypothesis:" in log and "example reference:" in log


@pytest.mark.parametrize("flags, message", [
    (["--eval-metric", "blue"], "--eval-metric 'blue' is not a metric; known: "),
    (["--eval-metric", "bleu", "--eval-metric-options", "{tokenize: intl}"], "--eval-metric-options"),
    (["--eval-bleu", "--eval-metric", "rougeL"], "--eval-bleu contradicts --eval-metric rougeL"),
])
def test_bad_validation_options_are_clear_errors(translation_data, tmp_path, flags, message):
    proc = cli("train", translation_data, *TRAIN, *flags, "--save-dir", tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr


def test_checkpoint_with_backbone_in_task_state_still_decodes(translation_data, tiny_pretrained, tmp_path):
    """Checkpoints written before 2026-12 kept the backbone state in the task state."""
    cli("train", translation_data, *TRAIN, "--pretrained", tiny_pretrained, "--save-dir", tmp_path / "new")
    state = torch.load(tmp_path / "new" / "checkpoint_last.pt", weights_only=False)
    state["task_state"] = {"backbone": json.loads(state["cfg"]["model"].pop("backbone_state"))}
    torch.save(state, tmp_path / "old.pt")
    proc = cli("generate", translation_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path",
               tmp_path / "old.pt", "--cpu", "--gen-subset", "test", "--oracle-length", "--iter-decode-max-iter", 2)
    assert len(re.findall(r"^H-\d+\t", proc.stdout, re.M)) == 12
