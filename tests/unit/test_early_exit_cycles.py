"""Exact early exit replays repeated states and short cycles (SPEC §6.4 item 2) losslessly.

At a constant k, ``reparam-uncond`` re-ranks committed slots by the network's score at their
unmasked positions, so a row often alternates between two states instead of settling; with
``S ≫ N`` (``--iter-decode-max-iter 1000`` on ≤ 8-token responses) fixed-point-only early exit
still ran ~76% of the steps.  These tests check the ring of past states on random functional
graphs, the generator on a stub network that cycles by construction, and the one-time message about
long schedules (the tiny trained reverse model: ``tests/cli/test_early_exit_trained.py``)."""
import logging
import random
import re

import pytest
import torch
from fairseq.data import Dictionary

from conftest import assert_same_hypothesis
from fairseq_dlm.diffusion.cycles import CycleSkip
from fairseq_dlm.generator import DiffusionGenerator

LONG = "is long for responses of at most"


# ------------------------------------------------------------------ the ring of past states
def _decode_state(ids, width):
    """A row state ``(tokens, masked, scores)`` ``[R, width]`` that is a function of an integer id."""
    tokens = torch.stack([(ids // 3 ** j) % 3 for j in range(width)], dim=1)
    masked = tokens.eq(0)
    scores = torch.where(masked, torch.full(tokens.shape, float("-inf")), -tokens.float() / 7)
    return tokens, masked, scores


@pytest.mark.parametrize("window", [1, 2, 3, 8])
def test_replaying_cycles_reproduces_every_step_of_random_dynamics(window):
    """Each row follows its own random map ``state → state`` per key (periodic with random
    periods once a key run is long enough); skipping must give the full run's states exactly."""
    rng = random.Random(window)
    rows, width, n_states, steps = 12, 4, 3 ** 4, 120
    maps = {}  # (row, key) -> lookup table
    # keys: runs of random length, different per row
    keys = []
    for r in range(rows):
        ks, k = [], 0
        while len(ks) < steps:
            ks += [k] * rng.choice([1, 2, 5, 17, 40])
            k += 1
        keys.append(ks[:steps])
    keys = torch.tensor(keys).t()  # [steps, rows]
    small = rng.sample(range(1, n_states), 6)  # maps into a few states: short cycles

    def f(r, key, state_id):
        table = maps.setdefault((r, key), [rng.choice(small if key % 2 else range(1, n_states))
                                           for _ in range(n_states)])
        return table[state_id]

    start = torch.zeros(rows, dtype=torch.long)
    full, cur = [], start.clone()
    for t in range(steps):
        cur = torch.tensor([f(r, int(keys[t, r]), int(cur[r])) for r in range(rows)])
        full.append(cur.clone())

    cycles = CycleSkip(*_decode_state(start, width), window=window)
    cur, calls, replays, periods = start.clone(), 0, 0, set()
    for t in range(steps):
        replay = cycles.begin(keys[t])
        periods |= set(cycles.period[replay].tolist())
        tokens, masked, scores = _decode_state(cur, width)
        old = cycles.replayed()
        nxt = cur.clone()
        for r in range(rows):
            if replay[r]:
                replays += 1
                nxt[r] = sum(int(old[0][r, j]) * 3 ** j for j in range(width))
                assert torch.equal(old[1][r], _decode_state(nxt[r:r + 1], width)[1][0])
                assert torch.equal(old[2][r], _decode_state(nxt[r:r + 1], width)[2][0])
            else:
                calls += 1
                nxt[r] = f(r, int(keys[t, r]), int(cur[r]))
        cur = nxt
        assert torch.equal(cur, full[t]), f"step {t + 1} differs"
        cycles.record(*_decode_state(cur, width))
    assert replays > 0 and calls + replays == rows * steps
    assert max(periods) == window if window < 3 else max(periods) > 1, periods


def test_periods_are_found_within_one_key_only():
    tokens = torch.tensor([[1, 2]])
    a = (tokens, tokens.eq(0), torch.zeros(1, 2))
    b = (tokens + 1, tokens.eq(0), torch.zeros(1, 2))
    cycles = CycleSkip(*a, window=4)
    assert not cycles.begin(torch.tensor([7])).any()
    cycles.record(*b)  # step 1: a → b
    assert not cycles.begin(torch.tensor([8])).any()  # the key changed
    cycles.record(*a)  # step 2 (key 8): b → a equals the state after step 0, but that was under key 7
    assert cycles.period.tolist() == [0]
    assert not cycles.begin(torch.tensor([8])).any()
    cycles.record(*b)  # step 3 (key 8): a → b, as after step 1 — two steps back, both under key 8
    assert cycles.period.tolist() == [2]
    assert cycles.begin(torch.tensor([8])).tolist() == [True]
    assert torch.equal(cycles.replayed()[0], a[0])  # step 4 replays step 2
    cycles.record(*a)
    assert cycles.begin(torch.tensor([9])).tolist() == [False]  # a new key always runs


def test_scores_are_compared_bit_for_bit():
    tokens = torch.tensor([[5, 6]])
    cycles = CycleSkip(tokens, tokens.eq(0), torch.tensor([[0.0, -1.0]]), window=2)
    cycles.begin(torch.tensor([1]))
    cycles.record(tokens, tokens.eq(0), torch.tensor([[-0.0, -1.0]]))  # -0.0 == 0.0, but not the same bits
    assert cycles.period.tolist() == [0]
    cycles.begin(torch.tensor([1]))
    cycles.record(tokens, tokens.eq(0), torch.tensor([[-0.0, -1.0]]))
    assert cycles.period.tolist() == [1]


# ------------------------------------------------------------ a network that cycles by design
class _Cycler(torch.nn.Module):
    """Proposes token ``4 + col % 3`` everywhere (a function of the row alone), confidently at
    ``<mask>`` and less so at committed slots, so at constant k ``uncond`` re-masks what it
    committed and commits the rest."""

    def __init__(self, vocab, mask):
        super().__init__()
        self.vocab, self.mask = vocab, mask
        self.calls = 0

    def max_positions(self):
        return 64

    def forward(self, tokens, positions=None, prompt_mask=None):
        self.calls += 1
        rows, cols = positions.nonzero(as_tuple=True)
        seen = tokens[rows, cols]
        logits = torch.zeros(rows.numel(), self.vocab, dtype=torch.float64)
        top = torch.where(seen.eq(self.mask), 5.0, 2.0) + 0.1 * cols
        logits[torch.arange(rows.numel()), 4 + cols % 3] = top.double()
        return logits


def _toy():
    d = Dictionary()
    for s in "abc":
        d.add_symbol(s)
    d.add_symbol("<mask>")
    return d


def _toy_sample(lengths):
    src = torch.tensor([[4, 5, 6, 2]] * len(lengths))
    tgt = torch.full((len(lengths), max(lengths) + 1), 1)
    for b, n in enumerate(lengths):
        tgt[b, :n], tgt[b, n] = 4, 2
    return {"id": torch.arange(len(lengths)), "net_input": {"src_tokens": src}, "target": tgt}


@pytest.mark.parametrize("options", [
    dict(),
    dict(strategy="reparam-cond-deterministic-cosine"),
    dict(strategy="reparam-uncond-deterministic-linear"),
    dict(block_length=3),
    dict(strategy="threshold", confidence_threshold=0.99),
])
def test_stub_cycles_are_replayed_losslessly(options):
    d = _toy()
    sample = _toy_sample([6, 1, 4, 8, 0, 5])
    out, calls = {}, {}
    for name, kw in (("none", dict(early_exit="none")), ("fixed", dict(cycle_window=1)), ("cycles", {})):
        model = _Cycler(len(d), d.index("<mask>"))
        gen = DiffusionGenerator(d, max_iter=60, oracle_length=True, retain_history=True, **options, **kw)
        out[name], calls[name] = gen.generate([model], sample), model.calls
    for a, b, c in zip(out["none"], out["fixed"], out["cycles"]):
        assert_same_hypothesis(a[0], b[0])
        assert_same_hypothesis(a[0], c[0])
        assert len(a[0]["history"]) == 60 + 1 or options.get("block_length")
        assert c[0]["nfe"] <= b[0]["nfe"] <= a[0]["nfe"]
    if "strategy" not in options or "uncond" in options["strategy"]:  # uncond cycles with period 2
        assert sum(h[0]["nfe"] for h in out["cycles"]) < 0.5 * sum(h[0]["nfe"] for h in out["fixed"])
        assert calls["cycles"] < calls["fixed"] < calls["none"]


def test_long_schedule_is_reported_once_per_generator(caplog):
    d = _toy()
    model = _Cycler(len(d), d.index("<mask>"))
    with caplog.at_level(logging.INFO, logger="fairseq_dlm.diffusion.sampler"):
        DiffusionGenerator(d, max_iter=12, oracle_length=True).generate([model], _toy_sample([6, 2]))
        assert LONG not in caplog.text  # S = 12 ≤ 2 × 6
        gen = DiffusionGenerator(d, max_iter=200, oracle_length=True)
        for _ in range(3):
            gen.generate([model], _toy_sample([6, 2, 3]))
        DiffusionGenerator(d, max_iter=200, oracle_length=True, early_exit="none").generate([model], _toy_sample([4]))
    messages = [r for r in caplog.records if LONG in r.getMessage()]
    assert len(messages) == 2 and all(r.levelno == logging.WARNING for r in messages)
    first, second = (r.getMessage() for r in messages)
    assert "--iter-decode-max-iter 200 is long for responses of at most 6 tokens" in first
    assert "exact early exit replayed" in first and "S ≈ the response length (about 6 here)" in first
    passes = float(re.search(r"took ([\d.]+) forward passes per candidate", first).group(1))
    assert passes < 20
    assert "no exact early exit" in second and "took 200.0 forward passes" in second
