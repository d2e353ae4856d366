"""Decoding options and their defaults, written once (SPEC §6).

:class:`DecodingOptions` is what the generator is built from; fairseq's config dataclass
(``fairseq_dlm.generator.DiffusionGenerationConfig``) takes its defaults from :data:`DEFAULTS`,
and ``DiffusionGenerator.from_args`` falls back to them.  Invalid combinations are refused here,
with the command-line flag in the message.
"""
from dataclasses import dataclass

from ..errors import ConfigError
from .denoise import parse_strategy


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
    batch_invariant: bool = False  # --batch-invariant
    cycle_window: int = 8  # exact early exit replays repeating states of period ≤ this (1 = fixed points)
    prompt_cache: bool = True  # --no-prompt-cache turns it off: prefix_lm models then run the whole canvas
    prompt_cache_refresh: int = 1  # --prompt-cache-refresh R: full-attention models (1 = exact, 0 = never)
    quantize_dynamic: bool = False  # --quantize-dynamic: int8 linear layers for CPU decoding

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def __post_init__(self):
        object.__setattr__(self, "early_exit", str(self.early_exit))  # fairseq passes an Enum member
        parse_strategy(self.strategy)  # unknown strategy: a clear error now
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
            (self.prompt_cache_refresh >= 0,
             f"--prompt-cache-refresh must be ≥ 0 (1 = recompute every step, 0 = never), got {self.prompt_cache_refresh}"),
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


DEFAULTS = DecodingOptions()
