"""Decoding options, their defaults and their flags, written once (SPEC §6).

:class:`DecodingOptions` is what the generator is built from; fairseq's config dataclass
(``fairseq_dlm.tasks.decoding_config.DiffusionGenerationConfig``) takes its defaults from
:data:`DEFAULTS`, and :meth:`DecodingOptions.from_flags` / :meth:`~DecodingOptions.to_flags` are the
one mapping between flags (fairseq's generation config, a task config, a command line) and options.
Invalid combinations are refused here, with the command-line flag in the message.
"""
from dataclasses import dataclass, fields
from typing import List, Mapping

from ..errors import ConfigError
from .strategies import check_strategy

# option -> the flag it is set by, where the names differ: fairseq's own generation flags
# (``cfg.generation``) and two of the task's
GENERATION_FLAGS = {"max_iter": "iter_decode_max_iter", "length_beam": "iter_decode_with_beam",
                    "retain_history": "retain_iter_history"}
TASK_FLAGS = {"strategy": "decoding_strategy", "temperature": "decoding_temperature"}
# flags that set an option in a way of their own (see ``from_flags``)
SWITCHES = ("argmax_decoding", "iter_decode_force_max_iter", "no_prompt_cache")
NO_FLAG = ("cycle_window",)  # options set in Python only


def flag(option: str) -> str:
    """The flag's ``dest`` that sets ``option`` (e.g. ``max_iter`` -> ``iter_decode_max_iter``)."""
    return GENERATION_FLAGS.get(option) or TASK_FLAGS.get(option, option)


def _given(config, name):
    if config is None:
        return None
    if isinstance(config, Mapping):
        return config.get(name)
    return getattr(config, name, None)


def _read_flags(cls, generation, task) -> dict:
    """``cls``'s fields set by ``generation`` (fairseq's generation config, a Namespace or a dict of
    flag dests) and ``task`` (the task config; fairseq's own flags are never read from it)."""
    def value(option_flag, fairseq_own=False):
        got = _given(generation, option_flag)
        return got if got is not None or fairseq_own else _given(task, option_flag)

    values = {f.name: value(flag(f.name), f.name in GENERATION_FLAGS) for f in fields(cls)}
    if "temperature" in values and value("argmax_decoding"):
        values["temperature"] = 0.0
    if "early_exit" in values and value("iter_decode_force_max_iter", fairseq_own=True):
        values["early_exit"] = "none"
    if "prompt_cache" in values and value("no_prompt_cache"):
        values["prompt_cache"] = False
    return {k: v for k, v in values.items() if v is not None}


def _to_flags(options, changed_only: bool) -> List[str]:
    """Command-line flags that set ``options``' fields (those that differ from the defaults unless
    ``changed_only`` is off); ``from_flags`` of what fairseq parses from them gives ``options`` back."""
    out = []
    for f in fields(options):
        value = getattr(options, f.name)
        if f.name in NO_FLAG or (changed_only and value == f.default):
            continue
        if f.name == "prompt_cache":
            out += [] if value else ["--no-prompt-cache"]
        elif isinstance(value, bool):
            out += [f"--{flag(f.name).replace('_', '-')}"] if value else []
        else:
            out += [f"--{flag(f.name).replace('_', '-')}", str(value)]
    return out


def check_flags(flags: Mapping, where: str) -> None:
    """Refuse keys of ``flags`` (a JSON object of flag dests, e.g. ``--eval-args``) that set no option."""
    known = {flag(f.name) for cls in (DecodingOptions, RuntimeOptions) for f in fields(cls)} | set(SWITCHES)
    unknown = sorted(set(flags) - known)
    if unknown:
        raise ConfigError(f"{where}: {', '.join(map(repr, unknown))} set no decoding option; the keys are flag "
                          f"names with underscores: {', '.join(sorted(known))}")


def _check_types(options) -> None:
    """Each field holds its default's type (an int where a float is expected is converted)."""
    for f in fields(options):
        value, kind = getattr(options, f.name), type(f.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(options, f.name, float(value))
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"--{flag(f.name).replace('_', '-')} ({f.name}) must be {kind.__name__}, "
                              f"got {value!r}")


