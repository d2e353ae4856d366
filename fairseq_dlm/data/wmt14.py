"""WMT14 en-de raw text from the WMT release archives, split as fairseq's ``prepare-wmt14en2de.sh``.

Training corpora (in this order, each ``<name>.{de,en}``): ``europarl-v7.de-en``,
``commoncrawl.de-en``, ``news-commentary-v9.de-en`` (from ``training-parallel-europarl-v7.tgz``,
``training-parallel-commoncrawl.tgz``, ``training-parallel-nc-v9.tgz``); test: newstest2014
(``test-full/newstest2014-deen-{src,ref}.{en,de}.sgm``, the ``<seg>`` texts).  As fairseq (minus its
Moses normalisation/tokenisation and BPE, which SentencePiece replaces): valid = every 100th line of
the concatenated training text, train = the others.  Everything is streamed line by line: the
training text (4.5M pairs) is never held in memory.

No fairseq or torch import: the preparation scripts start without them.
"""
import re
from itertools import zip_longest
from pathlib import Path
from typing import Dict, Iterator, List

from ..errors import UserError
from .releases import unpack as _unpack

LANGS = ("en", "de")
TRAIN_CORPORA = ("europarl-v7.de-en", "commoncrawl.de-en", "news-commentary-v9.de-en")
TEST = {"en": "newstest2014-deen-src.en.sgm", "de": "newstest2014-deen-ref.de.sgm"}
ARCHIVES = ("training-parallel-europarl-v7.tgz", "training-parallel-commoncrawl.tgz", "training-parallel-nc-v9.tgz",
            "test-full.tgz")
SEG = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')
VALID_EVERY = 100


class WmtError(UserError, ValueError):
    """A file of the release is missing or the sides disagree (the message names the file)."""


def unpack(raw: Path, work: Path) -> List[Path]:
    """The folders to search: ``raw`` and, for every ``*.tgz`` in it, where that archive was unpacked."""
    roots = [raw]
    for archive in sorted(raw.glob("*.tgz")):
        roots.append(_unpack(archive, work / archive.name[: -len(".tgz")], WmtError))
    return roots


def find(roots: List[Path], name: str) -> Path:
    """The one file called ``name`` under ``roots`` (searched recursively)."""
    for root in roots:
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0]
    raise WmtError(f"{name} not found under {', '.join(map(str, roots))} (the WMT14 release: "
                   f"{', '.join(ARCHIVES)})")


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for line in f:
            yield line.rstrip("\n").strip()


def extract(roots: List[Path], out: Path) -> Dict[str, int]:
    """Write ``out/{train,valid,test}.{en,de}``; returns the line count of each split."""
    out.mkdir(parents=True, exist_ok=True)
    files = {(split, lang): open(out / f"{split}.{lang}", "w", encoding="utf-8") for split in ("train", "valid")
             for lang in LANGS}
    counts = {"train": 0, "valid": 0}
    n = 0
    try:
        for corpus in TRAIN_CORPORA:
            en, de = find(roots, f"{corpus}.en"), find(roots, f"{corpus}.de")
            for e, d in zip_longest(_lines(en), _lines(de)):
                if e is None or d is None:
                    raise WmtError(f"{en} and {de} differ in length")
                n += 1
                split = "valid" if n % VALID_EVERY == 0 else "train"
                files[split, "en"].write(e + "\n")
                files[split, "de"].write(d + "\n")
                counts[split] += 1
    finally:
        for f in files.values():
            f.close()
    test = {}
    for lang in LANGS:
        with open(find(roots, TEST[lang]), encoding="utf-8") as f:
            test[lang] = [m.group(1) for line in f if (m := SEG.search(line))]
    if len(test["en"]) != len(test["de"]):
        raise WmtError(f"newstest2014: {len(test['en'])} English vs {len(test['de'])} German segments")
    for lang in LANGS:
        (out / f"test.{lang}").write_text("".join(s + "\n" for s in test[lang]), encoding="utf-8")
    counts["test"] = len(test["en"])
    return counts
