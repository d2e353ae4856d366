"""The real fairseq command-line tools, end to end, on tiny data and a tiny pretrained backbone."""
import json
import re

import pytest
import torch

from conftest import USER_DIR, cli, encode_lines, preprocess, write_split

TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--criterion", "diffusion_lm", "--cpu",
         "--optimizer", "torch_adamw", "--lr", "1e-3", "--max-tokens", 2000, "--log-format", "simple",
         "--log-interval", 1, "--no-epoch-checkpoints", "--seed", 1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, translation_data, tiny_pretrained):
    save = tmp_path_factory.mktemp("ckpt")
    proc = cli("train", translation_data, *TRAIN, "--arch", "xlmr_diffusion_tiny", "--pretrained", tiny_pretrained,
               "--max-update", 6, "--save-dir", save)
    return save, proc


def _generate(data, ckpt, *extra, check=True):
    return cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
               "--batch-size", 8, "--gen-subset", "test", *extra, check=check)


def test_train_logs_metrics_and_saves(trained):
    save, proc = trained
    log = proc.stdout + proc.stderr
    assert re.search(r"train_inner .*loss=[\d.]+, nll_loss=[\d.]+, accuracy=[\d.]+", log)
    assert "valid on 'valid' subset" in log
    assert (save / "checkpoint_last.pt").exists() and (save / "checkpoint_best.pt").exists()
    assert "kept (untied, pruned embeddings)" in log, "the tiny dictionary is a pruned subset of the backbone vocabulary"
    state = torch.load(save / "checkpoint_last.pt", weights_only=False)
    assert json.loads(state["cfg"]["model"]["backbone_state"])["config"]["num_hidden_layers"] == 2
    assert state["optimizer_history"][-1]["num_updates"] == 6


def test_generate_prints_hypotheses_and_bleu(trained, translation_data, tmp_path):
    save, _ = trained
    _generate(translation_data, save / "checkpoint_last.pt", "--oracle-length", "--iter-decode-max-iter", 5,
              "--scoring", "sacrebleu", "--post-process", "sentencepiece", "--results-path", tmp_path)
    out = (tmp_path / "generate-test.txt").read_text()
    hyps = re.findall(r"^H-(\d+)\t(-?[\d.]+|-inf)\t(.*)$", out, re.M)
    assert len(hyps) == 12
    srcs = dict(re.findall(r"^S-(\d+)\t(.*)$", out, re.M))
    assert all(s.startswith("Translate the German sentence") and s.endswith("English:") for s in srcs.values())
    refs = dict(re.findall(r"^T-(\d+)\t(.*)$", out, re.M))
    assert len(refs) == 12 and all("▁" not in r for r in refs.values()), "references are detokenized"
    assert all("<mask>" not in h and "▁" not in h for _, _, h in hyps)
    assert re.search(r"BLEU = [\d.]+ ", out)


def test_retain_iter_history_and_print_step(trained, translation_data, tmp_path):
    save, _ = trained
    _generate(translation_data, save / "checkpoint_last.pt", "--oracle-length", "--iter-decode-max-iter", 4,
              "--retain-iter-history", "--print-step", "--results-path", tmp_path)
    out = (tmp_path / "generate-test.txt").read_text()
    steps = re.findall(r"^E-0_(\d+)\t(.*)$", out, re.M)
    assert [int(s) for s, _ in steps] == [0, 1, 2, 3, 4]
    assert steps[0][1].split() and set(steps[0][1].split()) == {"<mask>"}, "step 0 is the all-mask canvas"
    assert "<mask>" not in steps[-1][1]
    counts = [h.split().count("<mask>") for _, h in steps]
    assert counts == sorted(counts, reverse=True) and counts[-1] == 0
    assert re.search(r"^I-0\t4$", out, re.M)


def test_reload_checkpoint_without_pretrained_dir(trained, translation_data, tiny_pretrained, tmp_path):
    """The checkpoint carries the backbone config: decoding works after the HF directory is gone."""
    import shutil

    save, _ = trained
    moved = tmp_path / "moved"
    shutil.move(str(tiny_pretrained), moved)
    try:
        proc = _generate(translation_data, save / "checkpoint_last.pt", "--oracle-length", "--iter-decode-max-iter", 2)
        assert re.search(r"^H-\d+\t", proc.stdout, re.M)
    finally:
        shutil.move(str(moved), tiny_pretrained)


def test_decoding_without_length_source_is_a_clear_error(trained, translation_data):
    save, _ = trained
    proc = _generate(translation_data, save / "checkpoint_last.pt", check=False)
    assert proc.returncode != 0
    assert "--oracle-length" in proc.stderr


