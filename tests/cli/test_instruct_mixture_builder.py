"""scripts/build_instruct_mixture.py: the real entry point on small Multi30k-/GSM8K-like fixtures
written here (plus one run on ../shared/data when it exists, with the evaluation leak check)."""
import gzip
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_dlm.data.instruct_mixture import LeakError, leak_check

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_instruct_mixture.py"
SHARED_DATA = REPO.parent / "shared" / "data"
LANGS = ("de", "fr", "cs")
NAMES = {"de": "German", "fr": "French", "cs": "Czech", "en": "English"}
FAMILIES = ("translation_zs", "translation_fs", "gsm8k_zs", "gsm8k_fs", "choice_zs", "choice_fs")
SHOTS = 2

SUBJECTS = [("ein hund", "un chien", "pes", "a dog"), ("eine frau", "une femme", "žena", "a woman"),
            ("ein kind", "un enfant", "dítě", "a child"), ("ein mann", "un homme", "muž", "a man")]
VERBS = [("läuft im park", "court dans le parc", "běží v parku", "runs in the park"),
         ("sitzt am see", "est assis au lac", "sedí u jezera", "sits by the lake"),
         ("spielt im schnee", "joue dans la neige", "hraje si ve sněhu", "plays in the snow"),
         ("isst einen apfel", "mange une pomme", "jí jablko", "eats an apple")]


def _rows():
    rows = [tuple(f"{s[k]} {v[k]}." for k in range(4)) for s in SUBJECTS for v in VERBS]
    return rows[:12], rows[12:]           # 12 train, 4 val lines: (de, fr, cs, en)


def _problem(k: int) -> dict:
    a, b = 3 + k, 4 + 2 * k
    answer = f"{a * b * 100:,}" if k % 3 == 0 else str(a * b)
    return {"question": f"Tom has {a} boxes with {b} apples each. How many apples does he have? (case {k})",
            "answer": f"He has {a} * {b} = <<{a}*{b}={a * b}>>{a * b} apples\nSo the total is {answer}\n#### {answer}"}


