"""scripts/prepare_translation.py end to end: raw text → prompted SentencePiece pieces → fairseq binaries.

Every test runs the real script as a subprocess on tiny raw files written here (some gzipped,
some plain, messy whitespace, decomposed unicode, empty and invisible-only sides, a bad byte) with
a tiny SentencePiece model trained on the same text.
"""
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "prepare_translation.py"
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
PREFIX = "Translate the German sentence to English. German:"
OUT_NAME = "multi30k.de-en.prompted.xlm-r-dict.bin"

# (de, en) raw lines: messy whitespace, a decomposed "ü" (NFD), an empty target (train line 4), a
# target without pieces (valid line 6), sides of invisible characters only (valid lines 7, 9), and a
# zero-width non-joiner inside a word (valid line 8, kept as it is)
TRAIN = [
    ("der hund sieht einen ball", "the dog sees a ball"),
    ("  die   katze\tmag einen apfel  ", "the cat likes an apple"),
    ("der gru\u0308ne vogel hat einen ball", "the green bird has a ball"),
    ("das kind sieht den vogel", "   "),
    ("die frau mag den hund", " the  woman likes the dog "),
    ("der mann hat einen apfel", "the man has an apple"),
    ("das kind mag die katze", "the child likes the cat"),
    ("der vogel sieht den mann", "the bird sees the man"),
    ("die katze hat einen vogel", "the cat has a bird"),
    ("der hund mag das kind", "the dog likes the child"),
    ("die frau sieht einen apfel", "the woman sees an apple"),
    ("der mann mag den ball", "the man likes the ball"),
]
VALID = [("der hund hat einen apfel", "the dog has an apple"), ("die katze sieht den mann", "the cat sees the man"),
         ("das kind hat einen ball", "the child has a ball"), ("der mann sieht die frau", "the man sees the woman"),
         ("die frau hat einen vogel", "the woman has a bird"),
         ("der hund hat einen vogel", "\ufffd"),  # visible text, but SentencePiece maps U+FFFD to a space
         ("\u200b\u2060 \ufeff", "the cat has a ball"),  # zero-width only: the prompt alone would give pieces
         ("das kind mag den vo\u200cgel", "the child likes the bird"),
         ("der mann hat den ball", "\u200d\x07")]  # ZWJ + a control character: empty
TEST = [("der vogel mag den apfel", "the bird likes the apple"), ("die frau mag das kind", "the woman likes the child"),
        ("der hund sieht die katze", "the dog sees the cat"), ("das kind sieht einen apfel", "the child sees an apple")]
TEST1 = [("die katze mag den ball", "the cat likes the ball"), ("der mann hat einen hund", "the man has a dog"),
         ("das kind mag den vogel", "the child likes the bird")]


def normalised(text: str) -> str:
    import unicodedata

    return " ".join(unicodedata.normalize("NFC", text).split())


