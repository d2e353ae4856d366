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
    with pytest.raises(ConfigError, match="response_room must be a whole number ≥ 1"):
        DiffusionHarnessLM(path=str(reverse_length_model[0]), response_room=0)
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


def test_lm_eval_command_line_runs_a_local_yaml_task(reverse_length_model, reverse_data, questions, paper_root,
                                                     tmp_path):
    """``python -m fairseq_dlm.harness run`` is lm-eval's CLI with the model registered and the packaged
    tasks on the task path next to the user's ``--include_path`` (their data folder from ``--metadata``)."""
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
                           "--tasks", "reverse_mc_cli,dlm_mmlu_gen", "--include_path", str(tmp_path / "tasks"),
                           "--metadata", json.dumps({"data_root": str(paper_root)}), "--limit", "10"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = re.search(r"\|reverse_mc_cli\|.*\|acc\s*\|.\s*\|\s*([\d.]+)\|", proc.stdout)
    assert row and float(row.group(1)) >= 0.9, proc.stdout[-2000:]
    assert re.search(r"\|dlm_mmlu_gen\s*\|.*\|acc\s*\|", proc.stdout), proc.stdout[-2000:]


# ------------------------------------------------------------------ the offline tasks (tasks/*.yaml)
@pytest.fixture(scope="module")
def paper_root(tmp_path_factory):
    """A data folder in the shared layout: paper-eval/mmlu, one BBH task (one row without an answer,
    as the real files have), gsm8k/."""
    from conftest import instruct_pair, write_jsonl

    root = tmp_path_factory.mktemp("data")
    mmlu = root / "paper-eval" / "mmlu" / "0-shot" / "val"
    # the last row is longer than the model's 192 positions: cut from the left by both evaluators
    write_jsonl(mmlu / "full.jsonl", [{"inputs": instruct_pair(i)[0] * (1 if i < 6 else 40) +
                                       " (A) yes (B) no (C) maybe (D) never A:", "targets": "ABCD"[i % 4]}
                                      for i in range(7)])
    (mmlu / "index2subject.json").write_text(json.dumps(["anatomy"] * 3 + ["virology"] * 4))
    write_jsonl(root / "paper-eval" / "bbh-nlp" / "0-shot" / "validation" / "snarks.jsonl",
                [{"inputs": f" Q: {instruct_pair(i)[0]}\nA: (A) (a) (B) (b) A:", "targets": "AB"[i % 2] if i else ""}
                 for i in range(4)])
    for split, n in (("test", 4), ("train", 3)):
        write_jsonl(root / "gsm8k" / f"{split}.jsonl", [
            {"question": f"{instruct_pair(i)[1]}: how many words are there?",
             "answer": f"Count them: <<1+1=2>>.\n#### {len(instruct_pair(i)[1].split())}"} for i in range(n)])
    return root


def _offline(lm, tasks, root, tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from fairseq_dlm.harness.tasks import TASKS_DIR

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_root": str(root)})
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, log_samples=True)


def test_generation_agrees_with_eval_instruct_on_the_same_rows(instruct_ckpt, paper_root, tmp_path, monkeypatch):
    """The packaged generation tasks answer row for row what scripts/eval_instruct.py answers with
    the same settings (S=2, a fixed canvas of 2 slots; batch sizes 4 vs 3), and score it alike."""
    from test_eval_instruct import eval_main

    from fairseq_dlm.harness.model import DiffusionHarnessLM
    from fairseq_dlm.metrics import score_benchmark

    ckpt, data = instruct_ckpt
    lm = DiffusionHarnessLM(path=str(ckpt), data=str(data), steps=2, length=2, batch_size=4)
    out = _offline(lm, ["dlm_mmlu_gen", "dlm_bbh_gen_snarks", "dlm_gsm8k"], paper_root, tmp_path, monkeypatch)
    files = {"dlm_mmlu_gen": ("mmlu/0-shot/val/full.jsonl", "mmlu.full.0-shot.fixed2"),
             "dlm_bbh_gen_snarks": ("bbh-nlp/0-shot/validation/snarks.jsonl", "bbh-nlp.snarks.0-shot.fixed2")}
    report_dir = tmp_path / "eval_instruct"
    eval_main("--ckpt", ckpt, "--data-dir", data, "--files", *(paper_root / "paper-eval" / f for f, _ in files.values()),
              "--max-iter", 2, "--fixed-canvas-length", 2, "--batch-size", 3, "--output-dir", report_dir, "--cpu",
              "--no-progress")
    for task, (_, name) in files.items():
        report = json.loads((report_dir / f"{name}.json").read_text())
        theirs = [p["hypothesis"] for p in sorted(report["predictions"], key=lambda p: p["id"]) if p["target"]]
        ours = [s["resps"][0][0] for s in sorted(out["samples"][task], key=lambda s: s["doc_id"])]
        assert ours == theirs  # the unanswered BBH row: left out by both
        assert report["prompts_cut"] == (task == "dlm_mmlu_gen")  # the long row, cut alike
        assert out["results"][task]["acc,none"] * 100 == pytest.approx(report["score"]["value"], abs=0.006)
    gsm = sorted(out["samples"]["dlm_gsm8k"], key=lambda s: s["doc_id"])
    prompts = [f"Question: {s['doc']['question']} Step-by-Step Answer:" for s in gsm]
    answers = lm.lm.generate(prompts, steps=2, oracle_lengths=[2] * len(prompts), seed=1)
    assert [s["resps"][0][0] for s in gsm] == [a.split("Question:")[0] for a in answers]
    expected = score_benchmark("mgsm", answers, [s["doc"]["final"] for s in gsm]).value
    assert out["results"]["dlm_gsm8k"]["acc,none"] * 100 == pytest.approx(expected, abs=0.006)