def write_fixture(data: Path) -> dict:
    """Multi30k-like gz files and a GSM8K-like train.jsonl.gz under ``data``; {(lang, text): en}."""
    train, val = _rows()
    (data / "multi30k").mkdir(parents=True)
    for split, rows in (("train", train), ("val", val)):
        for k, lang in enumerate(("de", "fr", "cs", "en")):
            with gzip.open(data / "multi30k" / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(r[k] + "\n" for r in rows)
    (data / "gsm8k").mkdir()
    with gzip.open(data / "gsm8k" / "train.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(_problem(k)) + "\n" for k in range(10))
    aligned = {}
    for r in train + val:
        for k, lang in enumerate(("de", "fr", "cs")):
            aligned[(lang, "en", r[k])] = r[3]
            aligned[("en", lang, r[3])] = r[k]
    return aligned


def run(*args, check=True):
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def read(path: Path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_jsonl_mixture():
    """``fairseq_dlm.data.jsonl_mixture`` (numpy only: importing it loads neither torch nor fairseq)."""
    return importlib.import_module("fairseq_dlm.data.jsonl_mixture")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    aligned = write_fixture(root / "data")
    out = root / "out"
    proc = run("--data-dir", root / "data", "--out", out, "--shots", SHOTS, "--gsm8k-heldout", 2, "--seed", 3)
    return root, out, aligned, proc


def test_shards_exist_and_parse(built):
    _, out, _, proc = built
    for family in FAMILIES:
        assert (out / f"{family}_train.jsonl.gz").is_file(), proc.stdout
        assert (out / "valid" / f"{family}_valid.jsonl.gz").is_file()
    ratios = json.loads((out / "ratio.json").read_text())
    assert set(ratios) == {f"{f}_train.jsonl" for f in FAMILIES}
    readme = (out / "README.md").read_text()
    assert "--shots" in readme and "translation_zs_train.jsonl.gz" in readme and "train.en.gz" in readme
    jm = load_jsonl_mixture()
    for folder in (out, out / "valid"):
        mixture = jm.JsonlMixture(folder, folder / "ratio.json", seed=1)
        examples, _ = mixture.take(20, 0, mixture.initial_position())
        assert len(examples) == 20 and all(e.inputs and e.targets for e in examples)
        assert not sum(mixture.bad_lines.values())
        mixture.close()


def test_translation_directions_and_shots(built):
    _, out, aligned, _ = built
    zs = read(out / "translation_zs_train.jsonl.gz")
    assert len(zs) == 12 * 3 * 2
    tasks = {r["task"] for r in zs}
    assert tasks == {f"translation.{a}-{b}" for lang in LANGS for a, b in ((lang, "en"), ("en", lang))}
    assert len({r["template"] for r in zs}) > 2       # several templates
    for r in zs:
        sl, tl = r["task"].split(".")[1].split("-")
        sources = [s for (a, b, s), t in aligned.items() if a == sl and b == tl and t == r["targets"]]
        assert any(s in r["inputs"] for s in sources), r
    fs = read(out / "translation_fs_train.jsonl.gz")
    assert len(fs) == 12
    for r in fs:
        sl, tl = r["task"].split(".")[1].split("-")
        assert r["shots"] == SHOTS
        assert r["inputs"].count(f"{NAMES[sl]}: ") == SHOTS + 1 and r["inputs"].endswith(f"{NAMES[tl]}:")
        demos = re.findall(rf"{NAMES[sl]}: (.*?) {NAMES[tl]}: (.*?)(?= {NAMES[sl]}: )", r["inputs"])
        assert len(demos) == SHOTS and all(aligned[(sl, tl, s)] == t for s, t in demos), r
        assert r["targets"] not in [t for _, t in demos]          # the query is no demonstration


def test_gsm8k_targets_end_with_number(built):
    _, out, _, _ = built
    answers = {_problem(k)["question"]: _problem(k)["answer"].split("####")[-1].strip() for k in range(10)}
    for name, shots in (("gsm8k_zs_train", 0), ("gsm8k_fs_train", SHOTS)):
        rows = read(out / f"{name}.jsonl.gz")
        assert len(rows) == 8                                     # 10 problems, 2 held out
        for r in rows:
            question = r["inputs"].rsplit("Question: ", 1)[1].rsplit(" Step-by-Step Answer:", 1)[0]
            final = answers[question]
            assert r["targets"].endswith(f"The answer is {final}")
            assert re.findall(r"\d+(?:,\d+)*", r["targets"])[-1] == final
            assert "<<" not in r["targets"] and "####" not in r["targets"]
            assert r["inputs"].count("Question: ") == shots + 1 and r["inputs"].endswith("Step-by-Step Answer:")
            assert r.get("shots", 0) == shots
    held = read(out / "valid" / "gsm8k_zs_valid.jsonl.gz")
    held_q = {r["inputs"] for r in held}
    assert len(held) == 2 and not held_q & {r["inputs"] for r in read(out / "gsm8k_zs_train.jsonl.gz")}
    for r in read(out / "gsm8k_fs_train.jsonl.gz"):           # held-out problems are no demonstrations
        assert not any(q[len("Question: "):-len(" Step-by-Step Answer:")] in r["inputs"] for q in held_q)


def _options(inputs: str):
    """The options of the last question of a multiple-choice prompt: {letter: text}."""
    last = inputs.rsplit(" | ", 1)[-1]
    body = last[: -len(" A:")]
    return dict(re.findall(r"\(([A-J])\) (.*?)(?= \([A-J]\) |$)", body[body.rindex("(A) "):]))


def test_choice_letters(built):
    _, out, aligned, _ = built
    for name in ("choice_zs_train", "choice_fs_train"):
        rows = read(out / f"{name}.jsonl.gz")
        assert len(rows) == 12 + 8
        assert {r["task"].split(".")[1] for r in rows} == {"translation", "gsm8k"}
        for r in rows:
            assert re.fullmatch(r"[A-J]", r["targets"]), r
            options = _options(r["inputs"])
            assert len(options) >= 2 and options[r["targets"]] == r["answer"], r
            assert r["inputs"].endswith("A:")
            if r["task"].startswith("choice.translation"):
                sl, tl = r["task"].split(".")[2].split("-")
                query = r["inputs"].rsplit(" | ", 1)[-1]
                src = re.search(r"\"(.*?)\"", query).group(1)
                assert aligned[(sl, tl, src)] == r["answer"]
            if name == "choice_fs_train":
                assert r["inputs"].count(" | ") == r["shots"] == SHOTS


def test_deterministic_for_a_seed(built, tmp_path):
    root, out, _, _ = built
    again, other = tmp_path / "again", tmp_path / "other"
    run("--data-dir", root / "data", "--out", again, "--shots", SHOTS, "--gsm8k-heldout", 2, "--seed", 3)
    run("--data-dir", root / "data", "--out", other, "--shots", SHOTS, "--gsm8k-heldout", 2, "--seed", 4)
    for path in sorted(out.rglob("*.jsonl.gz")):
        rel = path.relative_to(out)
        assert path.read_bytes() == (again / rel).read_bytes(), rel
    assert (out / "translation_zs_train.jsonl.gz").read_bytes() != (other / "translation_zs_train.jsonl.gz").read_bytes()


def test_refuses_existing_out_and_missing_data_dir(built, tmp_path):
    root, out, _, _ = built
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "keep.txt").write_text("x")
    proc = run("--data-dir", root / "data", "--out", copy, check=False)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and str(copy) in proc.stderr
    proc = run("--data-dir", root / "data", "--out", copy, "--overwrite", "--max-examples-per-shard", 3)
    assert len(read(copy / "translation_zs_train.jsonl.gz")) == 3 and (copy / "keep.txt").exists()
    missing = tmp_path / "no-such-data"
    proc = run("--data-dir", missing, "--out", tmp_path / "o2", check=False)
    assert proc.returncode == 2 and str(missing) in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_leak_check_fails_loudly(built, tmp_path):
    root, out, _, _ = built
    leaked = read(out / "gsm8k_zs_train.jsonl.gz")[0]["inputs"]
    ev = tmp_path / "eval" / "mgsm" / "0-shot"
    ev.mkdir(parents=True)
    with gzip.open(ev / "en.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"inputs": " " + leaked.upper() + " ", "targets": "# # 5"}) + "\n")
    proc = run("--data-dir", root / "data", "--out", tmp_path / "o", "--eval-dir", tmp_path / "eval", check=False)
    assert proc.returncode == 3 and "LEAK" in proc.stderr and "gsm8k_zs_train" in proc.stderr
    with pytest.raises(LeakError):
        leak_check(out, tmp_path / "eval")
    with gzip.open(ev / "en.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"inputs": "Question: something else entirely Step-by-Step Answer:", "targets": "1"}) + "\n")
    assert leak_check(out, tmp_path / "eval")["exact_matches"] == 0


@pytest.mark.skipif(not (SHARED_DATA / "paper-eval").is_dir(), reason=f"{SHARED_DATA} absent: real-data build skipped")
def test_real_data_no_eval_leak(tmp_path):
    out = tmp_path / "real"
    proc = run("--out", out, "--data-dir", SHARED_DATA, "--max-examples-per-shard", 50, "--max-valid-per-shard", 50)
    assert "leak check" in proc.stdout
    eval_inputs = set()
    for path in (SHARED_DATA / "paper-eval").rglob("*.jsonl.gz"):
        for r in read(path):
            eval_inputs.add(" ".join(r["inputs"].split()).casefold())
    train = [r for p in sorted(out.rglob("*.jsonl.gz")) for r in read(p)]
    assert len(train) == 6 * 50 + 6 * 50
    assert not [r["inputs"] for r in train if " ".join(r["inputs"].split()).casefold() in eval_inputs]
    assert {r["task"] for r in train} >= {f"translation.{l}-en" for l in LANGS} | {"gsm8k", "choice.gsm8k"}
