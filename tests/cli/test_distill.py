"""``scripts/distill.py``: a diffusion teacher re-decodes the sources of a small binarized folder; the
distilled folder holds its hypotheses (the same as fairseq-generate's) with the data's dictionary,
an interrupted run resumes without duplicates, and bad teachers are one-line errors."""
import filecmp
import json
import logging
import random
import re

import pytest

from conftest import REPO, REVERSE_TEMPLATE, USER_DIR, cli, preprocess, random_strings, write_split

SCRIPT = REPO / "scripts" / "distill.py"


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(capsys, *args):
    code = _script().main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small(tmp_path_factory, reverse_data):
    """60 train / 12 valid / 12 test reverse strings, binarized with the teacher's dictionary."""
    root = tmp_path_factory.mktemp("distill_data")
    rng = random.Random(5)
    strings = random_strings(rng, 84)
    for split, part in (("train", strings[:60]), ("valid", strings[60:72]), ("test", strings[72:])):
        write_split(root / "raw", split, [REVERSE_TEMPLATE.format(src=s) for s in part],
                    [" ".join(s.split()[::-1]) for s in part], src="src", tgt="tgt")
    return preprocess(root / "raw", root / "bin", ("train", "valid", "test"), "src", "tgt",
                      "--srcdict", reverse_data / "dict.src.txt")


def _targets(folder, split):
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(folder / "dict.tgt.txt"))
    ds = data_utils.load_indexed_dataset(str(folder / f"{split}.src-tgt.tgt"), d)
    return [d.string(ds[i]) for i in range(len(ds))]


def test_distilled_targets_are_the_teachers_hypotheses(small, reverse_length_model, tmp_path, capsys, caplog):
    teacher, _ = reverse_length_model
    out = tmp_path / "distilled"
    code, stdout, err = _run(capsys, "--data", small, "--teacher", teacher, "--out", out, "--beam", 3, "--steps", 6,
                             "--batch-size", 16, "--cpu")
    assert code == 0, err[-3000:]
    assert "train: 60 targets distilled" in stdout and "valid: 12 targets distilled" in stdout
    bleu = float(re.search(r"teacher BLEU on valid: ([\d.]+)", stdout).group(1))
    assert bleu >= 50  # the tiny reverse model is a good teacher (and the references are the folder's own)
    # sources, dictionaries and the test set are copied unchanged; train/valid targets are the teacher's
    for name in ("dict.src.txt", "dict.tgt.txt", "train.src-tgt.src.bin", "valid.src-tgt.src.idx",
                 "test.src-tgt.tgt.bin", "test.src-tgt.src.bin"):
        assert filecmp.cmp(small / name, out / name, shallow=False), name
    proc = cli("generate", small, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", teacher, "--cpu",
               "--gen-subset", "train", "--iter-decode-with-beam", 3, "--iter-decode-max-iter", 6)
    generated = dict(re.findall(r"^H-(\d+)\t\S+\t(.*)$", proc.stdout, re.M))
    assert _targets(out, "train") == [generated[str(i)] for i in range(60)]
    assert _targets(out, "train") != _targets(small, "train")  # not the references: some reversals are wrong
    assert (out / "text" / "train.tgt").read_text().splitlines() == _targets(out, "train")
    assert "The teacher's BLEU on valid" in (out / "README.md").read_text()

    # an interrupted run: 25 complete lines and a cut one; the rerun decodes the rest only
    log = out / "distill" / "train.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:25]) + lines[25][:10])
    before = _targets(out, "train")
    with caplog.at_level(logging.INFO, logger="fairseq_dlm.distillation"):
        code, _, err = _run(capsys, "--data", small, "--teacher", teacher, "--out", out, "--beam", 3, "--steps", 6,
                            "--batch-size", 16, "--cpu")
    assert code == 0, err[-3000:]
    assert "train: 25 of 60 examples distilled before; resuming" in caplog.text
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]  # the cut line is gone
    assert sorted(ids) == list(range(60))  # nothing decoded or written twice
    assert _targets(out, "train") == before


def test_bad_teachers_and_flags_are_one_line_errors(small, reverse_model, translation_data, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    for args, message in [
        (["--teacher", text], "notes.pt"),
        (["--teacher", tmp_path / "missing.pt"], "no such file"),
        (["--teacher", reverse_model, "--splits", "test"], "test sets keep their references"),
    ]:
        code, _, err = _run(capsys, "--data", small, "--out", tmp_path / "o", *args)
        assert code == 1 and message in err and "Traceback" not in err, err[-2000:]
    # a teacher trained on another vocabulary (the reverse task's) for a de-en SentencePiece folder
    code, _, err = _run(capsys, "--data", translation_data, "--teacher", reverse_model, "--out", tmp_path / "o2")
    assert code == 1 and "dictionary mismatch" in err and "Traceback" not in err, err[-2000:]
