"""``--task diffusion_instruct`` end to end: streamed jsonl mixture, left truncation, resumption."""
import gzip
import json
import re
import shutil

import pytest
import torch

from conftest import USER_DIR, cli

WORDS = "der hund sieht einen ball die katze mag apfel".split()


def _line(i: int) -> str:
    words = [WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 4)]
    return json.dumps({"inputs": "Translate the German sentence to English. German: " + " ".join(words)
                       + " English:", "targets": " ".join(reversed(words))})


@pytest.fixture(scope="module")
def instruct_data(tmp_path_factory, spm_model):
    """Two shards (plain with a corrupt line, gzip), a ratio file, a valid split, SPM model and dict."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("instruct")
    lines = [_line(i) for i in range(300)]
    (d / "a_train.jsonl").write_text("\n".join(lines[:4] + ["{not json"] + lines[4:200]) + "\n", encoding="utf-8")
    with gzip.open(d / "b_train.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines[200:]) + "\n")
    (d / "ratio.json").write_text(json.dumps({"a_train.jsonl": 0.75, "b_train.jsonl": 0.25}))
    (d / "valid").mkdir()
    (d / "valid" / "v.jsonl").write_text("\n".join(_line(1000 + i) for i in range(12)) + "\n", encoding="utf-8")
    shutil.copy(spm_model, d / "sentencepiece.bpe.model")
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]  # after <unk> <s> </s>, as XLM-R's dict.txt
    (d / "dict.txt").write_text("".join(f"{p} 1\n" for p in pieces), encoding="utf-8")
    return d


TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "xlmr_diffusion_tiny", "--criterion",
         "diffusion_lm", "--optimizer", "torch_adamw", "--lr", "1e-3", "--cpu", "--seed", 1, "--batch-size", 8,
         "--epoch-size", 40, "--log-format", "simple", "--log-interval", 1, "--no-epoch-checkpoints",
         "--max-positions", 24]


def test_trains_validates_and_logs_truncation(instruct_data, tmp_path):
    proc = cli("train", instruct_data, *TRAIN, "--max-update", 6, "--save-dir", tmp_path)
    log = proc.stdout + proc.stderr
    assert re.search(r"a_train.jsonl:5: invalid JSON", log)
    assert re.search(r"train: \d+ of 40 prompts cut from the left to fit 24 positions", log)
    assert re.search(r"valid on 'valid' subset .*loss [\d.]+", log)
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)
    assert state["task_state"]["mixture"]["epoch"] >= 2  # 40 examples / 8 per batch = 5 updates per epoch


def test_resume_rebuilds_the_same_epoch(instruct_data, tmp_path):
    """Killed after update 7 (epoch 2) and resumed: the same batches as an uninterrupted run."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    flags = ["--save-interval-updates", 7, "--disable-validation", "--dropout", 0, "--attention-dropout", 0]
    cli("train", instruct_data, *TRAIN, *flags, "--max-update", 9, "--save-dir", full)
    cli("train", instruct_data, *TRAIN, *flags, "--max-update", 7, "--save-dir", cut)
    proc = cli("train", instruct_data, *TRAIN, *flags, "--max-update", 9, "--save-dir", cut)
    assert re.search(r"Loaded checkpoint .*checkpoint_last.pt \(epoch 2 @ 7 updates\)", proc.stdout + proc.stderr)
    a = torch.load(full / "checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(cut / "checkpoint_last.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "the resumed run trained on other examples"


def test_data_errors_are_one_line_without_a_stack_trace(instruct_data, tmp_path):
    """A bad ratio file, a truncated .jsonl.gz and a --max-tokens no example fits: fairseq-train prints the
    message naming the file or flag (``fairseq-train: error: ...``), not a traceback ending in it."""
    data = tmp_path / "data"
    shutil.copytree(instruct_data, data)
    (tmp_path / "ratios.json").write_text(json.dumps({"a_train.jsonl": -1, "b_train.jsonl": 1}))
    proc = cli("train", data, *TRAIN, "--max-update", 1, "--save-dir", tmp_path / "ck",
               "--mixture-ratios", tmp_path / "ratios.json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == \
        f"fairseq-train: error: {tmp_path / 'ratios.json'}: weight of 'a_train.jsonl' is negative (-1)"
    blob = (data / "b_train.jsonl.gz").read_bytes()
    (data / "b_train.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    proc = cli("train", data, *TRAIN, "--max-update", 1, "--save-dir", tmp_path / "ck", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fairseq-train: error: {data / 'b_train.jsonl.gz'}") and "truncated or corrupt gzip" in last
    (data / "b_train.jsonl.gz").write_bytes(blob)
    proc = cli("train", data, *TRAIN, "--max-update", 1, "--save-dir", tmp_path / "ck", "--max-tokens", 3,
               check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.search(r"fairseq-train: error: .*longer than --max-tokens 3 \(one example must fit a batch: raise "
                     r"--max-tokens\)", proc.stderr.strip().splitlines()[-1])