def test_likelihood_tasks_score_every_option(instruct_ckpt, paper_root, tmp_path, monkeypatch, caplog):
    """MMLU / BBH by likelihood: one bound per option letter of the row's own prompt, accuracy =
    the argmax's; rows without an answer are left out with a warning naming the file."""
    import math

    from fairseq_dlm.harness.model import DiffusionHarnessLM

    ckpt, data = instruct_ckpt
    lm = DiffusionHarnessLM(path=str(ckpt), data=str(data), mc_samples=2)
    with caplog.at_level("WARNING", logger="fairseq_dlm"):
        out = _offline(lm, ["dlm_mmlu", "dlm_bbh_snarks"], paper_root, tmp_path, monkeypatch)
    assert any("snarks.jsonl: 1 of 4 rows have no answer" in r.getMessage() for r in caplog.records)
    assert any("4 of 34 contexts cut from the left" in r.getMessage() for r in caplog.records)  # the long row
    for task, options, rows in (("dlm_mmlu", ["A", "B", "C", "D"], 7), ("dlm_bbh_snarks", ["A", "B"], 3)):
        samples = out["samples"][task]
        assert len(samples) == rows
        right = 0
        for s in samples:
            assert s["doc"]["choices"] == options
            scores = [r[0][0] for r in s["resps"]]
            assert len(scores) == len(options) and all(math.isfinite(x) and x < 0 for x in scores)
            right += max(range(len(scores)), key=scores.__getitem__) == s["doc"]["label"]
        assert out["results"][task]["acc,none"] == pytest.approx(right / rows)


def test_offline_tasks_name_a_missing_data_folder_and_bad_shots(tmp_path):
    from fairseq_dlm.errors import MissingFileError
    from fairseq_dlm.harness import offline

    with pytest.raises(MissingFileError, match="data_root.*FAIRSEQ_DLM_DATA"):
        offline.mmlu(data_root=str(tmp_path / "nowhere"))
    with pytest.raises(MissingFileError, match="shots=5"):
        offline.bbh("snarks", shots=5, data_root=str(tmp_path))


def test_offline_tasks_read_the_real_files(tmp_path, monkeypatch):
    """The packaged configs on ../shared/data: every row eval_instruct.py reads, with its options."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from fairseq_dlm.evaluation import load_job
    from fairseq_dlm.harness.offline import find_data_root
    from fairseq_dlm.harness.tasks import TASKS_DIR

    try:
        root = find_data_root()
    except FileNotFoundError:
        pytest.skip("no ../shared/data")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    tasks = get_task_dict(["dlm_mmlu", "dlm_bbh_gen", "dlm_gsm8k"], TaskManager(include_path=str(TASKS_DIR),
                                                                                 include_defaults=False))
    flat = {name: task for key, value in tasks.items() for name, task in
            (value.items() if isinstance(value, dict) else [(key, value)])}
    mmlu = list(flat["dlm_mmlu"].eval_docs)
    rows = load_job(str(root / "paper-eval/mmlu/0-shot/val/full.jsonl")).data
    assert [d["inputs"] for d in mmlu] == [ex.inputs for ex in rows.examples] and len(mmlu) == 1531
    assert {tuple(d["choices"]) for d in mmlu} == {("A", "B", "C", "D")}
    assert [d["choices"][d["label"]] for d in mmlu] == rows.targets
    bbh = {name: list(t.eval_docs) for name, t in flat.items() if name.startswith("dlm_bbh_gen_")}
    assert len(bbh) == 12 and sum(map(len, bbh.values())) == 14052 - 121  # 121 rows have no answer
    colored = bbh["dlm_bbh_gen_reasoning_about_colored_objects"]
    assert colored[0]["choices"] == list("ABCDEFGHI") and len(colored) == 400 - 121
    gsm = flat["dlm_gsm8k"]
    assert len(list(gsm.eval_docs)) == 1319 and len(list(gsm.fewshot_docs())) == 7473
    first = list(gsm.eval_docs)[0]
    assert gsm.doc_to_text(first).startswith("Question: Janet") and first["final"] == "18"
