"""The decoding flags the diffusion tasks add to fairseq (its own ``--iter-decode-*`` flags are reused).

The defaults come from :data:`fairseq_dlm.diffusion.options.DEFAULTS`; the mapping between these
flags and :class:`~fairseq_dlm.diffusion.options.DecodingOptions` is
:meth:`DecodingOptions.from_flags`.
"""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..diffusion.fixed_shapes import BUCKET, MICRO_BATCH
from ..diffusion.options import DEFAULTS, RUNTIME_DEFAULTS

EARLY_EXIT_CHOICES = ChoiceEnum(["exact", "patience", "none"])


@dataclass
class DiffusionGenerationConfig(FairseqDataclass):
    """Decoding options added to the task (fairseq's ``--iter-decode-*`` flags are reused)."""

    decoding_strategy: str = field(
        default=DEFAULTS.strategy,
        metadata={
            "help": "reparam-<uncond|cond>-<deterministic|stochasticX>-<cosine|linear> (X = noise "
            "scale, e.g. stochastic1.0), threshold (confidence-threshold parallel decoding), cmlm, or ar "
            "(left to right, one slot per step; diagnostics)"
        },
    )
    argmax_decoding: bool = field(
        default=False, metadata={"help": "force argmax proposals whatever --decoding-temperature says"}
    )
    decoding_temperature: float = field(
        default=DEFAULTS.temperature,
        metadata={"help": "0 = argmax proposals (the paper's evaluations); τ > 0 samples ŷ ~ Cat(softmax(logp/τ))"},
    )
    oracle_length: bool = field(
        default=DEFAULTS.oracle_length,
        metadata={"help": "give each canvas the reference response length (evaluation shortcut)"},
    )
    mbr: int = field(
        default=DEFAULTS.mbr,
        metadata={"help": "sampled candidates per length (keep the best mean log-prob); needs --decoding-temperature > 0"},
    )
    suppress_special_tokens: bool = field(
        default=DEFAULTS.suppress_special_tokens, metadata={"help": "never propose <s>, </s>, <pad>, <unk> or madeupword* symbols"}
    )
    early_exit: EARLY_EXIT_CHOICES = field(
        default=DEFAULTS.early_exit,
        metadata={
            "help": "exact: a row skips the forward pass while k stays the same and its state (canvas, masked "
            "set, scores) did not change or repeats a state of the last few steps, a cycle it can replay "
            "(lossless; deterministic strategies only); patience: a row stops once its "
            "prediction is unchanged for --exit-patience steps (lossy, argmax only); none: always run "
            "every step (also implied by --iter-decode-force-max-iter)"
        },
    )
    exit_patience: int = field(
        default=DEFAULTS.exit_patience,
        metadata={
            "help": "with --early-exit patience: stop a row after this many consecutive steps whose prediction "
            "(committed tokens, every <mask> replaced by its argmax proposal) did not change, and commit "
            "those proposals"
        },
    )
    confidence_threshold: float = field(
        default=DEFAULTS.confidence_threshold, metadata={"help": "with --decoding-strategy threshold: commit masked slots with p ≥ this"}
    )
    block_length: int = field(
        default=DEFAULTS.block_length, metadata={"help": "semi-autoregressive decoding in blocks of this many slots (0 = off)"}
    )
    prompt_cache_refresh: int = field(
        default=RUNTIME_DEFAULTS.prompt_cache_refresh,
        metadata={
            "help": "full-attention models: reuse the prompt's keys/values across steps, recomputing them every R "
            "steps (1 = every step: exact, the default; 0 = only at a row's first step); faster, approximate. "
            "prefix_lm models need no refresh: their prompt cache is exact"
        },
    )
    quantize_dynamic: bool = field(
        default=RUNTIME_DEFAULTS.quantize_dynamic,
        metadata={"help": "CPU decoding: the backbone's linear layers in dynamic int8 (torch.ao.quantization."
                          "quantize_dynamic); faster on CPUs, at a quality cost to measure on your model (none on the toy "
                          "task, 3-4 BLEU on the README's Multi30k models)"},
    )
    no_prompt_cache: bool = field(
        default=False,
        metadata={"help": "prefix_lm models: run the backbone over the whole canvas every step (the reference "
                          "the prompt cache is checked against)"},
    )
    batch_invariant: bool = field(
        default=RUNTIME_DEFAULTS.batch_invariant,
        metadata={
            "help": f"fixed network shapes (rows bucketed by their own length to multiples of {BUCKET}, "
            f"micro-batches of {MICRO_BATCH} rows, logits at all positions) and deterministic algorithms, so "
            "float32/bf16 kernels give bit-identical hypotheses whatever the batch; slower"
        },
    )
    external_reranker: Optional[str] = field(
        default=None,
        metadata={"help": "a fairseq checkpoint trained on this data folder (e.g. fairseq's autoregressive transformer) "
                          "that picks each example's hypothesis among its length-beam / MBR candidates by its mean "
                          "log-likelihood instead of the diffusion model's own score (fairseq's "
                          "--iter-decode-with-external-reranker, with the reranker given by path)"},
    )
