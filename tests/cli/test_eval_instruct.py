"""``scripts/eval_instruct.py`` / :mod:`fairseq_dlm.evaluation`: a tiny instruction checkpoint trained
with the real ``fairseq-train --task diffusion_instruct``, evaluated on fixture files laid out as the
paper's (SPEC §7.3, §7.4)."""
import importlib.util
import json
import re
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, instruct_pair as _pair, write_jsonl as _write

from fairseq_dlm.evaluation import UnknownBenchmarkError, load_job
from fairseq_dlm.metrics import EvalFileError, score_benchmark

SCRIPT = REPO / "scripts" / "eval_instruct.py"
PAPER_EVAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper-eval"
@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    """Paper-layout fixtures: mmlu full.jsonl + index2subject.json, bbh per-task files, mgsm, iwslt14."""
    root = tmp_path_factory.mktemp("instruct") / "instruct"
    mmlu = root / "mmlu" / "0-shot" / "val"
    _write(mmlu / "full.jsonl", [{"inputs": _pair(i)[0] + " Answer: (A) yes (B) no", "targets": "AB"[i % 2]}
                                 for i in range(5)])
    (mmlu / "index2subject.json").write_text(json.dumps(["anatomy", "anatomy", "virology", "virology", "virology"]))
    bbh = root / "bbh-nlp" / "2-shot" / "validation"
    _write(bbh / "causal_judgment.jsonl", [{"inputs": _pair(i)[0], "targets": "(A)"} for i in range(3)])
    _write(bbh / "snarks.jsonl", [{"inputs": _pair(i)[0], "targets": "(B)"} for i in range(3, 5)])
    mgsm = root / "mgsm" / "0-shot" / "en.jsonl"
    _write(mgsm, [{"inputs": _pair(i)[0], "targets": "# " * 60 + str(10 + i)} for i in range(3)])
    iwslt = root / "iwslt14" / "0-shot" / "test" / "deen.jsonl"
    _write(iwslt, [dict(zip(("inputs", "targets"), _pair(i))) for i in range(4)])
    return {"mmlu": mmlu / "full.jsonl", "bbh-nlp": bbh, "mgsm": mgsm, "iwslt14": iwslt}


def run(*args, check=True):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"eval_instruct.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text(encoding="utf-8"))


def test_oracle_length_all_benchmarks(instruct_ckpt, eval_files, tmp_path, spm_model):
    """One run over four benchmarks: JSON per file, rows in order, scores as the metrics compute them,
    oracle canvases as long as the targets."""
    import sentencepiece as spm

    ckpt, data = instruct_ckpt
    out = tmp_path / "out"
    proc = run("--ckpt", ckpt, "--data-dir", data, "--files", *eval_files.values(), "--max-iter", 2,
               "--oracle-length", "--suppress-special-tokens", "--batch-size", 2, "--output-dir", out, "--cpu")
    print(proc.stdout)
    assert "== mmlu.full.0-shot" in proc.stdout and "exact_letter micro" in proc.stdout
    assert "anatomy" in proc.stdout and "causal judgment" in proc.stdout
    assert "bleu (cased)" in proc.stdout and "case:lc" in proc.stdout
    assert "decoding" in proc.stderr or "row" in proc.stderr  # the progress bar
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    names = {"mmlu": "mmlu.full.0-shot", "bbh-nlp": "bbh-nlp.validation.2-shot", "mgsm": "mgsm.en.0-shot",
             "iwslt14": "iwslt14.deen.0-shot"}
    for bench, name in names.items():
        report = _load(out, name)
        job = load_job(str(eval_files[bench]))
        preds = report["predictions"]
        assert [p["id"] for p in preds] == list(range(len(job.data)))
        assert [p["target"] for p in preds] == job.data.targets
        hyps = [p["hypothesis"] for p in preds]
        expected = score_benchmark(bench, hyps, job.data.targets, job.data.groups, **job.options).as_dict()
        assert report["score"] == json.loads(json.dumps(expected))
        for p in preds:  # oracle length: the canvas is the target's pieces, all of them filled
            assert p["canvas"] == len(sp.encode(p["target"], out_type=str)) == p["pieces"]
    assert _load(out, names["mmlu"])["score"]["headline"] == "exact_letter micro"
    assert set(_load(out, names["bbh-nlp"])["score"]["metrics"]["exact_letter"]["groups"]) == {"causal judgment", "snarks"}
    assert all(p["canvas"] > 60 for p in _load(out, names["mgsm"])["predictions"])  # the placeholder canvas