def write_lines(path: Path, lines, gz: bool = False) -> None:
    """One line each; ``gz`` writes ``path`` + ``.gz``."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_pairs(raw: Path, prefix: str, pairs, gz_de: bool, gz_en: bool) -> None:
    write_lines(raw / f"{prefix}.de", [d for d, _ in pairs], gz_de)
    write_lines(raw / f"{prefix}.en", [e for _, e in pairs], gz_en)


def run_prepare(*args, timeout: int = 120, cwd=None) -> subprocess.CompletedProcess:
    """The real script in a subprocess (offline, quiet warnings)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def failed(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The run exited non-zero and its error names every needle."""
    assert proc.returncode != 0, proc.stdout
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr[-2000:])
    return proc.stderr


def load_split(folder: Path, split: str, lang: str):
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(folder / f"dict.{lang}.txt"))
    ds = data_utils.load_indexed_dataset(str(folder / f"{split}.de-en.{lang}"), d)
    assert ds is not None, f"{split}.{lang} missing in {folder}"
    return d, ds


def decoded(folder: Path, split: str, lang: str):
    d, ds = load_split(folder, split, lang)
    return [d.string(ds[i], "sentencepiece") for i in range(len(ds))]


@pytest.fixture(scope="module")
def mt_spm(tmp_path_factory) -> Path:
    """A tiny unigram SentencePiece model trained on this file's text (XLM-R's special ids)."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("mt_spm")
    lines = [normalised(s) for pair in TRAIN + VALID + TEST + TEST1 for s in pair if s.strip()]
    lines += [PREFIX + " English:"] * 5
    (d / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(d / "text.txt"), model_prefix=str(d / "spm"), vocab_size=80, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
    )
    return d / "spm.model"


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Multi30k-named raw files: train (.de plain, .en gz), val (both gz), test (both plain)."""
    root = tmp_path_factory.mktemp("raw")
    write_pairs(root / "raw", "train", TRAIN, gz_de=False, gz_en=True)
    write_pairs(root / "raw", "val", VALID, gz_de=True, gz_en=True)
    write_pairs(root / "raw", "test_2016_flickr", TEST, gz_de=False, gz_en=False)
    write_pairs(root / "elsewhere", "test_2017_flickr", TEST1, gz_de=True, gz_en=False)
    bom = root / "elsewhere" / "test_2017_flickr.en"
    bom.write_bytes("\ufeff".encode("utf-8") + bom.read_bytes())  # a UTF-8 BOM, dropped on reading
    return root / "raw"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, raw, mt_spm):
    """The default run plus an extra test set given by an absolute path prefix."""
    dest = tmp_path_factory.mktemp("out") / "data-bin"
    extra = raw.parent / "elsewhere" / "test_2017_flickr"
    proc = ok(run_prepare("--raw-dir", raw, "--src", "de", "--tgt", "en", "--spm-model", mt_spm, "--dest-root", dest,
                          "--splits", "train=train", "valid=val", "test=test_2016_flickr", f"test1={extra}"))
    return dest / OUT_NAME, proc


def test_layout_and_dictionary(prepared):
    folder, proc = prepared
    assert folder.is_dir(), f"{OUT_NAME} not created: {proc.stdout}"
    assert (folder / "dict.de.txt").read_text() == (folder / "dict.en.txt").read_text()
    for split in ("train", "valid", "test", "test1"):
        for lang in ("de", "en"):
            for ext in ("bin", "idx"):
                assert (folder / f"{split}.de-en.{lang}.{ext}").is_file(), (split, lang, ext)
    assert not list(folder.parent.glob(".*partial*")), "staging folder left behind"
    n_dict = 4 + len((folder / "dict.de.txt").read_text().splitlines())
    assert f"dictionary: {n_dict} symbols" in proc.stdout and str(folder) in proc.stdout


def test_prompt_and_targets_round_trip(prepared):
    folder, _ = prepared
    kept = [p for i, p in enumerate(TRAIN) if i != 3]  # line 4's target is whitespace only
    src, tgt = decoded(folder, "train", "de"), decoded(folder, "train", "en")
    assert src == [f"{PREFIX} {normalised(d)} English:" for d, _ in kept]
    assert tgt == [normalised(e) for _, e in kept]
    assert all(s.startswith(PREFIX) for s in decoded(folder, "test1", "de"))
    assert decoded(folder, "test1", "en") == [e for _, e in TEST1]
    text = (folder / "text" / "train.de").read_text(encoding="utf-8")
    assert "der grüne vogel" in text and "u\u0308" not in text  # NFC, kept as references in text/
    assert (folder / "text" / "test1.en").read_text(encoding="utf-8").split("\n")[0] == TEST1[0][1]  # no BOM
    assert (folder / "spm" / "train.de").is_file()


def test_counts_drops_and_readme(prepared):
    folder, proc = prepared
    for split, n in (("train", 11), ("valid", 6), ("test", 4), ("test1", 3)):
        assert [len(load_split(folder, split, lang)[1]) for lang in ("de", "en")] == [n, n], split
    assert "train: 12 pairs read, 1 dropped" in proc.stderr and "4 (target: empty)" in proc.stderr
    assert "valid: 9 pairs read, 3 dropped (2 empty after normalisation, 1 without pieces)" in proc.stderr
    assert "6 (target: no SentencePiece pieces)" in proc.stderr
    assert "test: 4 pairs read, 0 dropped" in proc.stderr
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for needle in ("Translate the German sentence to English. German: {src} English:", "NFC", '" ".join(line.split())',
                   "prepare_translation.py --raw-dir", "| train |", "| 12 | 12 | 1 | 0 | 11 |", "4 (target: empty)",
                   "fairseq-preprocess --source-lang de --target-lang en"):
        assert needle in readme, needle


def test_invisible_sides_count_as_empty(prepared):
    """A side of zero-width / format / control characters only is dropped and counted as empty (a source
    like that used to be kept: the prompt alone has pieces); inside a word such a character stays."""
    folder, proc = prepared
    assert "7 (source: empty)" in proc.stderr and "9 (target: empty)" in proc.stderr
    text = (folder / "text" / "valid.de").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(text) == 6 and not any("\u200b" in line or "\u2060" in line for line in text)
    assert f"{PREFIX} das kind mag den vo\u200cgel English:" in text  # ZWNJ inside a word is kept
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "| 9 | 9 | 2 | 1 | 6 |" in readme and "7 (source: empty)" in readme


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_bad_utf8_names_its_line(tmp_path, raw, mt_spm, gz):
    """A non-UTF-8 byte is reported at its own 1-based line number, also far past the first 8 KB (a
    text-mode reader decodes a block ahead, and named a line ~200 earlier)."""
    bad = tmp_path / "raw"
    shutil.copytree(raw, bad)
    lines = [f"der hund sieht einen ball {i}".encode("utf-8") for i in range(3000)]
    lines[2344] = "die straße ist lang".encode("latin-1")  # line 2345: a lone 0xdf byte
    data = b"\n".join(lines) + b"\n"
    src = bad / ("test_2016_flickr.de.gz" if gz else "test_2016_flickr.de")
    (bad / "test_2016_flickr.de").unlink()
    src.write_bytes(gzip.compress(data) if gz else data)
    write_lines(bad / "test_2016_flickr.en", [f"the dog sees a ball {i}" for i in range(3000)])
    err = failed(run_prepare("--raw-dir", bad, "--spm-model", mt_spm, "--out-dir", tmp_path / "out"),
                 f"{src}: line 2345 is not valid UTF-8 (byte 0xdf at position 9)", "iconv")
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_max_train_and_overwrite(tmp_path, raw, mt_spm):
    out = tmp_path / "mt"
    args = ["--raw-dir", raw, "--spm-model", mt_spm, "--out-dir", out, "--no-keep-intermediate"]
    proc = ok(run_prepare(*args, "--max-train", 5))
    assert "using the first 5 of 12 pairs" in proc.stderr
    assert len(load_split(out, "train", "en")[1]) == 4  # the first 5, minus the empty line 4
    assert len(load_split(out, "test", "de")[1]) == len(TEST)  # only train is cut
    assert not (out / "spm").exists() and not (out / "text").exists()
    failed(run_prepare(*args, "--max-train", 2), str(out), "--overwrite")
    ok(run_prepare(*args, "--max-train", 2, "--overwrite"))
    assert len(load_split(out, "train", "de")[1]) == 2


def test_full_dictionary_keeps_ids(tmp_path, raw, mt_spm):
    """--full-dict: the given dictionary verbatim, binarized id = SentencePiece id + 1 (as XLM-R)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(mt_spm))
    full = tmp_path / "dict.txt"
    full.write_text("".join(f"{sp.id_to_piece(i)} 1\n" for i in range(3, sp.get_piece_size())), encoding="utf-8")
    out = tmp_path / "full"
    ok(run_prepare("--raw-dir", raw, "--spm-model", mt_spm, "--full-dict", full, "--out-dir", out))
    assert (out / "dict.de.txt").read_text() == full.read_text() == (out / "dict.en.txt").read_text()
    _, ds = load_split(out, "valid", "en")
    assert ds[0][:-1].tolist() == [i + 1 for i in sp.encode(VALID[0][1])]


