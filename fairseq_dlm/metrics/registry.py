"""Corpus-level metrics registered by name, with one common shape (SPEC §7).

Every metric is *decomposable*: ``stats(hyps, refs)`` returns a dict of numbers that add up
across batches (n-gram counts, sums of per-example scores, example counts), and
``value(stats)`` turns summed stats into the score.  ``score(hyps, refs)`` is the two in one go.
That lets a fairseq task log the stats of each validation batch with
``metrics.log_scalar_sum`` and derive the score once at the end, with the same code that an
evaluation script uses on a whole file::

    metric = get_metric("bleu", tokenize="13a")
    metric.score(["the cat sat"], ["the cat sat"]).value      # 100.0

All values are percentages (0-100).  ``hyps[i]`` is scored against ``refs[i]``;
``len(hyps) == len(refs)`` is required.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Sequence

logger = logging.getLogger(__name__)

Stats = Dict[str, float]


@dataclass(frozen=True)
class MetricResult:
    """A corpus score: ``value`` (percent), ``n`` examples scored, a ``signature`` saying how it
    was computed (sacrebleu's signature for BLEU), and ``details`` (metric-specific extras)."""

    name: str
    value: float
    n: int
    signature: str = ""
    details: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self, digits: int = 2) -> Dict[str, Any]:
        """JSON-ready dict with ``value`` rounded to ``digits``."""
        return {"name": self.name, "value": round(self.value, digits), "n": self.n,
                "signature": self.signature, "details": self.details}


@dataclass(frozen=True)
class Metric:
    """A named corpus metric.

    ``stats_fn(hyps, refs) -> Stats`` (additive across batches, includes ``"n"``);
    ``value_fn(stats) -> float`` (percent); ``signature`` describes the options in use;
    ``details_fn(stats) -> dict`` adds optional extras to the result.
    """

    name: str
    higher_is_better: bool
    stats_fn: Callable[[Sequence[str], Sequence[str]], Stats]
    value_fn: Callable[[Mapping[str, float]], float]
    signature: str = ""
    details_fn: Callable[[Mapping[str, float]], Dict[str, Any]] = lambda stats: {}

    def stats(self, hyps: Sequence[str], refs: Sequence[str]) -> Stats:
        """Additive sufficient statistics of ``hyps`` against ``refs`` (same length)."""
        check_pairs(hyps, refs, self.name)
        return self.stats_fn(hyps, refs)

    def value(self, stats: Mapping[str, float]) -> float:
        """Score (percent) from stats, possibly summed over several batches (see ``sum_stats``)."""
        return float(self.value_fn(stats))

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> MetricResult:
        """Corpus score of ``hyps`` against ``refs``: ``value(stats(hyps, refs))`` plus details."""
        stats = self.stats(hyps, refs)
        return self.result(stats)

    def result(self, stats: Mapping[str, float]) -> MetricResult:
        """``MetricResult`` from (summed) stats."""
        return MetricResult(self.name, self.value(stats), int(stats.get("n", 0)), self.signature,
                            dict(self.details_fn(stats)))

    def is_better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b`` for this metric."""
        return a > b if self.higher_is_better else a < b


def sum_stats(batches: Sequence[Mapping[str, float]]) -> Stats:
    """Key-wise sum of several ``Metric.stats`` dicts (e.g. one per validation batch)."""
    total: Stats = {}
    for stats in batches:
        for key, val in stats.items():
            total[key] = total.get(key, 0) + val
    return total


def check_pairs(hyps: Sequence[str], refs: Sequence[str], what: str = "metric") -> None:
    """Raise ``ValueError`` unless ``hyps`` and ``refs`` are equally long sequences of strings."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError(f"{what}: hyps and refs must be lists of strings, not one string")
    if len(hyps) != len(refs):
        raise ValueError(f"{what}: {len(hyps)} hypotheses but {len(refs)} references")


_FACTORIES: Dict[str, Callable[..., Metric]] = {}
_DOCS: Dict[str, str] = {}


def register_metric(name: str, doc: str = "") -> Callable:
    """Decorator registering ``factory(**options) -> Metric`` under ``name``."""

    def deco(factory: Callable[..., Metric]) -> Callable[..., Metric]:
        if name in _FACTORIES:
            raise ValueError(f"metric {name!r} is already registered")
        _FACTORIES[name] = factory
        _DOCS[name] = doc or (factory.__doc__ or "").strip().split("\n")[0]
        return factory

    return deco


def available_metrics() -> List[str]:
    """Sorted names of all registered metrics."""
    return sorted(_FACTORIES)


def describe_metrics() -> Dict[str, str]:
    """``{name: one-line description}`` of all registered metrics."""
    return {name: _DOCS[name] for name in available_metrics()}


def get_metric(name: str, **options) -> Metric:
    """The metric registered as ``name``, built with ``options`` (e.g. ``tokenize="intl"``).

    Raises ``KeyError`` listing the known names for an unknown ``name``, and ``TypeError`` for
    an option the metric does not take.
    """
    if name not in _FACTORIES:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(available_metrics())}")
    return _FACTORIES[name](**options)
