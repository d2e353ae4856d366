"""``scripts/prepare_wmt14.py`` on fixture files in the WMT14 release layout (plain and .tgz)."""
import subprocess
import sys
import tarfile

from conftest import REPO, german_sentences, translate

SCRIPT = REPO / "scripts" / "prepare_wmt14.py"


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _release(raw):
    """europarl and news-commentary unpacked, commoncrawl as its .tgz; 250 training pairs in all."""
    pairs = {}
    for corpus, n, seed in (("europarl-v7.de-en", 120, 31), ("commoncrawl.de-en", 80, 32),
                            ("news-commentary-v9.de-en", 50, 33)):
        de = german_sentences(n, seed)
        pairs[corpus] = ([translate(s) for s in de], de)
    _write(raw / "training" / "europarl-v7.de-en.en", pairs["europarl-v7.de-en"][0])
    _write(raw / "training" / "europarl-v7.de-en.de", pairs["europarl-v7.de-en"][1])
    _write(raw / "training" / "news-commentary-v9.de-en.en", pairs["news-commentary-v9.de-en"][0])
    _write(raw / "training" / "news-commentary-v9.de-en.de", pairs["news-commentary-v9.de-en"][1])
    cc = raw.parent / "cc"
    _write(cc / "commoncrawl.de-en.en", pairs["commoncrawl.de-en"][0])
    _write(cc / "commoncrawl.de-en.de", pairs["commoncrawl.de-en"][1])
    with tarfile.open(raw / "training-parallel-commoncrawl.tgz", "w:gz") as tar:
        for f in cc.iterdir():
            tar.add(f, arcname=f.name)
    test_de = german_sentences(7, 34)
    for lang, name, lines in (("en", "newstest2014-deen-src.en.sgm", [translate(s) for s in test_de]),
                              ("de", "newstest2014-deen-ref.de.sgm", test_de)):
        body = [f'<seg id="{i + 1}">{s}</seg>' for i, s in enumerate(lines)]
        _write(raw / "test-full" / name, ['<srcset setid="newstest2014">', '<doc docid="x">', *body, "</doc>"])
    english = [e for corpus in ("europarl-v7.de-en", "commoncrawl.de-en", "news-commentary-v9.de-en")
               for e in pairs[corpus][0]]
    return english


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_release_becomes_the_papers_folder(tmp_path, spm_model):
    from fairseq.data import Dictionary, data_utils

    english = _release(tmp_path / "raw")
    out = tmp_path / "data" / "wmt14.en-de.prompted.xlm-r-dict.bin"
    proc = _run("--raw", tmp_path / "raw", "--spm-model", spm_model, "--out-dir", out, "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WMT14 en-de raw text: train 248, valid 2, test 7" in proc.stderr
    d = Dictionary.load(str(out / "dict.en.txt"))
    valid = data_utils.load_indexed_dataset(str(out / "valid.en-de.en"), d)
    assert len(valid) == 2
    assert d.string(valid[1], "sentencepiece") == \
        f"Translate the English sentence to German. English: {english[199]} German:"  # training line 200
    assert len(data_utils.load_indexed_dataset(str(out / "test.en-de.de"), d)) == 7
    assert not list((tmp_path / "data").glob(".wmt14-raw-*")), "the unpacked release is removed"


def test_missing_corpus_is_named(tmp_path, spm_model):
    _release(tmp_path / "raw")
    (tmp_path / "raw" / "training-parallel-commoncrawl.tgz").unlink()
    proc = _run("--raw", tmp_path / "raw", "--spm-model", spm_model, "--out-dir", tmp_path / "out")
    assert proc.returncode != 0 and "commoncrawl.de-en.en not found under" in proc.stderr
