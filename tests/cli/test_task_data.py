"""The diffusion_lm task and its dataset, in process, on fairseq-preprocess output."""

import numpy as np
import pytest
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from conftest import USER_DIR


def _task(data, *extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, [str(data), "--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_tiny",
                 "--max-tokens", "400", "--cpu", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task), cfg


@pytest.fixture(scope="module")
def task(translation_data):
    t, _ = _task(translation_data)
    t.load_dataset("train")
    t.load_dataset("valid")
    return t


def test_mask_symbol_added(task):
    d = task.source_dictionary
    assert d.symbols[-1] == "<mask>" and task.mask_idx == len(d) - 1
    assert task.target_dictionary is d


def test_collater_layout(task):
    ds = task.datasets["valid"]
    d = task.source_dictionary
    batch = ds.collater([ds[i] for i in range(4)])
    for b in range(4):
        src, tgt = ds.src[b], ds.tgt[b]
        row = batch["tokens"][b]
        n = src.numel() + tgt.numel()
        assert row[:n].tolist() == [d.bos()] + src[:-1].tolist() + tgt.tolist()
        assert row[n:].eq(d.pad()).all()
        assert batch["prompt_mask"][b].nonzero().max().item() == src.numel() - 1
        assert batch["net_input"]["src_tokens"][b][: src.numel()].tolist() == src.tolist()
    assert batch["ntokens"] == sum(ds.tgt[b].numel() for b in range(4))


def test_batches_are_recomposed_every_epoch_and_cover_everything(task):
    ds = task.datasets["train"]
    itr = task.get_batch_iterator(ds, max_tokens=400, max_positions=512, seed=1,
                                  required_batch_size_multiple=8)
    compositions = []
    for _ in range(2):
        epoch = itr.next_epoch_itr(shuffle=True)
        batches = [sorted(b["id"].tolist()) for b in epoch]
        assert sorted(i for b in batches for i in b) == list(range(len(ds))), "no example dropped"
        compositions.append({tuple(b) for b in batches})
    assert compositions[0] != compositions[1], "batches must be recomposed, not replayed"


def test_ordered_indices_deterministic_per_epoch(task):
    ds = task.datasets["train"]
    ds.set_epoch(3)
    a = ds.ordered_indices()
    ds.set_epoch(4)
    b = ds.ordered_indices()
    ds.set_epoch(3)
    assert np.array_equal(a, ds.ordered_indices()) and not np.array_equal(a, b)
    assert (np.diff(ds.sizes[a]) >= 0).all(), "sorted by length"


def test_joined_dictionary_required(tmp_path, translation_data):
    import shutil

    data = tmp_path / "bin"
    shutil.copytree(translation_data, data)
    (data / "dict.en.txt").write_text("foo 1\n")
    with pytest.raises(ValueError, match="joined dictionary"):
        _task(data)
