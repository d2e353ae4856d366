"""Learning must be shown: a tiny diffusion LM trained by fairseq-train learns to reverse
random symbol strings and decodes held-out strings with high BLEU."""
import random
import re

from conftest import USER_DIR, cli, preprocess, write_split

ALPHABET = list("abcdefghijklmnop")
BLEU_THRESHOLD = 90.0  # a 500-update run reaches ~99.7 here; an untrained model scores < 5


def _strings(rng, n, exclude=frozenset()):
    out = []
    while len(out) < n:
        s = " ".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 8)))
        if s not in exclude:
            out.append(s)
    return out


def _bleu(data, ckpt, results):
    cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
        "--gen-subset", "test", "--batch-size", 64, "--oracle-length", "--iter-decode-max-iter", 10,
        "--scoring", "sacrebleu", "--results-path", results)
    out = (results / "generate-test.txt").read_text()
    assert len(re.findall(r"^H-\d+\t", out, re.M)) == 200, "every held-out example is decoded"
    return float(re.search(r"BLEU = ([\d.]+)", out).group(1))


def test_tiny_model_learns_to_reverse(tmp_path):
    rng = random.Random(0)
    train = _strings(rng, 3000)
    held_out = _strings(rng, 300, exclude=frozenset(train))
    raw = tmp_path / "raw"
    for split, strings in (("train", train), ("valid", held_out[:100]), ("test", held_out[100:])):
        write_split(raw, split, [f"reverse : {s} =" for s in strings], [" ".join(s.split()[::-1]) for s in strings],
                    src="src", tgt="tgt")
    data = preprocess(raw, tmp_path / "bin", ("train", "valid", "test"), "src", "tgt")
    common = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_tiny",
              "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--lr", "3e-3",
              "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 50, "--max-tokens", 4000,
              "--dropout", 0.0, "--attention-dropout", 0.0, "--cpu", "--seed", 1,
              "--disable-validation", "--no-epoch-checkpoints", "--log-format", "simple"]
    cli("train", data, *common, "--max-update", 1, "--save-dir", tmp_path / "untrained")
    cli("train", data, *common, "--max-update", 500, "--save-dir", tmp_path / "trained")
    untrained = _bleu(data, tmp_path / "untrained" / "checkpoint_last.pt", tmp_path / "gen0")
    trained = _bleu(data, tmp_path / "trained" / "checkpoint_last.pt", tmp_path / "gen1")
    assert untrained < 20.0
    assert trained >= BLEU_THRESHOLD, f"held-out BLEU {trained} < {BLEU_THRESHOLD}"