def test_download_from_mirror(tmp_path, mt_spm):
    """--download without --raw-dir fetches <prefix>.<lang>.gz into --cache-dir (a file:// mirror here)."""
    mirror = tmp_path / "mirror"
    for prefix, pairs in (("train", TRAIN), ("val", VALID), ("test_2016_flickr", TEST)):
        write_pairs(mirror, prefix, pairs, gz_de=True, gz_en=True)
    cache = tmp_path / "cache"
    args = ["--download", "--download-url", mirror.as_uri(), "--cache-dir", cache, "--out-dir", tmp_path / "bin"]
    failed(run_prepare(*args, "--spm-model", tmp_path / "none.model"), "none.model", "--spm-model")
    assert not cache.exists(), "nothing is fetched before the other inputs are checked"
    proc = ok(run_prepare(*args, "--spm-model", mt_spm))
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{p}.{lang}.gz" for p in ("train", "val", "test_2016_flickr") for lang in ("de", "en"))
    assert "train: 12 pairs read, 1 dropped" in proc.stderr


def test_download_offline_message(tmp_path, mt_spm):
    proc = run_prepare("--download", "--download-url", (tmp_path / "nowhere").as_uri(), "--cache-dir", tmp_path / "c",
                       "--spm-model", mt_spm, "--out-dir", tmp_path / "o")
    failed(proc, "could not download", "train.de.gz", "--raw-dir")