def eval_main(*args):
    """The script's ``main`` in this process (no interpreter start-up)."""
    spec = importlib.util.spec_from_file_location("eval_instruct_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in args])


def test_fixed_canvas_and_limit(instruct_ckpt, eval_files, tmp_path, capsys):
    ckpt, data = instruct_ckpt
    out = tmp_path / "out"
    assert eval_main("--ckpt", ckpt, "--data-dir", data, "--files", eval_files["mgsm"], "--max-iter", 2,
                     "--fixed-canvas-length", 7, "--suppress-special-tokens", "--limit", 2, "--output-dir", out,
                     "--cpu", "--no-progress") == 0
    assert "(2 of 3 rows: the first 2 of each group, --limit)" in capsys.readouterr().out
    report = _load(out, "mgsm.en.0-shot.fixed7")
    assert report["limit"] == {"rows": 2, "of": 3, "per_group": 2} and report["n"] == 2
    assert [p["canvas"] for p in report["predictions"]] == [7, 7]
    assert [p["pieces"] for p in report["predictions"]] == [7, 7]
    assert report["settings"]["canvas"] == "fixed"


def test_file_without_targets_exits_naming_the_file(instruct_ckpt, tmp_path):
    ckpt, data = instruct_ckpt
    bad = tmp_path / "mmlu" / "0-shot" / "val" / "physics.jsonl"
    _write(bad, [{"inputs": "a", "targets": "A"}, {"inputs": "b"}])
    proc = run("--ckpt", ckpt, "--data-dir", data, "--files", bad, "--oracle-length", "--cpu", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bad}:2: no 'targets' field" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_benchmark_and_missing_checkpoint(instruct_ckpt, eval_files, tmp_path):
    ckpt, data = instruct_ckpt
    squad = tmp_path / "squad" / "dev.jsonl"
    _write(squad, [{"inputs": "a", "targets": "b"}])
    with pytest.raises(UnknownBenchmarkError, match=re.escape(str(squad))):
        eval_main("--ckpt", ckpt, "--data-dir", data, "--files", squad, "--oracle-length", "--cpu")
    missing = tmp_path / "nowhere" / "checkpoint_best.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        eval_main("--ckpt", missing, "--data-dir", data, "--files", eval_files["mgsm"], "--oracle-length", "--cpu")


def test_unknown_benchmark_name_is_refused(eval_files):
    with pytest.raises(UnknownBenchmarkError, match=str(eval_files["mgsm"])):
        load_job(str(eval_files["mgsm"]), "gsm-hard")
    with pytest.raises(EvalFileError):
        bad = eval_files["mgsm"].with_name("broken.jsonl")
        bad.write_text("{not json\n")
        load_job(str(bad))


def test_reads_the_real_paper_eval_files():
    """The file handling on a few real rows of each family (skipped without ../shared)."""
    if not PAPER_EVAL.is_dir():
        pytest.skip(f"{PAPER_EVAL} is absent")
    cases = {
        "mmlu/0-shot/val/full.jsonl": ("mmlu", "0-shot", "full"),
        "bbh-nlp/0-shot/validation": ("bbh-nlp", "0-shot", "validation"),
        "mgsm/0-shot/en.jsonl": ("mgsm", "0-shot", "en"),
        "tydiqa/0-shot/validation/english.jsonl": ("tydiqa", "0-shot", "english"),
        "iwslt14/0-shot/validation/deen.jsonl": ("iwslt14", "0-shot", "deen"),
    }
    for rel, (bench, shot, name) in cases.items():
        whole = load_job(str(PAPER_EVAL / rel))
        job = load_job(str(PAPER_EVAL / rel), limit=3)
        assert (job.benchmark, job.shot, job.name) == (bench, shot, name), rel
        per_group = Counter(job.data.groups)
        assert set(per_group) == set(whole.data.groups) and set(per_group.values()) == {3}, rel
        assert job.limited_from == len(whole.data) > len(job.data) == 3 * len(per_group)
        assert all(ex.inputs for ex in job.data.examples)
        empty = {g for ex, g in zip(job.data.examples, job.data.groups) if not ex.targets}
        assert empty <= {"reasoning about colored objects"}, rel  # 121 of its 400 rows have no answer in the file
    mmlu = load_job(str(PAPER_EVAL / "mmlu/0-shot/val/full.jsonl"))
    assert len(set(mmlu.data.groups)) == 57
    # the paper's commands name bbh-nlp/.../full.jsonl and tydiqa/.../flan2022.jsonl, which this layout
    # holds as per-group files: the folder is read instead (flan2022: the map's 8 languages, in its order)
    bbh = load_job(str(PAPER_EVAL / "bbh-nlp/0-shot/validation/full.jsonl"))
    assert bbh.name == "full" and len(set(bbh.data.groups)) == 12
    tydiqa = load_job(str(PAPER_EVAL / "tydiqa/0-shot/validation/flan2022.jsonl"))
    assert len(tydiqa.data) == 4637 and len(set(tydiqa.data.groups)) == 8
    with pytest.raises(FileNotFoundError, match=r"1-shot/validation/flan2022.jsonl \(nor flan2022.jsonl.gz\)"):
        load_job(str(PAPER_EVAL / "tydiqa/1-shot/validation/flan2022.jsonl"))
    mgsm = load_job(str(PAPER_EVAL / "mgsm/0-shot/en.jsonl"), limit=1)
    assert mgsm.data.targets[0].startswith("# " * 60)
    assert load_job(str(PAPER_EVAL / "iwslt14/0-shot/validation/ende.jsonl"), limit=1).direction == "ende"
