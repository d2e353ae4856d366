"""Learning must be shown: a tiny diffusion LM trained by fairseq-train learns to reverse
random symbol strings and decodes held-out strings with high BLEU."""
import re

from conftest import REVERSE_TRAIN, USER_DIR, cli

BLEU_THRESHOLD = 90.0  # the 500-update run of the reverse_model fixture reaches ~99.7; untrained < 5


def _bleu(data, ckpt, results):
    cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
        "--gen-subset", "test", "--batch-size", 64, "--oracle-length", "--iter-decode-max-iter", 10,
        "--scoring", "sacrebleu", "--results-path", results)
    out = (results / "generate-test.txt").read_text()
    assert len(re.findall(r"^H-\d+\t", out, re.M)) == 200, "every held-out example is decoded"
    return float(re.search(r"BLEU = ([\d.]+)", out).group(1))


def test_tiny_model_learns_to_reverse(tmp_path, reverse_data, reverse_model):
    cli("train", reverse_data, *REVERSE_TRAIN, "--criterion", "diffusion_lm", "--lr", "3e-3",
        "--max-update", 1, "--disable-validation", "--save-dir", tmp_path / "untrained")
    untrained = _bleu(reverse_data, tmp_path / "untrained" / "checkpoint_last.pt", tmp_path / "gen0")
    trained = _bleu(reverse_data, reverse_model, tmp_path / "gen1")
    assert untrained < 20.0
    assert trained >= BLEU_THRESHOLD, f"held-out BLEU {trained} < {BLEU_THRESHOLD}"