@pytest.mark.parametrize("case", ["mismatch", "missing", "template", "empty", "no_raw"])
def test_bad_input(tmp_path, raw, mt_spm, case):
    bad = tmp_path / "raw"
    shutil.copytree(raw, bad)
    args = ["--raw-dir", bad, "--spm-model", mt_spm, "--out-dir", tmp_path / "out"]
    if case == "mismatch":
        write_lines(bad / "test_2016_flickr.en", [e for _, e in TEST][:-1])
        failed(run_prepare(*args), "line counts differ", str(bad / "test_2016_flickr.de"),
               str(bad / "test_2016_flickr.en"), "has 4 lines", "has 3")
    elif case == "missing":
        (bad / "val.en.gz").unlink()
        failed(run_prepare(*args), "missing raw file", str(bad / "val.en.gz"), str(bad / "val.en"), "--raw-dir")
    elif case == "template":
        failed(run_prepare(*args, "--template", "Translate: English:"), "--template", "{src}")
    elif case == "empty":
        write_lines(bad / "test_2016_flickr.de", [])
        write_lines(bad / "test_2016_flickr.en", [])
        failed(run_prepare(*args), "'test' is empty", str(bad / "test_2016_flickr.de"))
    else:
        failed(run_prepare("--spm-model", mt_spm, cwd=tmp_path), "--raw-dir")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (MULTI30K / "train.de.gz").is_file(), reason="../shared/data/multi30k not available")
def test_real_multi30k_first_200(tmp_path, mt_spm):
    out = tmp_path / "m30k"
    proc = ok(run_prepare("--raw-dir", MULTI30K, "--spm-model", mt_spm, "--max-train", 200, "--out-dir", out,
                          "--workers", 2, timeout=60))
    counts = {s: len(load_split(out, s, "en")[1]) for s in ("train", "valid", "test")}
    assert counts == {"train": 200, "valid": 1014, "test": 1000}, proc.stdout
    assert "using the first 200 of 29000 pairs" in proc.stderr
    first = decoded(out, "valid", "de")[0]
    assert first.startswith(PREFIX) and first.endswith("English:")
