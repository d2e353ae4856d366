"""Counting the SentencePiece pieces that jsonl data uses, for a pruned dictionary
(``scripts/prune_dictionary.py``).  Standard library only (the SentencePiece processor is passed in)."""
import gzip
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

SHOW_BAD = 5


def jsonl_files(paths: Iterable[Path]) -> List[Path]:
    """The jsonl files of ``paths`` (files as given; folders searched recursively), sorted, no duplicates."""
    found = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.name.endswith((".jsonl", ".jsonl.gz")))
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"error: {path} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise SystemExit(f"error: no *.jsonl or *.jsonl.gz file in {', '.join(map(str, paths))}")
    return unique


def texts(path: Path, fields: Sequence[str]) -> Iterator[Tuple[int, Optional[List[str]]]]:
    """``(line number, [field texts])`` per non-blank line; ``None`` for a line that is not valid."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                yield number, None
                continue
            values = [obj.get(k) for k in fields] if isinstance(obj, dict) else [None]
            yield number, (values if all(isinstance(v, str) for v in values) else None)


def read_full_dict(path: Path) -> List[str]:
    """The pieces of a fairseq ``dict.txt`` (first column), in order."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").rsplit(" ", 1)[0] for line in f if line.strip()]
    except OSError as e:
        raise SystemExit(f"error: cannot read the full dictionary {path}: {e.strerror}")


def count_pieces(sp, files: Sequence[Path], fields: Sequence[str], counts: Counter, known: set) -> None:
    """Add the pieces of ``fields`` of every line of ``files`` to ``counts``; log per-file coverage."""
    for path in files:
        lines = bad = pieces = unknown = 0
        for number, values in texts(path, fields):
            if values is None:
                bad += 1
                if bad <= SHOW_BAD:
                    logger.warning("%s:%d: not a JSON object with string %s; skipped", path, number, "/".join(fields))
                continue
            lines += 1
            for value in values:
                for piece in sp.encode(value, out_type=str):
                    pieces += 1
                    if piece in known:
                        counts[piece] += 1
                    else:
                        unknown += 1
        if bad:
            logger.warning("%s: %d bad line(s) skipped", path, bad)
        logger.info("%s: %d lines (%s), %d pieces, %d not in the full dictionary", path, lines, "+".join(fields),
                    pieces, unknown)
