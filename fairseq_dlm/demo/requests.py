"""What a demo page may ask for: the JSON body of ``POST /api/decode``, checked field by field.

Every field is optional except ``prompt``; a missing one takes the checkpoint's decoding default
(``defaults``).  A mistake raises :class:`DemoInputError` naming the field, the accepted range and
what was sent; the page shows the message next to the form.
"""
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Mapping, Optional

from ..diffusion.options import DecodingOptions, RuntimeOptions
from ..diffusion.strategies import check_strategy
from ..errors import ConfigError, UserError


class DemoInputError(UserError, ValueError):
    """A request field that cannot be used; ``field`` names it (``None``: the body as a whole)."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DemoLimits:
    """Caps a server puts on every request (one command-line flag each, see :mod:`.cli`)."""

    max_prompt_tokens: int = field(default=256, metadata={"help": "longest prompt accepted, in tokens"})
    max_steps: int = field(default=64, metadata={"help": "most denoising steps a request may ask for"})
    max_length_beam: int = field(default=8, metadata={"help": "largest length beam a request may ask for"})
    max_mbr: int = field(default=8, metadata={"help": "most MBR samples per length a request may ask for"})
    max_length: int = field(default=256, metadata={"help": "longest fixed response length a request may ask for"})
    max_step_delay_ms: int = field(default=1000, metadata={"help": "longest slow-motion pause between steps (ms)"})
    max_concurrent: int = field(default=1, metadata={"help": "requests decoded at the same time"})
    max_queue: int = field(default=4, metadata={"help": "requests allowed to wait for a free slot; more are "
                                                        "answered 'busy'"})

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if f.name == "max_queue" else 1):
                raise ConfigError(f"--{f.name.replace('_', '-')} must be a whole number ≥ "
                                  f"{0 if f.name == 'max_queue' else 1}, got {value!r}")


@dataclass(frozen=True)
class DecodeRequest:
    """One checked request.  ``length``: a fixed response length (``None``: the length head's
    ``length_beam`` best lengths); ``step_delay_ms``: a pause after each step, to watch a fast model."""

    prompt: str
    steps: int
    strategy: str
    length_beam: int
    length: Optional[int]
    mbr: int
    temperature: float
    seed: int
    prompt_cache: bool
    prompt_cache_refresh: int
    confidence_threshold: float
    early_exit: str
    exit_patience: int
    block_length: int
    step_delay_ms: int

    def generate_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :meth:`fairseq_dlm.DiffusionLM.generate` for this request (one prompt)."""
        kw = asdict(self)
        prompt, length = kw.pop("prompt"), kw.pop("length")
        kw.pop("step_delay_ms")
        kw["oracle_lengths"] = None if length is None else [length]
        kw["return_dict"] = True
        return dict(inputs=prompt, **kw)

    def options(self):
        """``(DecodingOptions, RuntimeOptions)`` of this request; raises :class:`DemoInputError` on a
        combination decoding refuses (e.g. MBR without sampling)."""
        try:
            return (DecodingOptions(max_iter=self.steps, strategy=self.strategy, temperature=self.temperature,
                                    oracle_length=self.length is not None, length_beam=self.length_beam,
                                    mbr=self.mbr, early_exit=self.early_exit, exit_patience=self.exit_patience,
                                    confidence_threshold=self.confidence_threshold, block_length=self.block_length,
                                    seed=self.seed),
                    RuntimeOptions(prompt_cache=self.prompt_cache, prompt_cache_refresh=self.prompt_cache_refresh))
        except ConfigError as e:
            raise DemoInputError(str(e)) from None


def _whole(body, name, default, low, high=None):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise DemoInputError(f"{name} must be a whole number, got {value!r}", name)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"≥ {low}"
        raise DemoInputError(f"{name} must be {bound}, got {value}", name)
    return int(value)


def _real(body, name, default, low, high, low_open=False):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DemoInputError(f"{name} must be a number, got {value!r}", name)
    if value < low or value > high or (low_open and value == low):
        raise DemoInputError(f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {value}", name)
    return float(value)


def _flag(body, name, default):
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise DemoInputError(f"{name} must be true or false, got {value!r}", name)
    return value


FIELDS = ("prompt", "steps", "strategy", "length_beam", "length", "mbr", "temperature", "seed", "prompt_cache",
          "prompt_cache_refresh", "confidence_threshold", "early_exit", "exit_patience", "block_length",
          "step_delay_ms")


def parse_request(body: Any, limits: DemoLimits, defaults: DecodingOptions,
                  runtime: RuntimeOptions = RuntimeOptions()) -> DecodeRequest:
    """``body`` (the decoded JSON) as a :class:`DecodeRequest`, or :class:`DemoInputError`.

    The prompt's length in tokens is checked by the server (it needs the model's tokenizer)."""
    if not isinstance(body, Mapping):
        raise DemoInputError(f"the request must be a JSON object with a 'prompt', got {type(body).__name__}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise DemoInputError(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}",
                             unknown[0])
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DemoInputError("prompt is empty: type the text to condition on", "prompt")
    strategy = body.get("strategy", defaults.strategy)
    try:
        check_strategy(strategy if isinstance(strategy, str) else "")
    except ValueError as e:
        raise DemoInputError(f"strategy: {e}", "strategy") from None
    early_exit = body.get("early_exit", defaults.early_exit)
    if early_exit not in ("exact", "patience", "none"):
        raise DemoInputError(f"early_exit must be exact, patience or none, got {early_exit!r}", "early_exit")
    length = body.get("length")
    request = DecodeRequest(
        prompt=prompt,
        steps=_whole(body, "steps", defaults.max_iter, 1, limits.max_steps),
        strategy=strategy,
        length_beam=_whole(body, "length_beam", defaults.length_beam, 1, limits.max_length_beam),
        length=None if length is None else _whole(body, "length", None, 1, limits.max_length),
        mbr=_whole(body, "mbr", defaults.mbr, 1, limits.max_mbr),
        temperature=_real(body, "temperature", defaults.temperature, 0.0, 10.0),
        seed=_whole(body, "seed", defaults.seed, -2**31, 2**31 - 1),
        prompt_cache=_flag(body, "prompt_cache", runtime.prompt_cache),
        prompt_cache_refresh=_whole(body, "prompt_cache_refresh", runtime.prompt_cache_refresh, 0, limits.max_steps),
        confidence_threshold=_real(body, "confidence_threshold", defaults.confidence_threshold, 0.0, 1.0, True),
        early_exit=early_exit,
        exit_patience=_whole(body, "exit_patience", defaults.exit_patience, 1, limits.max_steps),
        block_length=_whole(body, "block_length", defaults.block_length, 0, limits.max_length),
        step_delay_ms=_whole(body, "step_delay_ms", 0, 0, limits.max_step_delay_ms),
    )
    request.options()  # combinations decoding refuses, in the page
    return request

