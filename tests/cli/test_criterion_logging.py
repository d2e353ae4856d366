"""``--criterion diffusion_lm`` / ``diffusion_length``: counts logged as tensors (no per-step sync) with
the values the integer formulas give, and a validation loss that does not depend on the batching."""
import math

import pytest
import torch


@pytest.fixture(scope="module")
def loaded(reverse_model, reverse_data):
    import fairseq_dlm

    fairseq_dlm.register()
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(reverse_model)], arg_overrides={"data": str(reverse_data)})
    task.load_dataset("valid")
    return models[0], task


def _criterion(task, **cfg):
    from fairseq_dlm.criterions.diffusion_lm import DiffusionLMCriterion, DiffusionLMCriterionConfig

    return DiffusionLMCriterion(DiffusionLMCriterionConfig(**cfg), task)


def _batch(task, ids):
    ds = task.datasets["valid"]
    return ds.collater([ds[i] for i in ids])


def test_logged_counts_are_tensors_with_the_integer_values(loaded):
    model, task = loaded
    model.train()
    criterion = _criterion(task)
    torch.manual_seed(0)
    sample = _batch(task, range(12))
    torch.manual_seed(5)
    _loss, sample_size, log = criterion(model, sample)
    assert sample_size == 1
    for key in ("n_masked", "n_correct", *(f"n_b{b}" for b in range(5))):
        assert torch.is_tensor(log[key]) and log[key].dtype == torch.long, key
    # the same draws again, counted the old way (Python ints)
    torch.manual_seed(5)
    x_t, masks, t, _n = criterion.noise(sample["tokens"], sample["prompt_mask"])
    with torch.no_grad():
        lprobs = torch.log_softmax(model(x_t, positions=masks).float(), dim=-1)
    targets = sample["tokens"].repeat(2, 1)[masks]
    assert int(log["n_masked"]) == int(masks.sum()) > 0
    assert int(log["n_correct"]) == int(lprobs.argmax(-1).eq(targets).sum())
    seq = torch.arange(x_t.size(0)).unsqueeze(1).expand_as(x_t)[masks]
    bucket = ((t - 1) * 5 // 50)[seq]
    assert [int(log[f"n_b{b}"]) for b in range(5)] == [int(bucket.eq(b).sum()) for b in range(5)]
    assert sum(float(log[f"nll_b{b}"]) for b in range(5)) == pytest.approx(float(log["nll_loss"]), rel=1e-4)
    from fairseq import metrics

    with metrics.aggregate() as agg:
        type(criterion).reduce_metrics([log, log])
    assert agg.get_smoothed_values()["accuracy"] == pytest.approx(100 * int(log["n_correct"]) / int(log["n_masked"]),
                                                                  abs=0.01)


def _valid_loss(model, criterion, task, batches):
    total, size = 0.0, 0
    with torch.no_grad():
        for ids in batches:
            loss, sample_size, _log = criterion(model, _batch(task, ids))
            total += float(loss)
            size += sample_size
    return total / size


def test_validation_loss_does_not_depend_on_batching(loaded):
    model, task = loaded
    model.eval()
    criterion = _criterion(task)
    ids = list(range(24))
    one = _valid_loss(model, criterion, task, [ids])
    assert one == _valid_loss(model, criterion, task, [ids]), "the same noise every validation pass"
    split = _valid_loss(model, criterion, task, [ids[:5], ids[5:17], ids[17:]])
    shuffled = _valid_loss(model, criterion, task, [[7, 3, 20, 0], [i for i in ids if i not in (7, 3, 20, 0)]])
    assert split == pytest.approx(one, rel=1e-5) and shuffled == pytest.approx(one, rel=1e-5)
    assert math.isfinite(one)
    # each example's draws are its own: its masks do not change when its batch does
    from fairseq_dlm.diffusion.noising import per_example_draws

    a = per_example_draws([5, 7], [3, 9], 10, 50, 1)
    b = per_example_draws([7], [9], 7, 50, 1)
    assert a[0][1] == b[0][0] and a[1][1] == b[1][0]
    assert all(torch.equal(x[1, :7], y[0, :7]) for x, y in zip(a[2], b[2]))
