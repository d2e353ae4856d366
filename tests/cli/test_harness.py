"""lm-evaluation-harness on a trained toy model, through lm-eval's real API (``simple_evaluate``
with task configs reading local jsonl files; no network)."""
import json
import random

import pytest

from conftest import REVERSE_TEMPLATE

N = 40


@pytest.fixture(scope="module")
def harness_lm(reverse_length_model, reverse_data):
    from fairseq_dlm.harness.model import DiffusionHarnessLM

    return DiffusionHarnessLM(path=str(reverse_length_model[0]), data=str(reverse_data), mc_samples=8, steps=6,
                              batch_size=8)


@pytest.fixture(scope="module")
def questions(reverse_data):
    """Held-out reverse questions: the reversed string among three shuffles of its letters (same
    length, so only the model's knowledge can tell them apart)."""
    src = (reverse_data.parent / "raw" / "test.src").read_text().splitlines()
    tgt = (reverse_data.parent / "raw" / "test.tgt").read_text().splitlines()
    rng, rows = random.Random(0), []
    for s, t in list(zip(src, tgt))[:N]:
        letters, wrong = t.split(), set()
        for _ in range(50):  # up to three distinct shuffles ("a a b" has only two besides itself)
            w = " ".join(rng.sample(letters, len(letters)))
            if w != t:
                wrong.add(w)
            if len(wrong) == 3:
                break
        if not wrong:  # one repeated letter: nothing to choose between
            continue
        choices = [t, *sorted(wrong)]
        rng.shuffle(choices)
        rows.append({"question": s, "choices": choices, "label": choices.index(t), "answer": t})
    return rows


def _task(tmp_path, rows, **config):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"task": config.pop("task"), "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "doc_to_text": "{{question}}", **config}


def _evaluate(lm, task, monkeypatch, tmp_path):
    import lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    return lm_eval.simple_evaluate(model=lm, tasks=[task], log_samples=True)


def test_likelihood_picks_the_learnable_answer(harness_lm, questions, tmp_path, monkeypatch):
    task = _task(tmp_path, questions, task="reverse_mc", output_type="multiple_choice",
                 doc_to_choice="{{choices}}", doc_to_target="{{label}}", metric_list=[{"metric": "acc"}])
    out = _evaluate(harness_lm, task, monkeypatch, tmp_path)
    assert out["results"]["reverse_mc"]["acc,none"] >= 0.9


def test_generation_task_with_stop_sequences(harness_lm, questions, tmp_path, monkeypatch):
    task = _task(tmp_path, questions, task="reverse_gen", output_type="generate_until", doc_to_target="{{answer}}",
                 generation_kwargs={"until": ["\n"]}, metric_list=[{"metric": "exact_match"}])
    out = _evaluate(harness_lm, task, monkeypatch, tmp_path)
    assert out["results"]["reverse_gen"]["exact_match,none"] >= 0.7  # S=6, predicted lengths; untrained: 0
    # the harness answers exactly what the Python API answers with the same settings
    samples = sorted(out["samples"]["reverse_gen"], key=lambda x: x["doc_id"])
    api = harness_lm.lm.generate([r["question"] for r in questions], steps=6, length_beam=3, seed=1)
    assert [x["resps"][0][0] for x in samples] == api
    # the stop strings cut the decoded text where the first of them starts, as lm-eval expects
    from lm_eval.api.instance import Instance

    prompt = REVERSE_TEMPLATE.format(src="a b c d e f")
    full = harness_lm.lm.generate(prompt, steps=6, length_beam=3, seed=1)
    stop = full.split()[2]
    cut = harness_lm.generate_until([Instance("generate_until", {}, (prompt, {"until": [f" {stop}", "zz"]}), 0)])
    assert cut == [full[:full.index(f" {stop}")]] and full.startswith(cut[0]) and cut[0] != full


def test_seed_fixes_the_bound_and_batching_does_not_change_answers(harness_lm, reverse_length_model, reverse_data,
                                                                   questions):
    from lm_eval.api.instance import Instance

    from fairseq_dlm.harness.model import DiffusionHarnessLM

    q = questions[0]
    reqs = [Instance("loglikelihood", {}, (q["question"], " " + c), i) for i, c in enumerate(q["choices"])]
    first, again = harness_lm.loglikelihood(reqs), harness_lm.loglikelihood(reqs)
    assert first == again  # the same seed: the same draws
    other = DiffusionHarnessLM(path=str(reverse_length_model[0]), data=str(reverse_data), mc_samples=8, seed=2,
                               steps=6)
    moved = other.loglikelihood(reqs)
    assert [a for a, _ in moved] != [a for a, _ in first]  # another seed, another estimate
    best = max(range(len(reqs)), key=lambda i: first[i][0])
    assert best == q["label"] == max(range(len(reqs)), key=lambda i: moved[i][0])
    gen = [Instance("generate_until", {}, (r["question"], {"until": ["\n"]}), i) for i, r in enumerate(questions[:12])]
    other.batch_size = 1
    assert other.generate_until(gen) == harness_lm.generate_until(gen)  # batch size 1 vs 8, seeds 1 vs 2: argmax


def test_bad_model_arguments_are_named(reverse_length_model):
    from fairseq_dlm.errors import ConfigError
    from fairseq_dlm.harness.model import DiffusionHarnessLM

    with pytest.raises(ConfigError, match="unknown model argument.*stepz"):
        DiffusionHarnessLM(path=str(reverse_length_model[0]), stepz=3)
    with pytest.raises(ConfigError, match="mc_samples must be a whole number ≥ 1"):
        DiffusionHarnessLM(path=str(reverse_length_model[0]), mc_samples=0)
    with pytest.raises(ConfigError, match="path="):
        DiffusionHarnessLM()


def test_every_choice_of_a_question_gets_the_same_noise():
    from fairseq_dlm.harness.elbo import mask_draws

    short, long = mask_draws(4, 6, 1, "question"), mask_draws(9, 6, 1, "question")
    other = mask_draws(4, 6, 1, "another question")
    assert [l for l, _ in short] != [l for l, _ in other]
    for (ls, rs), (ll, rl) in zip(short, long):
        assert abs(ls / 4 - ll / 9) <= 1 / 4  # the same mask ratio u, rounded up to each length
        assert rs.tolist() == rl[:4].argsort().argsort().tolist()  # the common positions in the same order


def test_lm_eval_command_line_runs_a_local_yaml_task(reverse_length_model, reverse_data, questions, tmp_path):
    """``python -m fairseq_dlm.harness run`` is lm-eval's CLI with the model registered."""
    import os
    import re
    import subprocess
    import sys

    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in questions))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "reverse_mc_cli.yaml").write_text(
        "task: reverse_mc_cli\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'rows.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{label}}'\n"
        "metric_list:\n  - metric: acc\n")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "fairseq_dlm.harness", "run", "--model", "fairseq_dlm",
                           "--model_args", f"path={reverse_length_model[0]},data={reverse_data},mc_samples=4",
                           "--tasks", "reverse_mc_cli", "--include_path", str(tmp_path / "tasks"), "--limit", "10"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = re.search(r"\|reverse_mc_cli\|.*\|acc\s*\|.\s*\|\s*([\d.]+)\|", proc.stdout)
    assert row and float(row.group(1)) >= 0.9, proc.stdout[-2000:]
