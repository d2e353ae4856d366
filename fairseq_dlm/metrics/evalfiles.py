"""Reading the paper's evaluation files (SPEC §7.4) and their group labels.

A file is JSON lines ``{"inputs": str, "targets": str}`` (other keys are ignored), plain or
gzipped (``.jsonl`` / ``.jsonl.gz``; a name given without ``.gz`` also finds the gzipped file).
Layouts, ``data/instruct/{bench}/{k}-shot/...`` (official) or ``paper-eval/{bench}/{k}-shot/...``:

* MMLU ``val/``: ``full.jsonl`` (all rows) + ``index2subject.json`` (a list, one subject per row
  of ``full.jsonl``); the per-subject files may be absent.
* BBH-NLP ``validation/``: one file per task (the group is the file name, ``_`` → space, which is
  how ``index2subject.json`` spells it).  ``index2subject.json`` describes the official
  ``full.jsonl`` (14,052 rows, 12 tasks); in the 2- and 3-shot folders the ``hyperbaton`` and
  ``formal_fallacies_syllogisms_negation`` files may be missing, so the map then does not fit.
* TyDiQA ``validation/``: one file per language (11).  ``flan2022_index2lang.json`` labels the
  official ``flan2022.jsonl``, which holds only 8 of them (arabic, bengali, finnish, indonesian,
  korean, russian, swahili, telugu: no english, japanese, thai), concatenated in that order;
  ``load_eval_set(folder, official_subset=True)`` rebuilds exactly that file from the per-language
  files and checks it against the map.
* MGSM ``{k}-shot/{en,de,zh}.jsonl`` and IWSLT14 ``{split}/{deen,ende}.jsonl``: one file each.

Malformed input raises ``EvalFileError`` naming the file and the 1-based line.
"""
import gzip
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, List, Optional, Sequence, Union

from ..errors import UserError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
GROUP_MAP_NAMES = ("index2subject.json", "flan2022_index2lang.json")
FULL_NAMES = ("full.jsonl", "flan2022.jsonl")


class EvalFileError(UserError, ValueError):
    """A malformed evaluation file (the message names the file and line)."""


@dataclass(frozen=True)
class EvalExample:
    """One row: the prompt (``inputs``) and the reference answer (``targets``)."""

    inputs: str
    targets: str


@dataclass
class EvalSet:
    """Rows of one benchmark split with one group label per row, the files read, and notes
    about inconsistencies found (also logged as warnings)."""

    examples: List[EvalExample]
    groups: List[str]
    sources: List[str]
    notes: List[str] = field(default_factory=list)

    @property
    def targets(self) -> List[str]:
        """``[example.targets for example in examples]``."""
        return [ex.targets for ex in self.examples]

    @property
    def inputs(self) -> List[str]:
        """``[example.inputs for example in examples]``."""
        return [ex.inputs for ex in self.examples]

    def __len__(self) -> int:
        return len(self.examples)


def resolve(path: PathLike) -> Path:
    """``path`` if it exists, else ``path + ".gz"`` if that exists; ``FileNotFoundError`` otherwise."""
    path = Path(path)
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gz
    raise FileNotFoundError(f"{path} (nor {gz.name}) does not exist")


