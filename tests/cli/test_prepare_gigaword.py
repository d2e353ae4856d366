"""``scripts/prepare_gigaword.py`` on a fixture in the layout of the preprocessed Gigaword release."""
import subprocess
import sys
import tarfile

from conftest import REPO, german_sentences, translate

SCRIPT = REPO / "scripts" / "prepare_gigaword.py"


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _release(root):
    """sumdata/: 30 training, 12 validation and 5 test article/title pairs."""
    sumdata = root / "sumdata"
    for split, (src, tgt), n, seed in (("train", ("train/train.article.txt", "train/train.title.txt"), 30, 41),
                                       ("valid", ("train/valid.article.filter.txt", "train/valid.title.filter.txt"),
                                        12, 42),
                                       ("test", ("Giga/input.txt", "Giga/task1_ref0.txt"), 5, 43)):
        articles = [translate(s) + " , the report said on # monday" for s in german_sentences(n, seed)]
        _write(sumdata / src, articles)
        _write(sumdata / tgt, [" ".join(a.split()[:3]) for a in articles])
    return sumdata


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_release_becomes_the_papers_folder(tmp_path, spm_model):
    from fairseq.data import Dictionary, data_utils

    sumdata = _release(tmp_path / "raw")
    with tarfile.open(tmp_path / "summary.tar.gz", "w:gz") as tar:
        tar.add(sumdata, arcname="sumdata")
    out = tmp_path / "data" / "gigaword-10k.prompted.xlm-r-dict.bin"
    proc = _run("--raw", tmp_path / "summary.tar.gz", "--train-size", 20, "--valid-size", 4, "--spm-model", spm_model,
                "--out-dir", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Gigaword raw text: train 20, valid 4, test 5" in proc.stderr
    d = Dictionary.load(str(out / "dict.src.txt"))
    src = data_utils.load_indexed_dataset(str(out / "train.src-tgt.src"), d)
    assert len(src) == 20
    first = (sumdata / "train" / "train.article.txt").read_text().splitlines()[0]
    assert d.string(src[0], "sentencepiece") == f"Summarize the following article. Article: {first} Summary:"
    assert len(data_utils.load_indexed_dataset(str(out / "test.src-tgt.tgt"), d)) == 5


def test_too_small_or_missing_release_is_named(tmp_path, spm_model):
    sumdata = _release(tmp_path / "raw")
    proc = _run("--raw", sumdata, "--spm-model", spm_model, "--out-dir", tmp_path / "out")
    assert proc.returncode != 0
    assert "train.article.txt: 30 pairs, fewer than the 10000 asked for the train split" in proc.stderr
    (sumdata / "Giga" / "task1_ref0.txt").unlink()
    proc = _run("--raw", tmp_path / "raw", "--train-size", 0, "--spm-model", spm_model, "--out-dir", tmp_path / "out")
    assert proc.returncode != 0 and "Giga/task1_ref0.txt is missing from the release" in proc.stderr
