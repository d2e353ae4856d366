"""The decoding loop with a plain ``denoise_fn`` (no fairseq model): options come from one place."""
import pytest
import torch
from fairseq.data import Dictionary

from fairseq_dlm.diffusion.options import (
    DEFAULTS, RUNTIME_DEFAULTS, DecodingOptions, RuntimeOptions, check_flags,
)
from fairseq_dlm.generator import DiffusionGenerator, FunctionDenoiser
from fairseq_dlm.tasks.decoding_config import DiffusionGenerationConfig


def _dictionary():
    d = Dictionary()
    for w in "a b c d e f".split():
        d.add_symbol(w)
    d.add_symbol("<mask>")
    return d


def _reverser(d):
    """A perfect network for 'reverse the prompt' on canvases ``[<s>, p1..pP, slot×P, </s>]``."""

    def denoise(tokens):
        out = torch.full((*tokens.shape, len(d)), -10.0)
        for b, row in enumerate(tokens.tolist()):
            n = len(row) - row.count(d.pad())
            half = (n - 2) // 2
            for j in range(half):  # slot j (position 1 + P + j) is prompt token P - j
                out[b, 1 + half + j, row[half - j]] = 0.0
        return out

    return denoise


def test_stub_network_decodes_exactly():
    d = _dictionary()
    src = torch.tensor([[d.index(w) for w in "a b c".split()] + [d.eos()],
                        [d.index(w) for w in "d e f".split()] + [d.eos()]])
    tgt = torch.tensor([[d.index(w) for w in "c b a".split()] + [d.eos()],
                        [d.index(w) for w in "f e d".split()] + [d.eos()]])
    sample = {"id": torch.tensor([0, 1]), "net_input": {"src_tokens": src}, "target": tgt}
    gen = DiffusionGenerator(d, max_iter=3, oracle_length=True)
    hypos = gen.generate([FunctionDenoiser(_reverser(d))], sample)
    assert [d.string(h[0]["tokens"]) for h in hypos] == ["c b a", "f e d"]
    assert all(h[0]["nfe"] <= 3 for h in hypos)


def test_without_length_fn_predicted_lengths_are_a_clear_error():
    d = _dictionary()
    sample = {"id": torch.tensor([0]), "net_input": {"src_tokens": torch.tensor([[d.index("a"), d.eos()]])}}
    with pytest.raises(ValueError, match="oracle_length=True or pass length_fn"):
        DiffusionGenerator(d).generate([FunctionDenoiser(lambda t: torch.zeros(*t.shape, len(d)))], sample)


def test_defaults_are_written_once():
    """fairseq's config fields and the generator's fallbacks take their defaults from DEFAULTS."""
    cfg = DiffusionGenerationConfig()
    assert cfg.decoding_strategy == DEFAULTS.strategy and cfg.decoding_temperature == DEFAULTS.temperature == 0.0
    for name in ("oracle_length", "mbr", "exit_patience", "confidence_threshold", "block_length"):
        assert getattr(cfg, name) == getattr(DEFAULTS, name), name
    for name in ("batch_invariant", "prompt_cache_refresh", "quantize_dynamic"):
        assert getattr(cfg, name) == getattr(RUNTIME_DEFAULTS, name), name
    gen = DiffusionGenerator.from_args(_dictionary(), argparse_namespace())
    assert gen.options == DEFAULTS and gen.runtime == RUNTIME_DEFAULTS


def test_flags_map_to_options_in_one_place():
    """fairseq's own flags come from the generation config only; the task's from either; switches."""
    generation = argparse_namespace(iter_decode_max_iter=7, iter_decode_with_beam=3, retain_iter_history=True,
                                    decoding_strategy="cmlm", iter_decode_force_max_iter=True)
    task = argparse_namespace(iter_decode_max_iter=99, decoding_strategy="threshold", decoding_temperature=0.5,
                              argmax_decoding=True, mbr=1, no_prompt_cache=True, prompt_cache_refresh=3,
                              batch_invariant=True)
    o = DecodingOptions.from_flags(generation, task)
    assert (o.max_iter, o.length_beam, o.retain_history, o.strategy) == (7, 3, True, "cmlm")
    assert o.temperature == 0.0 and o.early_exit == "none"
    r = RuntimeOptions.from_flags(generation, task)
    assert r == RuntimeOptions(batch_invariant=True, prompt_cache=False, prompt_cache_refresh=3)
    assert DecodingOptions.from_flags({"iter_decode_max_iter": 4}).max_iter == 4  # a JSON object of flags
    with pytest.raises(ValueError, match="--eval-args: 'beam' set no decoding option"):
        check_flags({"beam": 5, "iter_decode_max_iter": 4}, "--eval-args")
    with pytest.raises(ValueError, match=r"--iter-decode-max-iter \(max_iter\) must be int, got '10'"):
        DecodingOptions(max_iter="10")
    assert DecodingOptions(temperature=1).temperature == 1.0
    with pytest.raises(TypeError, match="unknown option"):
        DiffusionGenerator(_dictionary(), beam=5)


def argparse_namespace(**kw):
    from argparse import Namespace

    return Namespace(**kw)


@pytest.mark.parametrize("options, message", [
    (dict(max_iter=0), "--iter-decode-max-iter must be ≥ 1"),
    (dict(mbr=2), "--mbr > 1 needs sampling"),
    (dict(strategy="reparam-sometimes"), "unknown decoding strategy"),
    (dict(temperature=-1.0), "--decoding-temperature must be ≥ 0"),
])
def test_invalid_options_are_refused_with_their_flag(options, message):
    with pytest.raises(ValueError, match=message):
        DecodingOptions(**options)


@pytest.mark.parametrize("options, runtime", [
    (DecodingOptions(), RuntimeOptions()),
    (DecodingOptions(max_iter=6, length_beam=3, strategy="cmlm", oracle_length=True, suppress_special_tokens=True,
                     retain_history=True, block_length=2, seed=7),
     RuntimeOptions(batch_invariant=True, prompt_cache=False, prompt_cache_refresh=3, quantize_dynamic=True)),
    (DecodingOptions(temperature=0.5, mbr=4, early_exit="none", strategy="threshold", confidence_threshold=0.7),
     RuntimeOptions()),
    (DecodingOptions(early_exit="patience", exit_patience=3), RuntimeOptions()),
])
def test_to_flags_round_trips_through_fairseqs_parser(options, runtime):
    """fairseq-generate's own parser reads to_flags() back into the same options."""
    from fairseq import options as fairseq_options

    from conftest import USER_DIR

    def parse(flags):
        return fairseq_options.parse_args_and_arch(fairseq_options.get_generation_parser(),
                                                   ["data", "--user-dir", USER_DIR, "--task", "diffusion_lm", *flags])

    flags = options.to_flags() + runtime.to_flags()
    assert (flags == []) == (options == DEFAULTS and runtime == RuntimeOptions())
    args = parse(flags)
    assert DecodingOptions.from_flags(args) == options and RuntimeOptions.from_flags(args) == runtime
    assert DecodingOptions.from_flags(parse(options.to_flags(changed_only=False))) == options