def _open(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _lines(path: Path) -> List[str]:
    try:
        with _open(path) as f:
            return f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:  # BadGzipFile is an OSError
        raise EvalFileError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


def read_eval_jsonl(path: PathLike) -> List[EvalExample]:
    """Rows of an ``{"inputs", "targets"}`` JSON-lines file (plain or gzipped).

    Trailing empty lines are ignored; an empty line elsewhere, invalid JSON, a line that is not
    an object, or a missing / non-string ``inputs`` or ``targets`` raises ``EvalFileError``
    (``"<file>:<line>: ..."``).
    """
    path = resolve(path)
    lines = _lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        if not line.strip():
            raise EvalFileError(f"{where}: empty line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalFileError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(obj, dict):
            raise EvalFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for key in ("inputs", "targets"):
            if key not in obj:
                raise EvalFileError(f"{where}: no {key!r} field (keys: {sorted(obj)})")
            if not isinstance(obj[key], str):
                raise EvalFileError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
        rows.append(EvalExample(obj["inputs"], obj["targets"]))
    return rows


def read_group_map(path: PathLike) -> List[str]:
    """Group label of each row from ``index2subject.json`` / ``flan2022_index2lang.json``.

    The file holds a JSON list of strings (row ``i`` → ``labels[i]``) or an object
    ``{"0": label, "1": label, ...}`` whose keys must be exactly ``0..n-1``.
    """
    path = resolve(path)
    try:
        data = json.loads("\n".join(_lines(path)))
    except json.JSONDecodeError as e:
        raise EvalFileError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    if isinstance(data, dict):
        try:
            keyed = {int(k): v for k, v in data.items()}
        except ValueError as e:
            raise EvalFileError(f"{path}: object keys must be row numbers ({e})") from e
        if sorted(keyed) != list(range(len(keyed))):
            raise EvalFileError(f"{path}: keys are not the row numbers 0..{len(keyed) - 1}")
        data = [keyed[i] for i in range(len(keyed))]
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
        raise EvalFileError(f"{path}: expected a list of group names")
    return data


def group_label(path: PathLike) -> str:
    """Group name of a per-group file: ``.../causal_judgment.jsonl.gz`` → ``"causal judgment"``."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name.replace("_", " ")


def _find(folder: Path, names: Sequence[str]) -> Optional[Path]:
    for name in names:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.exists():
                return candidate
    return None


def _group_files(folder: Path) -> List[Path]:
    full = set(FULL_NAMES) | {n + ".gz" for n in FULL_NAMES}
    return sorted(p for p in folder.iterdir()
                  if p.name.endswith((".jsonl", ".jsonl.gz")) and p.name not in full)


def _in_order(labels: Sequence[str]) -> List[str]:
    return list(dict.fromkeys(labels))


def _check_map(labels: Sequence[str], counts: dict, map_path: Path) -> List[str]:
    """Notes on how the row counts per group differ from those of a group map."""
    notes, in_map = [], Counter(labels)
    for g, k in in_map.items():
        if counts.get(g) != k:
            found = f"{counts[g]} in its file" if g in counts else "there is no file for it"
            notes.append(f"{map_path.name}: {g!r} has {k} rows in the map, {found}")
    for g in counts:
        if g not in in_map:
            notes.append(f"{map_path.name}: no rows for {g!r} ({counts[g]} rows in its file)")
    return notes


def load_eval_set(path: PathLike, files: Optional[Sequence[str]] = None,
                  official_subset: bool = False) -> EvalSet:
    """Rows and group labels of a benchmark split (a folder) or of one file.

    * a file: its rows, all labelled ``group_label(file)``;
    * a folder with ``full.jsonl`` and a group map (MMLU): those, checked to be equally long;
    * a folder otherwise: the per-group files (all, sorted by name, or ``files`` in the given
      order, names with or without ``.jsonl[.gz]``), each row labelled with its file's group.
      If a group map is present the counts are compared with it (differences go to ``notes``);
      with ``official_subset`` the files are instead the groups of the map, in its order, and
      the rows must match the map exactly (the official TyDiQA ``flan2022.jsonl``).
    """
    path = Path(path)
    if not path.is_dir():
        file = resolve(path)
        rows = read_eval_jsonl(file)
        return EvalSet(rows, [group_label(file)] * len(rows), [str(file)])
    map_path = _find(path, GROUP_MAP_NAMES)
    full = _find(path, FULL_NAMES)
    if full is not None and map_path is not None and files is None:
        rows, labels = read_eval_jsonl(full), read_group_map(map_path)
        if len(rows) != len(labels):
            raise EvalFileError(f"{map_path} has {len(labels)} labels for {len(rows)} rows of {full}")
        return EvalSet(rows, labels, [str(full), str(map_path)])
    labels = read_group_map(map_path) if map_path is not None else None
    if official_subset:
        if labels is None:
            raise EvalFileError(f"{path}: official_subset needs a group map ({' or '.join(GROUP_MAP_NAMES)})")
        files = [g.replace(" ", "_") for g in _in_order(labels)]
    chosen = [resolve(path / (f if f.endswith((".jsonl", ".gz")) else f + ".jsonl")) for f in files] \
        if files is not None else _group_files(path)
    if not chosen:
        raise FileNotFoundError(f"{path}: no .jsonl or .jsonl.gz files")
    examples, groups, counts = [], [], {}
    for file in chosen:
        rows = read_eval_jsonl(file)
        examples += rows
        groups += [group_label(file)] * len(rows)
        counts[group_label(file)] = len(rows)
    notes = _check_map(labels, counts, map_path) if labels is not None else []
    if official_subset and (notes or groups != labels):
        raise EvalFileError(f"{path}: the per-group files do not rebuild {map_path.name}: {notes[:3]}")
    for note in notes:
        logger.warning("%s: %s", path, note)
    return EvalSet(examples, groups, [str(f) for f in chosen] + ([str(map_path)] if map_path else []), notes)