@dataclass(frozen=True)
class DecodingOptions:
    """Every option of parallel iterative decoding (flag names in the comments)."""

    max_iter: int = 10  # S, --iter-decode-max-iter
    strategy: str = "reparam-uncond-deterministic-cosine"  # --decoding-strategy
    temperature: float = 0.0  # --decoding-temperature: 0 = argmax proposals, τ > 0 samples them
    oracle_length: bool = False  # --oracle-length
    length_beam: int = 1  # --iter-decode-with-beam
    mbr: int = 1  # --mbr: sampled candidates per length
    retain_history: bool = False  # --retain-iter-history
    suppress_special_tokens: bool = False  # --suppress-special-tokens
    early_exit: str = "exact"  # --early-exit exact|patience|none
    exit_patience: int = 2  # --exit-patience
    confidence_threshold: float = 0.9  # --confidence-threshold
    block_length: int = 0  # --block-length
    seed: int = 1  # --seed
    cycle_window: int = 8  # exact early exit replays repeating states of period ≤ this (1 = fixed points)

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def __post_init__(self):
        object.__setattr__(self, "early_exit", str(self.early_exit))  # fairseq passes an Enum member
        _check_types(self)
        check_strategy(self.strategy)  # unknown strategy: a clear error now
        checks = [
            (self.max_iter >= 1, f"--iter-decode-max-iter must be ≥ 1, got {self.max_iter}"),
            (self.length_beam >= 1, f"--iter-decode-with-beam must be ≥ 1, got {self.length_beam}"),
            (self.temperature >= 0, f"--decoding-temperature must be ≥ 0, got {self.temperature}"),
            (self.mbr == 1 or self.sampling,
             "--mbr > 1 needs sampling (--decoding-temperature > 0): argmax candidates are identical"),
            (self.early_exit in ("exact", "patience", "none"),
             f"--early-exit must be exact, patience or none, got {self.early_exit!r}"),
            (self.cycle_window >= 1, f"cycle_window must be ≥ 1, got {self.cycle_window}"),
            (0 < self.confidence_threshold <= 1,
             f"--confidence-threshold must be in (0, 1], got {self.confidence_threshold}"),
            (self.block_length >= 0, f"--block-length must be ≥ 0, got {self.block_length}"),
        ]
        if self.early_exit == "patience":
            checks += [
                (self.exit_patience >= 1, f"--exit-patience must be ≥ 1, got {self.exit_patience}"),
                (not self.sampling, "--early-exit patience compares argmax proposals; it cannot be used with "
                                    "--decoding-temperature > 0"),
                (self.block_length == 0, "--early-exit patience is not supported with --block-length; use exact "
                                         "or none"),
            ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_flags(cls, generation, task=None) -> "DecodingOptions":
        """The options set by fairseq's generation config (or a Namespace, or a dict of flag dests)
        ``generation`` and the task config ``task``; an option set by neither keeps its default.

        fairseq's own flags (``--iter-decode-max-iter``, ``--iter-decode-with-beam``,
        ``--retain-iter-history``, ``--iter-decode-force-max-iter``) are read from ``generation``; the
        task's from ``generation`` first, then ``task``.  ``--argmax-decoding`` sets temperature 0 and
        ``--iter-decode-force-max-iter`` early exit ``none``."""
        return cls(**_read_flags(cls, generation, task))

    def to_flags(self, changed_only: bool = True) -> List[str]:
        """The ``fairseq-generate`` flags that set these options, e.g. ``["--iter-decode-max-iter", "6"]``
        (only those that differ from the defaults unless ``changed_only`` is off; ``cycle_window`` has no flag)."""
        return _to_flags(self, changed_only)


@dataclass(frozen=True)
class RuntimeOptions:
    """How the network runs during decoding: speed and numerics, not the decoding algorithm.
    ``prompt_cache_refresh`` ≠ 1 and ``quantize_dynamic`` are approximations."""

    batch_invariant: bool = False  # --batch-invariant: fixed shapes and deterministic algorithms
    prompt_cache: bool = True  # --no-prompt-cache turns it off: prefix_lm models then run the whole canvas
    prompt_cache_refresh: int = 1  # --prompt-cache-refresh R: full-attention models (1 = exact, 0 = never)
    quantize_dynamic: bool = False  # --quantize-dynamic: int8 linear layers for CPU decoding

    def __post_init__(self):
        _check_types(self)
        if self.prompt_cache_refresh < 0:
            raise ConfigError("--prompt-cache-refresh must be ≥ 0 (1 = recompute every step, 0 = never), got "
                              f"{self.prompt_cache_refresh}")

    @classmethod
    def from_flags(cls, generation, task=None) -> "RuntimeOptions":
        """As :meth:`DecodingOptions.from_flags`; ``--no-prompt-cache`` turns ``prompt_cache`` off."""
        return cls(**_read_flags(cls, generation, task))

    def to_flags(self, changed_only: bool = True) -> List[str]:
        """As :meth:`DecodingOptions.to_flags`."""
        return _to_flags(self, changed_only)


def split_options(values: Mapping):
    """``(DecodingOptions fields, RuntimeOptions fields, unknown names)`` of keyword arguments."""
    decoding = {f.name for f in fields(DecodingOptions)}
    runtime = {f.name for f in fields(RuntimeOptions)}
    return ({k: v for k, v in values.items() if k in decoding}, {k: v for k, v in values.items() if k in runtime},
            sorted(set(values) - decoding - runtime))


DEFAULTS = DecodingOptions()
RUNTIME_DEFAULTS = RuntimeOptions()
