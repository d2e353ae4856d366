"""Gigaword-10K raw text from the preprocessed Gigaword release of Rush et al. (2015).

That release (``summary.tar.gz``, folder ``sumdata/``; the one HF ``datasets`` loads as
``gigaword``) holds ``train/train.article.txt`` + ``train/train.title.txt`` (3.8M pairs),
``train/valid.article.filter.txt`` + ``train/valid.title.filter.txt`` (189k) and the test set
``Giga/input.txt`` + ``Giga/task1_ref0.txt`` (1,951), lower-cased, digits as ``#``, rare words as
``UNK``.  Gigaword-10K keeps the first ``train_size`` training pairs (default 10,000) and the
first ``valid_size`` validation pairs; the test set is whole.  Which 10K pairs the paper used is
[unverified] (SPEC §2.3); the sizes are arguments.

No fairseq or torch import: the preparation scripts start without them.
"""
from itertools import islice
from pathlib import Path
from typing import Dict, Optional

from ..errors import UserError
from .releases import find_release as _find_release

FILES = {  # split → (source file, target file), relative to sumdata/
    "train": ("train/train.article.txt", "train/train.title.txt"),
    "valid": ("train/valid.article.filter.txt", "train/valid.title.filter.txt"),
    "test": ("Giga/input.txt", "Giga/task1_ref0.txt"),
}


class GigawordError(UserError, ValueError):
    """A file of the release is missing or its sides disagree (the message names the file)."""


def find_release(raw: Path, work: Path) -> Path:
    """The ``sumdata`` folder: ``raw``, its ``sumdata/`` child, or ``raw`` = ``summary.tar.gz`` unpacked."""
    return _find_release(raw, work, FILES["train"][0], "sumdata", GigawordError)


def extract(release: Path, out: Path, train_size: Optional[int] = 10000,
            valid_size: Optional[int] = 1000) -> Dict[str, int]:
    """Write ``out/{train,valid,test}.{src,tgt}`` (first ``train_size``/``valid_size`` pairs; None = all)."""
    for names in FILES.values():  # every file is checked before any work is done
        for name in names:
            if not (release / name).is_file():
                raise GigawordError(f"{release / name} is missing from the release")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, names in FILES.items():
        limit = {"train": train_size, "valid": valid_size}.get(split)
        paths = [release / name for name in names]
        with open(paths[0], encoding="utf-8") as fs, open(paths[1], encoding="utf-8") as ft, \
                open(out / f"{split}.src", "w", encoding="utf-8") as ws, \
                open(out / f"{split}.tgt", "w", encoding="utf-8") as wt:
            n = 0
            for s, t in islice(zip(fs, ft), limit):
                ws.write(s.strip() + "\n")
                wt.write(t.strip() + "\n")
                n += 1
        if limit is not None and n < limit:
            raise GigawordError(f"{paths[0]}: {n} pairs, fewer than the {limit} asked for the {split} split")
        counts[split] = n
    return counts
