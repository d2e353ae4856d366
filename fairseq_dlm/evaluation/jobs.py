"""Evaluation jobs: which benchmark, shot count and rows an evaluation file (or folder) holds."""
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import UserError
from ..metrics.evalfiles import (FULL_NAMES, GROUP_MAP_NAMES, EvalFileError, EvalSet, group_label,
                                 load_eval_set, read_eval_jsonl, read_group_map, resolve)
from ..metrics.instruct import BENCHMARKS

logger = logging.getLogger(__name__)

# path component → benchmark (first match from the file name upwards)
BENCHMARK_PATTERNS = (
    (re.compile(r"^mmlu"), "mmlu"), (re.compile(r"^bbh"), "bbh-nlp"), (re.compile(r"^(mgsm|gsm8k)"), "mgsm"),
    (re.compile(r"^tydiqa"), "tydiqa"), (re.compile(r"^iwslt14"), "iwslt14"),
)


class UnknownBenchmarkError(UserError, ValueError):
    """The benchmark of an evaluation file is neither given nor recognisable from its path."""


@dataclass
class EvalJob:
    """One evaluation file (or folder): its benchmark, name, shot count and rows."""

    path: str
    benchmark: str
    name: str
    shot: str
    data: EvalSet
    direction: Optional[str] = None  # iwslt14: deen | ende
    limited_from: Optional[int] = None  # rows read when --limit cut them
    limit: Optional[int] = None  # --limit: the first N rows of each group were kept

    @property
    def options(self) -> Dict[str, Any]:
        """Extra keyword arguments of ``score_benchmark``."""
        return {"direction": self.direction} if self.benchmark == "iwslt14" else {}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


def infer_benchmark(path: str) -> str:
    """``mmlu | bbh-nlp | mgsm | tydiqa | iwslt14`` from the path's components (file name first)."""
    for part in reversed(Path(path).resolve().parts if os.path.exists(path) else Path(path).parts):
        for pattern, bench in BENCHMARK_PATTERNS:
            if pattern.match(part.lower()):
                return bench
    raise UnknownBenchmarkError(
        f"{path}: cannot tell the benchmark from the path (no component starting with mmlu, bbh, mgsm, gsm8k, "
        f"tydiqa or iwslt14); pass --benchmark {'|'.join(BENCHMARKS)}")


def infer_shot(path: str) -> str:
    """``"0-shot"`` etc. from the path, else ``"na"``."""
    shots = [p for p in Path(path).parts if re.fullmatch(r"\d+-shot", p)]
    return shots[-1] if shots else "na"


def infer_direction(path: str) -> str:
    """IWSLT14 direction from the file name (``deen`` / ``ende``)."""
    stem = _stem(Path(path)).lower().replace("-", "").replace("_", "")
    for direction in ("deen", "ende"):
        if direction in stem:
            return direction
    raise UnknownBenchmarkError(f"{path}: an iwslt14 file must be named deen.jsonl or ende.jsonl (the direction)")


def _full_with_map(file: Path) -> EvalSet:
    """A ``full.jsonl`` / ``flan2022.jsonl`` with its folder's group map (one group without a map)."""
    rows = read_eval_jsonl(file)
    maps = [file.parent / n for n in GROUP_MAP_NAMES] + [file.parent / (n + ".gz") for n in GROUP_MAP_NAMES]
    map_path = next((m for m in maps if m.exists()), None)
    if map_path is None:
        logger.warning("%s: no group map next to it; every row is one group", file)
        return EvalSet(rows, [group_label(file)] * len(rows), [str(file)])
    labels = read_group_map(map_path)
    if len(labels) != len(rows):
        raise EvalFileError(f"{map_path} has {len(labels)} labels for the {len(rows)} rows of {file}; pass the "
                            f"folder {file.parent} to score its per-group files instead")
    return EvalSet(rows, labels, [str(file), str(map_path)])


def load_job(path: str, benchmark: str = "auto", limit: Optional[int] = None) -> EvalJob:
    """Read ``path`` (file or folder) as an :class:`EvalJob`; ``limit`` keeps the first ``limit`` rows
    of each group (BBH task, TyDiQA language, MMLU subject; a one-group file: its first rows), so
    that a limited folder still has every group of its macro average."""
    bench = infer_benchmark(path) if benchmark == "auto" else benchmark
    if bench not in BENCHMARKS:
        raise UnknownBenchmarkError(f"{path}: unknown benchmark {bench!r}; known: {', '.join(BENCHMARKS)}")
    p = Path(path)
    full = {n for n in FULL_NAMES} | {n + ".gz" for n in FULL_NAMES}
    gz = p.with_name(p.name + ".gz")
    if p.is_dir():
        data = load_eval_set(p)
    elif (p.name in full or gz.name in full) and not p.exists() and not gz.exists() and p.parent.is_dir():
        # the paper's commands name bbh-nlp/.../full.jsonl and tydiqa/.../flan2022.jsonl; a folder of
        # per-group files with its group map holds the same rows (flan2022: in the map's order, checked)
        logger.info("%s does not exist: reading the per-group files of %s instead", p, p.parent)
        data = load_eval_set(p.parent, official_subset=p.name.startswith("flan2022"))
    elif p.name in full or gz.name in full:
        data = _full_with_map(resolve(p))
    else:
        data = load_eval_set(p)  # one file, one group (a BBH task, a TyDiQA language, an MGSM language)
    if not len(data):
        raise EvalFileError(f"{path}: no rows")
    name = _stem(p) if not p.is_dir() else p.name
    job = EvalJob(str(path), bench, name, infer_shot(path), data,
                  direction=infer_direction(path) if bench == "iwslt14" else None)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, not {limit}")
        seen, keep = Counter(), []
        for i, group in enumerate(data.groups):
            seen[group] += 1
            if seen[group] <= limit:
                keep.append(i)
        if len(keep) < len(data):
            job.limited_from, job.limit = len(data), limit
            job.data = EvalSet([data.examples[i] for i in keep], [data.groups[i] for i in keep], data.sources,
                               data.notes)
    return job