def test_dictionary_mismatch_is_a_clear_error(trained, tmp_path, spm_model):
    save, _ = trained
    raw = tmp_path / "raw"
    lines = encode_lines(spm_model, ["der hund", "die katze sieht"])
    write_split(raw, "train", lines, lines[::-1])
    write_split(raw, "test", lines, lines[::-1])
    other = preprocess(raw, tmp_path / "bin", ("train", "test"))
    proc = _generate(other, save / "checkpoint_last.pt", "--oracle-length", check=False)
    assert proc.returncode != 0
    assert "dictionary mismatch" in proc.stderr and str(other / "dict.de.txt") in proc.stderr


def test_missing_pretrained_dir(translation_data, tmp_path):
    proc = cli("train", translation_data, *TRAIN, "--arch", "xlmr_diffusion_tiny", "--pretrained",
               tmp_path / "no_such_model", "--max-update", 1, "--save-dir", tmp_path / "ck", check=False)
    assert proc.returncode != 0
    assert "no_such_model" in proc.stderr and "is not a directory" in proc.stderr


def test_data_folder_without_dictionary(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli("train", tmp_path / "empty", *TRAIN, "--source-lang", "de", "--target-lang", "en",
               "--arch", "xlmr_diffusion_tiny", "--max-update", 1, "--save-dir", tmp_path / "ck", check=False)
    assert proc.returncode != 0
    assert "no dictionary at" in proc.stderr and "dict.de.txt" in proc.stderr


def test_long_prompts_are_filtered_and_logged(tmp_path):
    raw = tmp_path / "raw"
    short = ["a b c"] * 30
    src = short[:-2] + ["x " * 40, "y " * 50]
    write_split(raw, "train", src, short)
    write_split(raw, "valid", ["a b"] * 3, ["a"] * 3)
    data = preprocess(raw, tmp_path / "bin", ("train", "valid"))
    proc = cli("train", data, *TRAIN, "--arch", "xlmr_diffusion_tiny", "--max-positions", 32,
               "--max-update", 2, "--save-dir", tmp_path / "ck")
    log = proc.stdout + proc.stderr
    assert re.search(r"2 of 30 examples of split 'train' are longer than the model's 32 positions", log)


def test_max_tokens_limit_is_named(tmp_path):
    """Examples that fit the positions but not one batch: the message names --max-tokens (issue 8.5)."""
    raw = tmp_path / "raw"
    write_split(raw, "train", ["a b c"] * 20 + ["a b c d e f g h i j"] * 20, ["a b"] * 40)
    write_split(raw, "valid", ["a b"] * 3, ["a"] * 3)
    data = preprocess(raw, tmp_path / "bin", ("train", "valid"))
    # the last --max-tokens wins; a whole epoch (20 one-example batches) rather than --max-update 1,
    # which once ended the process while fairseq's batch-prefetch thread was still filling (SIGABRT)
    proc = cli("train", data, *TRAIN, "--max-tokens", 10, "--arch", "xlmr_diffusion_tiny", "--max-epoch", 1,
               "--disable-validation", "--save-dir", tmp_path / "ck")
    log = proc.stdout + proc.stderr
    assert re.search(r"20 of 40 examples of split 'train' are longer than --max-tokens 10 "
                     r"\(one example must fit a batch: raise --max-tokens\) and are skipped", log), log[-3000:]


def test_generate_refuses_over_long_examples_unless_told_to_skip(tmp_path):
    raw = tmp_path / "raw"
    write_split(raw, "train", ["a b c"] * 10, ["a b"] * 10)
    write_split(raw, "test", ["a b c"] * 4 + ["x " * 40], ["a b"] * 5)
    data = preprocess(raw, tmp_path / "bin", ("train", "test"))
    cli("train", data, *TRAIN, "--arch", "xlmr_diffusion_tiny", "--max-positions", 32, "--max-update", 1,
        "--disable-validation", "--save-dir", tmp_path / "ck")
    proc = _generate(data, tmp_path / "ck" / "checkpoint_last.pt", "--oracle-length", check=False)
    assert proc.returncode != 0
    assert "1 of 5 examples of split 'test' are longer than the model's 32 positions" in proc.stderr
    assert "--skip-invalid-size-inputs-valid-test" in proc.stderr
    proc = _generate(data, tmp_path / "ck" / "checkpoint_last.pt", "--oracle-length",
                     "--skip-invalid-size-inputs-valid-test")
    tail = proc.stdout.strip().splitlines()[-2:]
    assert tail[0].startswith("Generate test with beam="), tail
    assert tail[1].startswith("Skipped 1 of 5 examples of test longer than the model's 32 positions"), tail
    assert "scores are on the other 4" in tail[1]


def test_empty_split_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw"
    write_split(raw, "train", ["a b c"] * 5, ["a"] * 5)
    write_split(raw, "valid", [], [])
    data = preprocess(raw, tmp_path / "bin", ("train", "valid"))
    proc = cli("train", data, *TRAIN, "--arch", "xlmr_diffusion_tiny", "--max-update", 1,
               "--save-dir", tmp_path / "ck", check=False)
    assert proc.returncode != 0
    assert "split 'valid' is empty" in proc.stderr


@pytest.mark.parametrize("extra", [
    ["--decoding-strategy", "reparam-cond-stochastic1.0-linear", "--decoding-temperature", 0.7, "--mbr", 2],
    ["--decoding-strategy", "cmlm"],
    ["--decoding-strategy", "ar"],
    ["--decoding-strategy", "reparam-uncond-deterministic-linear", "--autocast-bf16", "--suppress-special-tokens"],
])
def test_generation_options(trained, translation_data, extra, tmp_path):
    save, _ = trained
    _generate(translation_data, save / "checkpoint_last.pt", "--oracle-length", "--iter-decode-max-iter", 3,
              "--results-path", tmp_path, *extra)
    out = (tmp_path / "generate-test.txt").read_text()
    hyps = dict(re.findall(r"^H-(\d+)\t\S+\t(.*)$", out, re.M))
    refs = dict(re.findall(r"^T-(\d+)\t(.*)$", out, re.M))
    assert len(hyps) == 12 and "<mask>" not in out.split("Generate")[0]
    for i, h in hyps.items():  # oracle length: as many slots as reference pieces (specials are dropped)
        assert len(h.split()) <= len(refs[i].split())
    if "--suppress-special-tokens" in extra:
        assert not any("<unk>" in h or "madeupword" in h for h in hyps.values())
        assert all(len(h.split()) == len(refs[i].split()) for i, h in hyps.items())


def test_bad_strategy_is_a_clear_error(trained, translation_data):
    save, _ = trained
    proc = _generate(translation_data, save / "checkpoint_last.pt", "--oracle-length",
                     "--decoding-strategy", "reparam-sometimes", check=False)
    assert proc.returncode != 0 and "unknown decoding strategy 'reparam-sometimes'" in proc.stderr


def test_resume_training_and_bf16_autocast(trained, translation_data, tmp_path):
    import shutil

    save, _ = trained
    resumed = tmp_path / "resumed"
    shutil.copytree(save, resumed)
    # without --pretrained the checkpoint's own backbone config is used (test_restore_backbone.py)
    proc = cli("train", translation_data, *TRAIN, "--arch", "xlmr_diffusion_tiny",
               "--max-update", 8, "--save-dir", resumed, "--autocast-bf16")
    log = proc.stdout + proc.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last.pt \(epoch \d+ @ 6 updates\)", log)
    assert re.search(r"num_updates=8\b", log)
    state = torch.load(resumed / "checkpoint_last.pt", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 8
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_interactive_with_sentencepiece(trained, translation_data, tiny_pretrained, spm_model, tmp_path):
    from conftest import PROMPT

    save, _ = trained
    cli("train", translation_data, *TRAIN, "--arch", "xlmr_diffusion_tiny", "--pretrained", tiny_pretrained,
        "--length-head", "--freeze-backbone", "--criterion", "diffusion_length",
        "--finetune-from-model", save / "checkpoint_last.pt", "--max-update", 3, "--save-dir", tmp_path)
    proc = cli("interactive", translation_data, "--user-dir", USER_DIR, "--task", "diffusion_lm",
               "--path", tmp_path / "checkpoint_last.pt", "--cpu", "--bpe", "sentencepiece",
               "--sentencepiece-model", spm_model, "--prompt-template", PROMPT, "--iter-decode-max-iter", 3,
               input="der hund sieht einen ball\n")
    src = re.search(r"^S-0\t(.*)$", proc.stdout, re.M).group(1)
    assert "▁" in src and "hund" in src.replace(" ", "")  # the prompt, as pieces
    detok = re.search(r"^D-0\t\S+\t(.*)$", proc.stdout, re.M).group(1)
    assert "▁" not in detok and "<mask>" not in detok
