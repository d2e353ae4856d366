"""Hand-computed cases for length selection, threshold decoding, block plans and row RNG."""
import pytest
import torch

from fairseq_dlm.diffusion.blocks import BlockSchedule
from fairseq_dlm.diffusion.denoise import init_state, threshold_step
from fairseq_dlm.diffusion.fixed_shapes import map_fixed_shapes, row_lengths
from fairseq_dlm.diffusion.layout import prompt_tokens
from fairseq_dlm.diffusion.length import candidate_lengths, length_targets, select_best
from fairseq_dlm.diffusion.rng import RowRandom

PAD, BOS, EOS, MASK = 1, 0, 2, 99


def test_length_targets():
    assert length_targets(torch.tensor([0, 1, 5, 900]), 514).tolist() == [0, 0, 4, 513]


def test_candidate_lengths_top_k_cap_and_dedup():
    logits = torch.tensor([
        [0.0, 5.0, 1.0, 3.0, 2.0],  # classes by score: 1, 3, 4 -> lengths 2, 4, 5
        [0.0, 1.0, 2.0, 3.0, 9.0],  # classes 4, 3, 2 -> lengths 5, 4, 3, capped at 3 -> 3, 3, 3 -> one
    ])
    lengths, owner = candidate_lengths(logits, 3, torch.tensor([10, 3]))
    assert lengths.tolist() == [2, 4, 5, 3]
    assert owner.tolist() == [0, 0, 0, 1]
    # sampled decoding keeps duplicate lengths: each copy draws its own hypothesis (SPEC §5)
    lengths, owner = candidate_lengths(logits, 3, torch.tensor([10, 3]), dedupe=False)
    assert lengths.tolist() == [2, 4, 5, 3, 3, 3] and owner.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="larger than the 5 length classes"):
        candidate_lengths(logits, 6, torch.tensor([10, 3]))


def test_select_best_ties_go_to_the_most_probable_length():
    assert select_best([-1.0, -0.5, -0.5, -2.0, float("-inf")], [0, 0, 0, 1, 1], 2) == [1, 3]


def test_prompt_tokens():
    src = torch.tensor([[10, 11, EOS], [12, EOS, PAD]])
    assert prompt_tokens(src, PAD, BOS, EOS).tolist() == [[BOS, 10, 11], [BOS, 12, PAD]]


