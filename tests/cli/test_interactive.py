"""fairseq-interactive: every input line gets exactly one output line, numbered by input line (issue 8.3)."""
import re

import pytest

from conftest import USER_DIR, cli

TEMPLATE = "reverse : {src} ="  # 3 tokens around the input


def _interactive(data, ckpt, text, *extra):
    """fairseq-interactive with ``text`` on stdin (conftest.cli: its cli_main, in this process)."""
    return cli("interactive", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
               "--prompt-template", TEMPLATE, "--iter-decode-max-iter", 4, *extra, input=text).stdout


def _results(stdout):
    """``{line: ("H", hypothesis) | ("E", reason)}``; fails if a line has two results."""
    out = {}
    for kind, line, rest in re.findall(r"^([DE])-(\d+)\t(.*)$", stdout, re.M):
        assert int(line) not in out, f"line {line} has two results"
        out[int(line)] = (kind, rest.split("\t")[-1])
    return out


# the tiny model has 512 positions: [<s>, prompt (P tokens), ≥ 1 slot, </s>] needs P ≤ 509
LINES = ["a b c", "a " * 600, "", "d e f g", "b " * 507, "c " * 506, "   ", "p o n"]


@pytest.mark.parametrize("buffer", [1, 3, 8])
def test_every_line_gets_one_result(reverse_data, reverse_length_model, buffer):
    ckpt, _ = reverse_length_model
    stdout = _interactive(reverse_data, ckpt, "\n".join(LINES) + "\n", "--buffer-size", buffer, "--batch-size", min(buffer, 4))
    results = _results(stdout)
    assert sorted(results) == list(range(len(LINES)))
    assert {i for i, (kind, _) in results.items() if kind == "E"} == {1, 2, 4, 6}
    assert results[2][1] == results[6][1] == "empty line"
    assert "the prompt (603 tokens) leaves no room for a response within 512 positions" in results[1][1]
    assert "the prompt (510 tokens) leaves no room" in results[4][1]  # 507 + 3 of the template
    assert results[5][0] == "D"  # 509 prompt tokens: exactly one response slot fits


def test_sampled_outputs_do_not_depend_on_the_batch(reverse_data, reverse_length_model):
    """The generator is seeded per input line, not per row of the batch."""
    ckpt, _ = reverse_length_model
    lines = ["a b c d", "p o n", "g h i j k", "a b c d", "e f"] * 2
    sample = ["--decoding-temperature", 1.5, "--decoding-strategy", "reparam-uncond-stochastic1.0-cosine", "--seed", 3]
    alone = _results(_interactive(reverse_data, ckpt, "\n".join(lines) + "\n", *sample))  # one line per batch
    batched = _results(_interactive(reverse_data, ckpt, "\n".join(lines) + "\n", *sample,
                                    "--buffer-size", 10, "--batch-size", 3))  # rows sorted by length
    assert sorted(alone) == list(range(len(lines)))
    assert batched == alone
