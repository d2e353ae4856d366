"""``scripts/prepare_iwslt14.py`` on a fixture release in the IWSLT14 de-en archive layout."""
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO, german_sentences, translate

SCRIPT = REPO / "scripts" / "prepare_iwslt14.py"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")


def _release(root, n_train=50):
    """de-en/: train.tags with metadata lines (dropped) and <title> lines (kept without the tags), and
    five XML test sets of two segments each; returns (folder, German train sentences kept)."""
    d = root / "de-en"
    d.mkdir(parents=True)
    de = german_sentences(n_train, 5)
    kept = {"de": [], "en": []}
    lines = {"de": [], "en": []}
    for i, s in enumerate(de):
        if i % 10 == 0:
            for lang in ("de", "en"):
                lines[lang] += [f"<url>http://www.ted.com/talks/{i}</url>", f"<talkid>{i}</talkid>",
                                f"<keywords>talks, {i}</keywords>"]
            lines["de"].append(f"<title>{s}</title>")
            lines["en"].append(f"<title>{translate(s)}</title>")
        else:
            lines["de"].append(s)
            lines["en"].append(translate(s))
        kept["de"].append(s)
        kept["en"].append(translate(s))
    for lang in ("de", "en"):
        (d / f"train.tags.de-en.{lang}").write_text("\n".join(lines[lang]) + "\n", encoding="utf-8")
    for k, name in enumerate(TEST_SETS):
        for lang in ("de", "en"):
            segs = german_sentences(2, 100 + k)
            segs = segs if lang == "de" else [translate(s) for s in segs]
            body = "".join(f'<seg id="{j + 1}"> {s} </seg>\n' for j, s in enumerate(segs))
            (d / f"{name}.de-en.{lang}.xml").write_text(f'<refset>\n<doc docid="{k}">\n{body}</doc>\n</refset>\n',
                                                        encoding="utf-8")
    return d, kept


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_release_archive_becomes_the_papers_folder(tmp_path, spm_model):
    from fairseq.data import Dictionary, data_utils

    folder, kept = _release(tmp_path / "raw")
    with tarfile.open(tmp_path / "de-en.tgz", "w:gz") as tar:
        tar.add(folder, arcname="de-en")
    out = tmp_path / "data" / "iwslt14.de-en.prompted.xlm-r-dict.bin"
    proc = _run("--raw", tmp_path / "de-en.tgz", "--spm-model", spm_model, "--out-dir", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IWSLT14 de-en raw text: valid 2, train 48, test 10" in proc.stderr

    d = Dictionary.load(str(out / "dict.de.txt"))
    sizes = {}
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            sizes[split, lang] = len(data_utils.load_indexed_dataset(str(out / f"{split}.de-en.{lang}"), d))
    assert sizes == {("train", "de"): 48, ("train", "en"): 48, ("valid", "de"): 2, ("valid", "en"): 2,
                     ("test", "de"): 10, ("test", "en"): 10}
    valid = data_utils.load_indexed_dataset(str(out / "valid.de-en.de"), d)
    first = d.string(valid[0], "sentencepiece")
    assert first == f"Translate the German sentence to English. German: {kept['de'][22]} English:"  # line 23
    target = d.string(data_utils.load_indexed_dataset(str(out / "valid.de-en.en"), d)[1], "sentencepiece")
    assert target == kept["en"][45]  # line 46


def test_bad_release_is_named(tmp_path, spm_model):
    (tmp_path / "empty").mkdir()
    proc = _run("--raw", tmp_path / "empty", "--spm-model", spm_model, "--out-dir", tmp_path / "out")
    assert proc.returncode != 0
    assert f"{tmp_path / 'empty'}: no train.tags.de-en.de (in it or in de-en/)" in proc.stderr
    folder, _ = _release(tmp_path / "raw")
    (folder / "IWSLT14.TED.tst2011.de-en.en.xml").unlink()
    proc = _run("--raw", tmp_path / "raw", "--spm-model", spm_model, "--out-dir", tmp_path / "out")
    assert proc.returncode != 0 and "IWSLT14.TED.tst2011.de-en.en.xml is missing from the release" in proc.stderr
    assert not (tmp_path / "out").exists()
