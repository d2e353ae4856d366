"""``scripts/prune_dictionary.py``: the pieces some jsonl data uses, as a fairseq dictionary."""
import gzip
import json
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "prune_dictionary.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def _full_dict(spm_model, path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    path.write_text("".join(f"{p} 1\n" for p in pieces), encoding="utf-8")
    return sp, pieces


def test_keeps_the_pieces_used_and_never_the_evaluation_answers(tmp_path, spm_model):
    from fairseq.data import Dictionary

    sp, full = _full_dict(spm_model, tmp_path / "full.txt")
    train, evals = tmp_path / "mix", tmp_path / "eval"
    train.mkdir()
    evals.mkdir()
    (train / "a_train.jsonl").write_text(
        json.dumps({"inputs": "der hund", "targets": "the dog"}) + "\n{broken\n\n"
        + json.dumps({"inputs": "die katze", "targets": "the cat"}) + "\n", encoding="utf-8")
    with gzip.open(evals / "test.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"inputs": "das kind", "targets": "ball apfel vogel"}) + "\n")
    out = tmp_path / "out" / "dict.txt"
    proc = _run(train, "--inputs-only", evals, "--spm-model", spm_model, "--full-dict", tmp_path / "full.txt",
                "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"{train / 'a_train.jsonl'}:2: not a JSON object with string inputs/targets; skipped" in proc.stderr

    d = Dictionary.load(str(out))
    kept = [d[i] for i in range(d.nspecial, len(d))]
    expected = {p for text in ("der hund", "the dog", "die katze", "the cat", "das kind")
                for p in sp.encode(text, out_type=str)}
    assert set(kept) == expected
    assert set(kept) <= set(full)
    answer_only = {p for p in sp.encode("ball apfel vogel", out_type=str)} - expected
    assert answer_only and not answer_only & set(kept), "evaluation targets never shape the vocabulary"
    counts = [d.count[i] for i in range(d.nspecial, len(d))]
    assert counts == sorted(counts, reverse=True), "most frequent first"


def test_bad_input_is_named(tmp_path, spm_model):
    _full_dict(spm_model, tmp_path / "full.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(empty, "--spm-model", spm_model, "--full-dict", tmp_path / "full.txt", "--out", tmp_path / "d.txt")
    assert proc.returncode != 0 and f"no *.jsonl or *.jsonl.gz file in {empty}" in proc.stderr
    proc = _run(tmp_path / "nowhere", "--spm-model", spm_model, "--full-dict", tmp_path / "full.txt",
                "--out", tmp_path / "d.txt")
    assert proc.returncode != 0 and f"{tmp_path / 'nowhere'} does not exist" in proc.stderr
    (empty / "x.jsonl").write_text(json.dumps({"inputs": "der", "targets": "the"}) + "\n", encoding="utf-8")
    proc = _run(empty, "--spm-model", tmp_path / "none.model", "--full-dict", tmp_path / "full.txt",
                "--out", tmp_path / "d.txt")
    assert proc.returncode != 0 and f"no SentencePiece model at {tmp_path / 'none.model'}" in proc.stderr
    assert not (tmp_path / "d.txt").exists()
