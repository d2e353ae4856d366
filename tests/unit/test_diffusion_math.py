"""Framework-free diffusion math: forward process, loss weights, schedules, denoising steps."""
import math

import pytest
import torch

from fairseq_dlm.diffusion.denoise import (
    DecodeState, ar_step, cmlm_step, finalize, init_state, lowest_k, reparam_step,
)
from fairseq_dlm.diffusion.layout import build_canvas, concat_prompt_response
from fairseq_dlm.diffusion.noising import coupled_masks, maskable_positions, sample_timesteps
from fairseq_dlm.diffusion.schedules import num_masked_after_step
from fairseq_dlm.diffusion.strategies import build_strategy, strategy_families
from fairseq_dlm.diffusion.weighting import reweighted_loss, timestep_weights

PAD, BOS, EOS, MASK = 1, 0, 2, 99


def test_concat_layout():
    x, p1 = concat_prompt_response(torch.tensor([10, 11, EOS]), torch.tensor([20, 21, 22, EOS]), BOS)
    assert x.tolist() == [BOS, 10, 11, 20, 21, 22, EOS]
    assert p1 == 3


def test_coupled_masks_nested_and_marginal_rates():
    gen = torch.Generator().manual_seed(0)
    T, B, L = 50, 4000, 64
    maskable = torch.ones(B, L, dtype=torch.bool)
    maskable[:, :5] = False  # prompt
    t_a, t_b = sample_timesteps(B, T, generator=gen)
    assert bool((t_a >= t_b).all()) and int(t_b.min()) >= 1 and int(t_a.max()) <= T
    mask_a, mask_b = coupled_masks(maskable, t_a, t_b, T, generator=gen)
    distinct = t_a != t_b
    assert not (mask_b[distinct] & ~mask_a[distinct]).any(), "M_b must be nested in M_a"
    assert not (mask_a | mask_b)[:, :5].any(), "prompt positions are never masked"
    n = maskable.sum(1).double()
    # the masked fraction of each row, minus its expectation t/T, averages to 0 (CLT tolerance)
    for mask, t in ((mask_a, t_a), (mask_b, t_b)):
        resid = mask.sum(1).double() / n - t.double() / T
        stderr = math.sqrt(0.25 / (n[0].item() * B))
        assert abs(resid.mean().item()) < 5 * stderr


def test_fixed_rate_marginal():
    gen = torch.Generator().manual_seed(1)
    maskable = torch.ones(2000, 100, dtype=torch.bool)
    t = torch.full((2000,), 30)
    t_b = torch.full((2000,), 10)
    mask_a, mask_b = coupled_masks(maskable, t, t_b, 50, generator=gen)
    assert abs(mask_a.double().mean().item() - 0.6) < 0.005
    assert abs(mask_b.double().mean().item() - 0.2) < 0.005


