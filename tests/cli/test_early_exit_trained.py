"""Exact early exit on the tiny trained reverse model in float64 and through fairseq-generate
(the ring of states and the stub network: ``tests/unit/test_early_exit_cycles.py``)."""
import random
import re

import pytest

from conftest import USER_DIR, assert_same_hypothesis, cli
from fairseq_dlm.generator import DiffusionGenerator

LONG = "is long for responses of at most"


# ------------------------------------------------------------------ the tiny trained model
@pytest.fixture(scope="module")
def reverse64(reverse_model, reverse_data):
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(reverse_model)], arg_overrides={"data": str(reverse_data)})
    task.load_dataset("test")
    return models[0].eval().double(), task


def _decode(model, task, ids, **kw):
    ds = task.datasets["test"]
    gen = DiffusionGenerator(task.target_dictionary, oracle_length=True, **kw)
    return {i: h[0] for i, h in zip(ids, gen.generate([model], ds.collater([ds[i] for i in ids])))}


@pytest.mark.parametrize("options", [
    dict(),
    dict(strategy="reparam-cond-deterministic-cosine"),
    dict(block_length=3),
])
def test_trained_model_cycle_skipping_is_lossless_and_cheaper(reverse64, options):
    model, task = reverse64
    ids = list(range(48))
    runs = {name: _decode(model, task, ids, max_iter=300, retain_history=True, **options, **kw)
            for name, kw in (("none", dict(early_exit="none")), ("fixed", dict(cycle_window=1)), ("cycles", {}))}
    for i in ids:
        assert_same_hypothesis(runs["none"][i], runs["fixed"][i])
        assert_same_hypothesis(runs["none"][i], runs["cycles"][i])
    nfe = {name: sum(h["nfe"] for h in run.values()) / len(ids) for name, run in runs.items()}
    assert nfe["none"] == 300
    assert nfe["cycles"] < 0.2 * nfe["none"] and nfe["cycles"] < nfe["fixed"], nfe
    if not options:  # uncond: fixed points alone leave most steps running
        assert nfe["fixed"] > 0.5 * nfe["none"] and nfe["cycles"] < 0.1 * nfe["fixed"], nfe


def test_trained_model_cycle_skipping_is_batch_invariant(reverse64):
    model, task = reverse64
    everything = list(range(60))
    ref = _decode(model, task, everything, max_iter=400)
    shuffled = everything[:]
    random.Random(5).shuffle(shuffled)
    runs = [_decode(model, task, [i], max_iter=400) for i in everything[:6]]
    runs += [_decode(model, task, shuffled[j:j + 7], max_iter=400) for j in range(0, 60, 7)]
    for run in runs:
        for i, hypo in run.items():
            assert_same_hypothesis(hypo, ref[i], history=False)
            assert hypo["nfe"] == ref[i]["nfe"]  # skipping depends on the row alone


def test_cli_long_schedule_runs_few_passes_and_says_so_once(reverse_data, reverse_model):
    proc = cli("generate", reverse_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", reverse_model,
               "--cpu", "--gen-subset", "test", "--oracle-length", "--iter-decode-max-iter", 400,
               "--batch-size", 100)
    out = proc.stdout + proc.stderr
    assert len(re.findall(r"^H-\d+\t", out, re.M)) == 200
    assert out.count(LONG) == 1
    nfe = float(re.findall(r"([\d.]+) network evaluations per sentence", out)[-1])
    assert nfe < 40, nfe  # fixed points alone: ~300
