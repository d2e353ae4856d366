"""IWSLT14 de-en raw text from the released archive, split as fairseq's ``prepare-iwslt14.sh`` does.

The archive (``de-en.tgz``, folder ``de-en/``) holds ``train.tags.de-en.{de,en}`` (one sentence per
line between XML-ish metadata lines) and the dev/test sets as ``IWSLT14.*.de-en.{de,en}.xml``
(``<seg id="N"> text </seg>``).  As fairseq's script (minus its Moses tokenisation, lower-casing and
BPE, which SentencePiece replaces here):

* train: drop the lines holding ``<url>``, ``<talkid>`` or ``<keywords>``; remove the
  ``<title>``/``<description>`` tags (their text stays a training line);
* valid = every 23rd training line (lines 23, 46, …), train = the others;
* test = dev2010, TEDX dev2012, tst2010, tst2011, tst2012 concatenated (the ``<seg>`` texts).

No fairseq or torch import: the preparation scripts start without them.
"""
import re
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import UserError
from .releases import find_release as _find_release

LANGS = ("de", "en")
DROP = ("<url>", "<talkid>", "<keywords>")
TAGS = re.compile(r"</?(?:title|description)>")
SEG = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
VALID_EVERY = 23


class IwsltError(UserError, ValueError):
    """The raw archive or folder is not the IWSLT14 de-en release (the message names the file)."""


def find_release(raw: Path, work: Path) -> Path:
    """The ``de-en`` folder: ``raw`` itself, its ``de-en/`` child, or ``raw`` = ``de-en.tgz`` unpacked
    into ``work``."""
    return _find_release(raw, work, "train.tags.de-en.de", "de-en", IwsltError)


def _train_lines(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [TAGS.sub("", line).strip() for line in f if not any(tag in line for tag in DROP)]


def _segments(path: Path) -> List[str]:
    if not path.is_file():
        raise IwsltError(f"{path} is missing from the release")
    with open(path, encoding="utf-8") as f:
        return [m.group(1) for line in f if (m := SEG.search(line))]


def extract(release: Path, out: Path) -> Dict[str, int]:
    """Write ``out/{train,valid,test}.{de,en}``; returns the line count of each split."""
    train = {lang: _train_lines(release / f"train.tags.de-en.{lang}") for lang in LANGS}
    if len(train["de"]) != len(train["en"]):
        raise IwsltError(f"{release}/train.tags.de-en.*: {len(train['de'])} German vs {len(train['en'])} English "
                         "lines after removing the metadata lines")
    test = {lang: [s for name in TEST_SETS for s in _segments(release / f"{name}.de-en.{lang}.xml")] for lang in LANGS}
    if len(test["de"]) != len(test["en"]):
        raise IwsltError(f"{release}: {len(test['de'])} German vs {len(test['en'])} English test segments")
    splits: Dict[str, Tuple[List[str], List[str]]] = {
        "valid": tuple([x for i, x in enumerate(train[lang], 1) if i % VALID_EVERY == 0] for lang in LANGS),
        "train": tuple([x for i, x in enumerate(train[lang], 1) if i % VALID_EVERY != 0] for lang in LANGS),
        "test": (test["de"], test["en"]),
    }
    out.mkdir(parents=True, exist_ok=True)
    for split, sides in splits.items():
        for lang, lines in zip(LANGS, sides):
            (out / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {split: len(sides[0]) for split, sides in splits.items()}
