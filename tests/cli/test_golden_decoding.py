"""Decoding stays what it was: ``fairseq-generate``'s H/P lines on a committed fixture (issue 19).

``tests/golden/`` holds the toy models of ``examples/reverse/run.sh`` (full and prefix-LM
attention, each with its length stage; weights only), the binarized test split of 200 strings, and
``hp.txt``: the H- and P- lines of ``fairseq-generate`` for every configuration of
``tests/golden/decode.py`` (oracle lengths, length beam 3, cmlm, ar, threshold, blocks, patience,
stochastic reparameterisation and sampling with a seed, ``--batch-invariant``).  A change that is
meant to leave decoding alone must reproduce them: tokens exactly, scores to the 4 printed decimals
up to one unit in the last place (a CPU with other SIMD kernels may round a float32 sum differently;
on one machine they are byte-identical).  ``bash tests/golden/make_golden.sh`` rebuilds the fixture
when decoding is meant to change.
"""
import sys
from pathlib import Path

from conftest import cli

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
import decode as golden  # noqa: E402

TOLERANCE = 1.5e-4  # one unit in the 4th decimal, plus float slack


def _split(line: str):
    """``(kind-id, [tokens or numbers...])``: an H line's score and tokens, a P line's numbers."""
    head, *fields = line.split("\t")
    return head, fields


def _numbers_close(expected: str, got: str) -> bool:
    a, b = expected.split(), got.split()
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= TOLERANCE for x, y in zip(a, b))


def test_fairseq_generate_reproduces_the_golden_lines(tmp_path):
    for name in golden.CONFIGS:  # the real fairseq-generate (in this process: conftest.cli)
        cli("generate", *golden.arguments(name, GOLDEN, tmp_path))
    expected, got = golden.read(GOLDEN / "hp.txt"), {name: golden.hp_lines(tmp_path, name) for name in golden.CONFIGS}
    assert list(got) == list(golden.CONFIGS) and list(expected) == list(golden.CONFIGS)
    for name in golden.CONFIGS:
        assert len(got[name]) == len(expected[name]) == 400, name  # an H and a P line per test string
        for want, have in zip(expected[name], got[name]):
            (want_head, want_fields), (have_head, have_fields) = _split(want), _split(have)
            assert want_head == have_head, (name, want, have)
            if want_head.startswith("H-"):  # score, then the hypothesis: tokens must be identical
                assert want_fields[1:] == have_fields[1:], (name, want, have)
                assert _numbers_close(want_fields[0], have_fields[0]), (name, want, have)
            else:
                assert _numbers_close(want_fields[0], have_fields[0]), (name, want, have)