def test_maskable_excludes_prompt_pad_and_eos():
    tokens = torch.tensor([[BOS, 10, 11, 20, 21, EOS, PAD]])
    prompt = torch.tensor([[1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert maskable_positions(tokens, prompt, PAD, EOS).int().tolist() == [[0, 0, 0, 1, 1, 0, 0]]
    assert maskable_positions(tokens, prompt, PAD, EOS, mask_eos=True).int().tolist() == [[0, 0, 0, 1, 1, 1, 0]]


def test_loss_matches_spec_worked_example():
    # SPEC §4.3: t = (40, 10), N = 10, CE sums 16.0 and 1.0 -> 10.85; with ε = 0.1 and
    # vocabulary-mean sums 80.0 and 20.0 -> 34.765
    assert timestep_weights(torch.tensor([40, 10]), 50).tolist() == [11.0, 41.0]
    token_loss = torch.tensor([10.0, 6.0, 1.0], dtype=torch.double)
    seq = torch.tensor([0, 0, 1])
    t, n = torch.tensor([40, 10]), torch.tensor([10, 10])
    assert reweighted_loss(token_loss, seq, t, n, 50).item() == pytest.approx(10.85)
    smooth = torch.tensor([50.0, 30.0, 20.0], dtype=torch.double)
    assert reweighted_loss(token_loss, seq, t, n, 50, smooth_loss=smooth, epsilon=0.1).item() == pytest.approx(34.765)
    assert reweighted_loss(token_loss, seq, t, torch.tensor([11, 11]), 50).item() == pytest.approx(10.85 * 10 / 11)


def test_schedule_examples_from_spec():
    n = torch.tensor([8])
    assert [num_masked_after_step(n, s, 4, "cosine").item() for s in range(1, 5)] == [7, 5, 3, 0]
    assert [num_masked_after_step(n, s, 4, "linear").item() for s in range(1, 5)] == [6, 4, 2, 0]
    assert all(num_masked_after_step(torch.tensor([20]), s, 50).item() == 19 for s in range(1, 11))


def test_strategy_registry_declares_what_the_sampler_needs():
    s = build_strategy("reparam-cond-stochastic0.5-linear", MASK)
    assert (s.family, s.cond, s.noise_scale, s.schedule) == ("reparam", True, 0.5, "linear")
    assert s.draws_noise and not s.deterministic
    s = build_strategy("reparam-uncond-deterministic-cosine", MASK)
    assert s.deterministic and not s.draws_noise and not s.cond and s.schedule == "cosine"
    cmlm, ar, threshold = (build_strategy(n, MASK, 0.7) for n in ("cmlm", "ar", "threshold"))
    assert cmlm.draws_noise and not cmlm.deterministic and cmlm.schedule == "linear"
    assert ar.deterministic and not ar.draws_noise and ar.schedule == "linear" and not ar.stops_when_committed
    assert threshold.threshold == 0.7 and threshold.stops_when_committed and threshold.schedule == "cosine"
    assert set(strategy_families()) >= {"reparam", "cmlm", "ar", "threshold"}
    for bad in ("reparam-foo-deterministic-cosine", "reparam-cond-stochasticX-cosine", "cmlm-linear", "mask-predict"):
        with pytest.raises(ValueError, match="unknown decoding strategy"):
            build_strategy(bad, MASK)


def test_build_canvas():
    src = torch.tensor([[10, 11, EOS], [12, EOS, PAD]])
    canvas, slots = build_canvas(src, torch.tensor([2, 3]), PAD, BOS, EOS, MASK)
    assert canvas.tolist() == [[BOS, 10, 11, MASK, MASK, EOS], [BOS, 12, MASK, MASK, MASK, EOS]]
    assert slots.int().tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0]]


def test_lowest_k_order_statistic():
    z = torch.tensor([[0.3, -1.0, 1000.0, 0.1, -0.5]])
    assert lowest_k(z, torch.tensor([2])).int().tolist() == [[0, 1, 0, 0, 1]]
    assert lowest_k(z, torch.tensor([0])).sum().item() == 0


def _run_steps(strategy, steps, n_slots, seed=0):
    """Decode random proposals on a canvas with a 3-token prompt; return states after each step."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.tensor([[10, 11, 12, EOS], [13, EOS, PAD, PAD]])
    canvas, slots = build_canvas(src, torch.tensor(n_slots), PAD, BOS, EOS, MASK)
    state = init_state(canvas, slots)
    states = []
    for s in range(1, steps + 1):
        cand = torch.randint(20, 90, canvas.shape, generator=gen)
        score = -torch.rand(canvas.shape, generator=gen) * 5
        if strategy == "cmlm":
            state = cmlm_step(state, cand, score, torch.tensor([s, s]), torch.tensor([steps, steps]),
                              torch.rand(canvas.shape, generator=gen))
        elif strategy == "ar":
            state = ar_step(state, cand, score, torch.tensor([s, s]), torch.tensor([steps, steps]))
        else:
            k = num_masked_after_step(slots.sum(1), s, steps)
            state = reparam_step(state, cand, score, k, MASK, cond=strategy == "cond")
        states.append(state)
    return canvas, slots, states


@pytest.mark.parametrize("steps,n_slots", [(4, [8, 5]), (10, [20, 7]), (3, [1, 2])])
def test_uncond_masked_count_follows_schedule_and_prompt_is_frozen(steps, n_slots):
    canvas, slots, states = _run_steps("uncond", steps, n_slots)
    for s, state in enumerate(states, start=1):
        expected = num_masked_after_step(torch.tensor(n_slots), s, steps)
        assert state.masked.sum(1).tolist() == expected.tolist()
        assert state.tokens.eq(MASK).sum(1).tolist() == expected.tolist()
        assert torch.equal(state.tokens[~slots], canvas[~slots]), "prompt/<s>/</s>/pad changed"
        assert not (state.masked & ~slots).any()
    assert not states[-1].tokens[slots].eq(MASK).any()


@pytest.mark.parametrize("strategy", ["cond", "cmlm", "ar"])
def test_other_strategies_finish_and_keep_prompt(strategy):
    canvas, slots, states = _run_steps(strategy, 5, [6, 3])
    for s, state in enumerate(states, start=1):
        assert torch.equal(state.tokens[~slots], canvas[~slots])
        # never more masked slots than the schedule allows (cond re-masks less than uncond)
        if strategy == "cond":
            assert (state.masked.sum(1) <= num_masked_after_step(torch.tensor([6, 3]), s, 5)).all()
    assert states[-1].masked.sum().item() == 0


def test_cmlm_and_ar_score_every_slot_by_its_last_step():
    """The official rule (SPEC §11.10): a committed slot's score is replaced by each later step's ŝ."""
    tokens = torch.tensor([[BOS, 10, MASK, MASK, EOS]])
    slots = torch.tensor([[0, 0, 1, 1, 0]], dtype=torch.bool)
    cand = torch.tensor([[0, 0, 31, 32, 0]])
    state = cmlm_step(init_state(tokens, slots), cand, torch.tensor([[0, 0, -0.1, -0.2, 0]]), torch.tensor([1]),
                      torch.tensor([2]), torch.tensor([[0.9, 0.9, 0.1, 0.9, 0.9]]))  # p = 1/2: slot 2 only
    assert state.tokens.tolist() == [[BOS, 10, 31, MASK, EOS]] and state.scores[0, 2].item() == pytest.approx(-0.1)
    state = cmlm_step(state, torch.tensor([[0, 0, 41, 42, 0]]), torch.tensor([[0, 0, -3.0, -0.4, 0]]),
                      torch.tensor([2]), torch.tensor([2]), torch.zeros(1, 5))
    assert state.tokens.tolist() == [[BOS, 10, 31, 42, EOS]], "committed tokens stay"
    assert state.scores[0, 2:4].tolist() == pytest.approx([-3.0, -0.4]), "scores are the last step's"
    assert state.scores[0, 1].item() == 0.0  # outside the slots nothing changes


def test_ar_commits_left_to_right():
    tokens = torch.tensor([[BOS, 10, MASK, MASK, MASK, MASK, EOS]])
    slots = torch.tensor([[0, 0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    cand = torch.tensor([[0, 0, 31, 32, 33, 34, 0]])
    score = torch.tensor([[0, 0, -5.0, -0.1, -0.1, -0.1, 0]])  # the leftmost slot goes first, however unsure
    state = init_state(tokens, slots)
    seen = []
    for s in range(1, 5):  # S = N = 4: one slot per step
        state = ar_step(state, cand, score, torch.tensor([s]), torch.tensor([4]))
        seen.append(state.tokens[0, 2:6].tolist())
    assert seen == [[31, MASK, MASK, MASK], [31, 32, MASK, MASK], [31, 32, 33, MASK], [31, 32, 33, 34]]
    state = init_state(tokens, slots)  # S = 2 < N = 4: two leftmost slots per step, none left masked
    state = ar_step(state, cand, score, torch.tensor([1]), torch.tensor([2]))
    assert state.tokens[0, 2:6].tolist() == [31, 32, MASK, MASK]
    state = ar_step(state, cand, score, torch.tensor([2]), torch.tensor([2]))
    assert not state.masked.any()


def test_reparam_step_by_hand():
    # one row: <s> p </s>-less canvas with 4 slots, all masked; k = 2 -> commit the 2 best
    tokens = torch.tensor([[BOS, 10, MASK, MASK, MASK, MASK, EOS]])
    slots = torch.tensor([[0, 0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    state = init_state(tokens, slots)
    cand = torch.tensor([[0, 0, 31, 32, 33, 34, 0]])
    score = torch.tensor([[0, 0, -0.1, -2.0, -0.5, -3.0, 0]])
    state = reparam_step(state, cand, score, torch.tensor([2]), MASK)
    assert state.tokens.tolist() == [[BOS, 10, 31, MASK, 33, MASK, EOS]]
    assert state.scores[0, 2].item() == pytest.approx(-0.1)
    # uncond: a committed slot whose new score ranks in the lowest k is re-masked
    cand2 = torch.tensor([[0, 0, 41, 42, 43, 44, 0]])
    score2 = torch.tensor([[0, 0, -9.0, -0.2, -0.3, -8.0, 0]])
    state = reparam_step(state, cand2, score2, torch.tensor([2]), MASK)
    assert state.tokens.tolist() == [[BOS, 10, MASK, 42, 33, MASK, EOS]]
    assert state.scores[0, 4].item() == pytest.approx(-0.5), "committed slots outside Low keep σ"
    (toks, pos, score), = finalize(state._replace(tokens=state.tokens.masked_fill(state.tokens.eq(MASK), 7)),
                                   (PAD, BOS, EOS))
    assert toks.tolist() == [7, 42, 33, 7]
    assert isinstance(state, DecodeState)