def test_threshold_step_commits_confident_and_at_least_schedule():
    tokens = torch.tensor([[BOS, 10, MASK, MASK, MASK, MASK, EOS]])
    slots = torch.tensor([[0, 0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    state = init_state(tokens, slots)
    cand = torch.tensor([[0, 0, 31, 32, 33, 34, 0]])
    logp = torch.log(torch.tensor([[1, 1, 0.95, 0.3, 0.6, 0.2, 1]]))
    # k = 3: only one slot must be committed, and only 0.95 passes τ = 0.9
    s1 = threshold_step(state, cand, logp, torch.tensor([3]), 0.9)
    assert s1.tokens.tolist() == [[BOS, 10, 31, MASK, MASK, MASK, EOS]]
    # k = 1: three of the four must be committed, most confident first
    s2 = threshold_step(state, cand, logp, torch.tensor([1]), 0.9)
    assert s2.tokens.tolist() == [[BOS, 10, 31, 32, 33, MASK, EOS]]
    # τ low: everything above it is committed even when the schedule asks for less
    s3 = threshold_step(state, cand, logp, torch.tensor([3]), 0.25)
    assert s3.tokens.tolist() == [[BOS, 10, 31, 32, 33, MASK, EOS]]
    # committed slots are never re-masked
    s4 = threshold_step(s1, cand, torch.full_like(logp, -5.0), torch.tensor([2]), 0.9)
    assert s4.tokens[0, 2].item() == 31 and s4.masked.sum().item() == 2


def test_block_schedule_by_hand():
    # N = 7, B = 3 -> blocks of 3, 3, 1; S = 4 -> steps 2, 1, 1 (4 // 3 = 1, +1 for block 0)
    slots = torch.tensor([[0] + [1] * 7 + [0], [0] + [1] * 2 + [0] * 6], dtype=torch.bool)
    plans = BlockSchedule(slots, max_step=4, block_length=3, schedule="linear")
    assert plans.total_steps == 4
    p = [plans.plan(g) for g in range(1, 5)]
    assert [pl.domain[0].nonzero().squeeze(1).tolist() for pl in p] == [[1, 2, 3], [1, 2, 3], [4, 5, 6], [7]]
    assert [pl.k[0].item() for pl in p] == [1, 0, 0, 0]  # floor(3 * (1 - 1/2)) = 1, then 0
    # row 1 (N = 2 < B) is one block decoded in S = 4 steps: linear k = 1, 1, 0, 0
    assert [pl.k[1].item() for pl in p] == [1, 1, 0, 0]
    assert all(pl.valid[1] for pl in p)
    assert [pl.domain[1].sum().item() for pl in p] == [2, 2, 2, 2]


def test_block_schedule_more_blocks_than_steps():
    slots = torch.ones(1, 10, dtype=torch.bool)
    plans = BlockSchedule(slots, max_step=2, block_length=2)
    assert plans.total_steps == 5  # each of the 5 blocks gets max(1, 0) = 1 step


def test_row_random_depends_only_on_row_identity():
    a = RowRandom(7, [5, 9], [0, 0]).uniform([0, 1], [3, 2], step=4, purpose=1, device="cpu")
    b = RowRandom(7, [9, 1, 5], [0, 0, 0]).uniform([2, 0], [3, 2], step=4, purpose=1, device="cpu")
    assert torch.equal(a[:3], b[:3]) and torch.equal(a[3:], b[3:])
    c = RowRandom(8, [5], [0]).uniform([0], [3], step=4, purpose=1, device="cpu")
    assert not torch.equal(a[:3], c)


def test_single_block_plan_follows_the_schedule_exactly():
    from fairseq_dlm.diffusion.schedules import num_masked_after_step

    for schedule in ("cosine", "linear"):
        for steps in (1, 4, 10, 50):
            slots = torch.zeros(6, 80, dtype=torch.bool)
            sizes = torch.tensor([1, 2, 8, 20, 37, 78])
            for r, n in enumerate(sizes.tolist()):
                slots[r, 1:1 + n] = True
            plans = BlockSchedule(slots, steps, 0, schedule)
            assert plans.total_steps == steps
            for s in range(1, steps + 1):
                assert torch.equal(plans.plan(s).k, num_masked_after_step(sizes, s, steps, schedule))


def test_fixed_shapes_give_every_row_its_own_bucket_and_a_fixed_micro_batch():
    pad, bos, eos = 1, 0, 2
    lengths = [3, 70, 5, 64, 65, 1, 130]
    tokens = torch.full((len(lengths), 140), pad)
    for r, n in enumerate(lengths):
        tokens[r, :n] = torch.arange(10, 10 + n)
    assert row_lengths(tokens, pad).tolist() == lengths
    shapes = []

    def fn(batch):
        shapes.append(tuple(batch.shape))
        return batch.clone()

    out = map_fixed_shapes(tokens, pad, [bos, eos], fn, bucket=64, micro_batch=4)
    assert sorted(set(shapes)) == [(4, 64), (4, 128), (4, 192)]  # one call per bucket here
    for r, n in enumerate(lengths):
        assert out[r].size(0) == -(-n // 64) * 64
        assert torch.equal(out[r][:n], tokens[r, :n]) and out[r][n:].eq(pad).all()
    with pytest.raises(ValueError, match="fixed shapes need"):
        map_fixed_shapes(tokens, pad, [bos, eos], fn, bucket=1)
