"""``scripts/download_flan_2022.sh``: the mixture's shards fetched once (here from a file:// mirror),
``flan_fs_opt`` joined from its parts, ``ratio.json`` written, and the folder readable by the task."""
import gzip
import json
import subprocess
import sys

from conftest import REPO
from fairseq_dlm.data.flan import PARTS, RATIO

SCRIPT = REPO / "scripts" / "download_flan_2022.sh"


def _gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _mirror(root):
    root.mkdir()
    for name in RATIO:
        stem = name[: -len(".jsonl")]
        if name in PARTS:
            for i in range(1, PARTS[name] + 1):
                _gz(root / f"{stem}_part{i}.jsonl.gz", [{"inputs": f"{stem} part {i} row {j}", "targets": "x"}
                                                       for j in range(i + 1)])
        else:
            _gz(root / f"{name}.gz", [{"inputs": f"{stem} row", "targets": "y"}])
    _gz(root / "niv2_fs_noopt_train.jsonl.gz", [{"inputs": "unused", "targets": "z"}])


def _run(*args):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})


def test_shards_ratio_and_joined_parts(tmp_path):
    from fairseq_dlm.data.jsonl_mixture import JsonlMixture

    _mirror(tmp_path / "mirror")
    out = tmp_path / "data" / "flan_2022"
    proc = _run("--out", out, "--base-url", (tmp_path / "mirror").as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.gz" for n in RATIO] + ["ratio.json"])
    assert json.loads((out / "ratio.json").read_text()) == RATIO
    with gzip.open(out / "flan_fs_opt_train.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line)["inputs"] for line in f]
    assert rows == [f"flan_fs_opt_train part {i} row {j}" for i in (1, 2, 3) for j in range(i + 1)]
    mixture = JsonlMixture(out, out / "ratio.json")
    examples, _ = mixture.take(100, 1, mixture.initial_position())
    assert len(examples) == 100 and not mixture.bad_lines
    assert {ex.shard for ex in examples} == set(RATIO)
    mixture.close()

    proc = _run("--out", out, "--base-url", (tmp_path / "nowhere").as_uri())
    assert proc.returncode == 0 and proc.stderr.count("already there") == len(RATIO), "a rerun fetches nothing"


def test_unreachable_mirror_is_named(tmp_path):
    proc = _run("--out", tmp_path / "out", "--base-url", (tmp_path / "nowhere").as_uri())
    assert proc.returncode == 1
    assert f"could not download {(tmp_path / 'nowhere').as_uri()}/flan_fs_noopt_train.jsonl.gz" in proc.stderr
    assert "copy it into" in proc.stderr
    assert not list((tmp_path / "out").glob("*.gz")), "nothing that looks complete is left"
