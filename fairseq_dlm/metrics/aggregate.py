"""Micro and macro averages of per-example scores over groups (subjects, tasks, languages).

For per-example values vᵢ ∈ [0, 1] (correctness, F1) with group labels gᵢ:

* micro = 100 · Σᵢ vᵢ / N  (every example weighs the same);
* per group g: 100 · Σ_{gᵢ=g} vᵢ / N_g;
* macro = mean over groups of the per-group score (every group weighs the same).

``None`` values (an example that cannot be scored, e.g. an empty reference) are left out of
every sum and counted in ``skipped``.  A group whose examples are all ``None`` has no score
and does not enter the macro average.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Optional, Sequence


@dataclass(frozen=True)
class GroupScore:
    """Score (percent) of one group, ``n`` examples scored, ``skipped`` examples left out;
    ``value`` is NaN (``None`` in ``as_dict``) when ``n == 0``."""

    value: float
    n: int
    skipped: int = 0


@dataclass(frozen=True)
class GroupedResult:
    """``micro`` and ``macro`` (percent), ``n`` examples scored, ``skipped`` left out, and
    ``groups``: ``{label: GroupScore}`` in first-appearance order."""

    micro: float
    macro: float
    n: int
    skipped: int
    groups: Dict[Hashable, GroupScore] = field(default_factory=dict)

    def as_dict(self, digits: int = 2) -> Dict[str, Any]:
        """JSON-ready dict; values rounded to ``digits``."""
        return {
            "micro": round(self.micro, digits), "macro": round(self.macro, digits),
            "n": self.n, "skipped": self.skipped,
            "groups": {str(g): {"value": round(s.value, digits) if s.n else None, "n": s.n,
                                "skipped": s.skipped} for g, s in self.groups.items()},
        }


def grouped(values: Sequence[Optional[float]], groups: Sequence[Hashable]) -> GroupedResult:
    """Micro, macro and per-group averages (percent) of ``values[i]`` labelled ``groups[i]``.

    ``len(values) == len(groups)`` is required.  With no scored example at all, micro and
    macro are 0.0.
    """
    if len(values) != len(groups):
        raise ValueError(f"grouped: {len(values)} values but {len(groups)} group labels")
    sums: Dict[Hashable, float] = {}
    counts: Dict[Hashable, int] = {}
    skips: Dict[Hashable, int] = {}
    for v, g in zip(values, groups):
        sums.setdefault(g, 0.0)
        counts.setdefault(g, 0)
        skips.setdefault(g, 0)
        if v is None:
            skips[g] += 1
        else:
            sums[g] += float(v)
            counts[g] += 1
    per = {g: GroupScore(100.0 * sums[g] / counts[g] if counts[g] else float("nan"), counts[g], skips[g])
           for g in sums}
    n = sum(counts.values())
    scored = [s.value for s in per.values() if s.n]
    micro = 100.0 * sum(sums.values()) / n if n else 0.0
    macro = sum(scored) / len(scored) if scored else 0.0
    return GroupedResult(micro, macro, n, sum(skips.values()), per)
