"""The streaming jsonl mixture of instruction tuning (fairseq_dlm/data/jsonl_mixture.py, SPEC §2.4, §9.3).

The module is loaded by path: it imports neither fairseq nor torch, and neither does this test.
"""
import gzip
import json
import logging
import math
import pickle
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from fairseq_dlm.data.jsonl_mixture import JsonlError, JsonlMixture, find_shards, read_ratios

REPO = Path(__file__).resolve().parents[2]
FLAN_RATIO = REPO.parent / "shared" / "data" / "paper-eval" / "flan_2022_ratio.json"


def row(i, shard="s"):
    return json.dumps({"inputs": f"{shard} question {i}", "targets": f"answer {i}", "task": "t"})


def write(path: Path, lines, gz=False) -> Path:
    """Write ``lines`` (str each, newline-terminated) to ``path`` (gzip-compressed when ``gz``)."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if gz:
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path):
    """a.jsonl (100 valid), b.jsonl.gz (60 valid), c.jsonl (40 valid), plus a file that is no shard."""
    write(tmp_path / "a.jsonl", [row(i, "a") for i in range(100)])
    write(tmp_path / "b.jsonl.gz", [row(i, "b") for i in range(60)], gz=True)
    write(tmp_path / "c.jsonl", [row(i, "c") for i in range(40)])
    (tmp_path / "notes.txt").write_text("not a shard\n")
    return tmp_path


def mixture(folder, ratios=None, **kw):
    return JsonlMixture(folder, ratios if ratios is not None else {"a.jsonl": 0.5, "b.jsonl": 0.3,
                                                                   "c.jsonl": 0.2}, **kw)


# ---------------------------------------------------------------- shards and ratios
def test_find_shards_names_plain_and_gz(folder):
    shards = find_shards(folder)
    assert shards == {"a.jsonl": folder / "a.jsonl", "b.jsonl": folder / "b.jsonl.gz",
                      "c.jsonl": folder / "c.jsonl"}


@pytest.mark.parametrize("case, needle", [("missing", "does not exist"), ("empty", r"no \*\.jsonl"),
                                          ("both", "both x.jsonl and x.jsonl.gz")])
def test_find_shards_errors_name_the_folder(tmp_path, case, needle):
    target = tmp_path / "missing" if case == "missing" else tmp_path
    if case == "empty":
        (tmp_path / "readme.txt").write_text("x")
    if case == "both":
        write(tmp_path / "x.jsonl", [row(0)])
        write(tmp_path / "x.jsonl.gz", [row(0)], gz=True)
    with pytest.raises(JsonlError, match=needle) as err:
        find_shards(target)
    assert str(target) in str(err.value)


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    ("[0.5, 0.5]", "must hold a JSON object"),
    ('{"a.jsonl": "0.5"}', "finite number"),
    ('{"a.jsonl": true}', "finite number"),
    ('{"a.jsonl": NaN}', "finite number"),
    ('{"a.jsonl": -0.1, "b.jsonl": 1}', "negative"),
    ('{"zz.jsonl": 1.0}', "names no shard present"),
    ('{"a.jsonl": 0, "b.jsonl": 0, "gone.jsonl": 1}', "sum to 0"),
    ('{"a.jsonl": 1, "a.jsonl.gz": 1}', "named twice"),
])
def test_ratio_file_errors_name_the_file(folder, tmp_path, content, needle):
    path = tmp_path / "ratio.json"
    path.write_text(content)
    with pytest.raises(JsonlError, match=needle) as err:
        read_ratios(path, find_shards(folder))
    assert str(path) in str(err.value)


def test_ratio_file_missing_names_the_file(folder, tmp_path):
    with pytest.raises(JsonlError, match="cannot read ratio file") as err:
        read_ratios(tmp_path / "nope.json", find_shards(folder))
    assert "nope.json" in str(err.value)


def test_ratios_absent_unnamed_and_uniform(folder, caplog):
    shards = find_shards(folder)
    assert read_ratios(None, shards) == pytest.approx({n: 1 / 3 for n in shards})
    with caplog.at_level(logging.WARNING):
        w = read_ratios({"a.jsonl.gz": 3, "b.jsonl": 1, "gone.jsonl": 4}, shards)   # .gz key = same shard
    assert w == pytest.approx({"a.jsonl": 0.75, "b.jsonl": 0.25})
    text = caplog.text
    assert "1 shard(s) absent, 50.0% of the weight" in text and "gone.jsonl (4)" in text
    assert "not in the ratios, excluded: c.jsonl" in text


def test_official_flan_ratio_file_with_some_shards(tmp_path, caplog):
    if not FLAN_RATIO.is_file():
        pytest.skip(f"{FLAN_RATIO} absent (no ../shared next to the repository here)")
    official = json.loads(FLAN_RATIO.read_text())
    assert len(official) == 13 and sum(official.values()) == pytest.approx(1.0)
    write(tmp_path / "flan_zs_opt_train.jsonl", [row(0)])
    write(tmp_path / "cot_fs_opt_train.jsonl.gz", [row(0)], gz=True)
    write(tmp_path / "t0_zs_opt_train.jsonl", [row(0)])
    with caplog.at_level(logging.WARNING):
        w = read_ratios(FLAN_RATIO, find_shards(tmp_path))
    total = 0.1 + 0.025 + 0.107
    assert w == pytest.approx({"cot_fs_opt_train.jsonl": 0.025 / total, "flan_zs_opt_train.jsonl": 0.1 / total,
                               "t0_zs_opt_train.jsonl": 0.107 / total})
    warning = [r.getMessage() for r in caplog.records if "absent" in r.getMessage()]
    assert len(warning) == 1 and str(FLAN_RATIO) in warning[0]
    assert "10 shard(s) absent, 76.8% of the weight" in warning[0]
    assert "dialog_zs_opt_train.jsonl (0.015)" in warning[0] and "flan_zs_opt_train" not in warning[0]


# ---------------------------------------------------------------- counts
def test_largest_remainder_counts_hand_computed(folder):
    m = mixture(folder, {"a.jsonl": 1, "b.jsonl": 1, "c.jsonl": 1})
    assert m.counts(10, 1) == {"a.jsonl": 4, "b.jsonl": 3, "c.jsonl": 3}      # tie → first name
    m = mixture(folder)                                                          # 0.5 / 0.3 / 0.2
    assert m.counts(7, 1) == {"a.jsonl": 4, "b.jsonl": 2, "c.jsonl": 1}       # 3.5, 2.1, 1.4
    assert m.counts(1000, 5) == {"a.jsonl": 500, "b.jsonl": 300, "c.jsonl": 200}
    assert m.counts(7, 1) == m.counts(7, 2) and m.counts(0, 1) == {"a.jsonl": 0, "b.jsonl": 0, "c.jsonl": 0}


def test_random_rounding_is_unbiased_and_exact_in_sum(folder):
    m = mixture(folder, {"a.jsonl": 0.9, "b.jsonl": 0.07, "c.jsonl": 0.03}, rounding="random")
    epochs = 400
    total = Counter()
    for epoch in range(epochs):
        c = m.counts(7, epoch)                              # quotas 6.3, 0.49, 0.21
        assert sum(c.values()) == 7
        assert c["a.jsonl"] in (6, 7) and c["b.jsonl"] in (0, 1) and c["c.jsonl"] in (0, 1)
        assert c == m.counts(7, epoch)
        total.update(c)
    for name, w in m.weights.items():
        # per epoch the count is Bernoulli around its floor: sd ≤ 0.5, so 4 sd of the mean is 2/sqrt(400)
        assert abs(total[name] / epochs - 7 * w) < 4 * 0.5 / math.sqrt(epochs), name
    assert total["c.jsonl"] > 0                   # largest remainder would give c.jsonl 0 forever


# ---------------------------------------------------------------- take
def test_take_mixture_proportions_and_interleaving(folder):
    m = mixture(folder)
    pos, seen = m.initial_position(), Counter()
    for epoch in range(1, 6):
        ex, pos = m.take(333, epoch, pos)
        per = Counter(e.shard for e in ex)              # 166.5, 99.9, 66.6: remainders .9, .6 win
        assert per == m.counts(333, epoch) == {"a.jsonl": 166, "b.jsonl": 100, "c.jsonl": 67}
        seen.update(per)
    share = {n: c / sum(seen.values()) for n, c in seen.items()}
    assert share == pytest.approx(m.weights, abs=0.005)
    first = [e.shard for e in m.take(60, 1, m.initial_position())[0]]
    assert first != sorted(first)                        # interleaved, not grouped by shard
    assert first != [e.shard for e in m.take(60, 2, m.initial_position())[0]]   # new order per epoch


def test_examples_text_and_line_numbers(tmp_path, caplog):
    write(tmp_path / "s.jsonl", [row(0), "", "   ", row(1), "{bad", row(2)])
    m = JsonlMixture(tmp_path)
    with caplog.at_level(logging.WARNING):
        ex, pos = m.take(3, 1, m.initial_position())
    assert sorted((e.line, e.inputs, e.targets) for e in ex) == [
        (1, "s question 0", "answer 0"), (4, "s question 1", "answer 1"), (6, "s question 2", "answer 2")]
    assert pos["shards"]["s.jsonl"] == {"pass": 0, "line": 6, "offset": (tmp_path / "s.jsonl").stat().st_size}
    assert m.bad_lines == {"s.jsonl": 1}                 # blank lines are skipped silently
    assert [r.getMessage().split(":")[1] for r in caplog.records] == ["5"]


def test_determinism_and_resumption(folder):
    m = mixture(folder)
    p0 = m.initial_position()
    assert m.take(150, 1, p0) == m.take(150, 1, p0)      # same call twice (reopens/seeks in between)
    run, pos, stored = [], p0, None
    for epoch in (1, 2, 3):
        if epoch == 3:
            stored = json.loads(json.dumps(pos))        # what the task's checkpoint keeps
        ex, pos = m.take(150, epoch, pos)
        run.append(ex)
    restarted = mixture(folder)                          # a fresh process: no open files
    again, again_pos = restarted.take(150, 3, stored)
    assert again == run[2] and again_pos == pos
    assert pickle.loads(pickle.dumps(m)).take(150, 3, stored)[0] == run[2]


def test_wrap_around(tmp_path, caplog):
    write(tmp_path / "s.jsonl", [row(i) for i in range(5)])
    m = JsonlMixture(tmp_path)
    with caplog.at_level(logging.INFO):
        ex, pos = m.take(12, 1, m.initial_position())
    assert sorted(e.line for e in ex) == sorted([1, 2, 3, 4, 5] * 2 + [1, 2])
    assert pos["shards"]["s.jsonl"]["pass"] == 2 and pos["shards"]["s.jsonl"]["line"] == 2
    wraps = [r.getMessage() for r in caplog.records if "end of file" in r.getMessage()]
    assert len(wraps) == 1 and "2 time(s)" in wraps[0] and "s.jsonl" in wraps[0]
    ex, pos = m.take(3, 2, pos)
    assert sorted(e.line for e in ex) == [3, 4, 5] and pos["shards"]["s.jsonl"]["pass"] == 2


def test_corrupt_lines_reported_with_file_and_line(tmp_path, caplog):
    bad = ["{bad json", "[1, 2]", json.dumps({"inputs": "x"}), json.dumps({"inputs": 3, "targets": "y"}),
           json.dumps({"inputs": "x", "targets": "  "}), json.dumps({"inputs": "x", "targets": None}),
           "{also bad", "{and bad", json.dumps({"inputs": " \n", "targets": "y"})]
    path = write(tmp_path / "s.jsonl", [row(0)] + bad + [row(1)])
    with gzip.open(tmp_path / "g.jsonl.gz", "wb") as f:
        f.write(row(0).encode() + b"\n\xff\xfe\n" + row(1).encode() + b"\n")
    m = JsonlMixture(tmp_path, {"s.jsonl": 2, "g.jsonl": 2})
    with caplog.at_level(logging.WARNING):
        ex, _ = m.take(4, 1, m.initial_position())
    assert sorted((e.shard, e.line) for e in ex) == [("g.jsonl", 1), ("g.jsonl", 3), ("s.jsonl", 1),
                                                     ("s.jsonl", 11)]
    msgs = [r.getMessage() for r in caplog.records]
    for line, reason in [(2, "invalid JSON"), (3, "not a JSON object"), (4, "'targets' missing"),
                         (5, "'inputs' is int"), (6, "empty 'targets'")]:
        assert any(m_.startswith(f"{path}:{line}: {reason}") for m_ in msgs), (line, msgs)
    assert not any(m_.startswith(f"{path}:7:") for m_ in msgs)          # only the first 5 one by one
    assert any("9 bad line(s) skipped this epoch, 9 in total" in m_ for m_ in msgs)
    assert any(m_.startswith(f"{tmp_path / 'g.jsonl.gz'}:2: not UTF-8") for m_ in msgs)
    assert m.bad_lines == {"s.jsonl": 9, "g.jsonl": 1}  # an empty prompt is skipped and counted like an empty target
    assert m.summary() == ("bad lines: g.jsonl 1 (not UTF-8 1); s.jsonl 9 ('inputs' is int, not a string 1, "
                           "'targets' is NoneType, not a string 1, 'targets' missing 1, empty 'inputs' 1, "
                           "empty 'targets' 1, "
                           "invalid JSON 3, not a JSON object 1)")


def test_shard_without_valid_line_is_an_error(tmp_path):
    write(tmp_path / "ok.jsonl", [row(0)])
    write(tmp_path / "dead.jsonl", ["", "{bad", json.dumps({"inputs": "x", "targets": ""})])
    with pytest.raises(JsonlError, match="no valid line in 3 line") as err:
        JsonlMixture(tmp_path)
    assert "dead.jsonl" in str(err.value) and "line 2: invalid JSON" in str(err.value)
    write(tmp_path / "dead.jsonl", [])
    with pytest.raises(JsonlError, match="dead.jsonl: no valid line in 0 line"):
        JsonlMixture(tmp_path)


def test_truncated_and_fake_gzip_name_the_file(tmp_path):
    data = gzip.compress("".join(row(i) + "\n" for i in range(5000)).encode())
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    m = JsonlMixture(tmp_path)                           # the first line is still readable
    with pytest.raises(JsonlError, match="truncated or corrupt gzip file") as err:
        m.take(5000, 1, m.initial_position())
    assert "t.jsonl.gz" in str(err.value)
    (tmp_path / "t.jsonl.gz").write_bytes(b"plain text, not gzip\n")
    with pytest.raises(JsonlError, match="t.jsonl.gz: truncated or corrupt gzip"):
        JsonlMixture(tmp_path)


def test_position_errors(folder):
    m = mixture(folder)
    for bad in (None, {}, {"version": 1}, {"version": 2, "shards": {}},
                {"version": 1, "shards": {"a.jsonl": {"pass": 0, "line": 1}}},
                {"version": 1, "shards": {"a.jsonl": {"pass": 0, "line": -1, "offset": 0}}}):
        with pytest.raises(JsonlError, match="position"):
            m.take(10, 1, bad)
    moved = {"version": 1, "shards": {"a.jsonl": {"pass": 0, "line": 1, "offset": 5}}}
    with pytest.raises(JsonlError, match="a.jsonl: stored position .* not at a line start"):
        m.take(10, 1, moved)
    past_end = {"version": 1, "shards": {"b.jsonl": {"pass": 0, "line": 1, "offset": 10 ** 6}}}
    with pytest.raises(JsonlError, match="b.jsonl.gz: stored position"):
        m.take(10, 1, past_end)
    with pytest.raises(ValueError, match="n must be"):
        m.take(-1, 1, m.initial_position())


def test_streaming_memory_is_bounded(tmp_path):
    lines = [row(i) for i in range(200_000)]
    plain = write(tmp_path / "p.jsonl", lines)
    write(tmp_path / "g.jsonl.gz", lines, gz=True)
    size = plain.stat().st_size                          # ~14 MB decompressed, both files
    near_end = sum(len(line) + 1 for line in lines[:-50])
    start = {"version": 1, "shards": {"g.jsonl": {"pass": 0, "line": 199_950, "offset": near_end},
                                      "p.jsonl": {"pass": 0, "line": 199_950, "offset": near_end}}}
    m = JsonlMixture(tmp_path)
    m.take(2, 0, m.initial_position())                   # warm-up: numpy's lazy imports are not the data
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        ex, pos = m.take(200, 1, start)                  # 100 per shard: 50 to the end, wrap, 50 more
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    m.close()
    assert sorted(e.line for e in ex if e.shard == "g.jsonl") == sorted(list(range(199_951, 200_001))
                                                                        + list(range(1, 51)))
    after = {"pass": 1, "line": 50, "offset": sum(len(x) + 1 for x in lines[:50])}
    assert pos["shards"]["g.jsonl"] == pos["shards"]["p.jsonl"] == after
    assert peak < size / 20, (peak, size)


def test_consecutive_epochs_reuse_open_files(folder, caplog):
    m = mixture(folder)
    _, pos = m.take(50, 1, m.initial_position())
    opened = dict(m._cursors)
    _, pos = m.take(50, 2, pos)
    assert all(m._cursors[n] is opened[n] for n in opened)        # no reopen, no gzip re-decompression
    m.take(50, 2, m.initial_position())                            # another position: reopened
    assert all(m._cursors[n] is not opened[n] for n in opened)
    m.close()
    (folder / "ratio.json").write_text('{"a.jsonl": 1}')
    with caplog.at_level(logging.WARNING):
        uniform = JsonlMixture(folder).weights
    assert uniform == pytest.approx({n: 1 / 3 for n in ("a.jsonl", "b.jsonl", "c.jsonl")})
    assert "ratio.json is present but no ratios were given" in caplog.text
