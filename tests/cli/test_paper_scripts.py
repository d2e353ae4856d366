"""The paper's task scripts (``task_train.sh``, ``task_train_length.sh``, ``eval_task.sh``; SPEC §9.1):
flag parsing, the fairseq commands they build, and the paper README's IWSLT14 commands run verbatim
on fixtures (data path, model and sizes replaced by tiny ones, nothing else)."""
import contextlib
import functools
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import in_process
from conftest import REPO, german_sentences, translate, write_split

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
import paper_script  # noqa: E402  (a script of scripts/: its folder is on sys.path when it runs)

from fairseq_dlm.recipes import flags, settings  # noqa: E402


def bash(line: str, cwd, check=True) -> subprocess.CompletedProcess:
    """One command line as a user types it (``bash scripts/...``), in ``cwd`` with the scripts linked in."""
    env = dict(os.environ, PYTHON=sys.executable, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{line}\nfailed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def user(line: str, cwd) -> subprocess.CompletedProcess:
    """``bash(line, cwd)`` in this process: ``[CKPT=`ls DIR | grep checkpoint* | tail -1`\n]bash
    scripts/NAME.sh FLAGS`` goes to ``paper_script.main([NAME, *FLAGS])`` as the wrapper passes it, and the
    command it builds runs in-process (fairseq's ``cli_main``, eval_instruct.py's ``main``).  The IWSLT14
    and instruction tests run their first line through bash and subprocesses (``bash``) as a user does."""
    *assignments, line = line.strip().split("\n")
    for assignment in assignments:
        name, folder = re.fullmatch(r"(\w+)=`ls (\S+) \| grep checkpoint\* \| tail -1`", assignment).groups()
        found = sorted(f for f in os.listdir(cwd / folder) if "checkpoint" in f)
        line = line.replace(f"${name}", found[-1] if found else "")
    words = shlex.split(line)
    assert words[0] == "bash" and words[1].startswith("scripts/") and words[1].endswith(".sh"), line
    argv = [words[1][len("scripts/"):-len(".sh")], *words[2:]]
    out, err, ran = io.StringIO(), io.StringIO(), []

    def run(cmd):
        if len(cmd) > 1 and cmd[1].endswith("eval_instruct.py"):
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    return eval_instruct_script().main(cmd[2:])
                except SystemExit as e:
                    return e.code
        proc = in_process.run(Path(cmd[0]).name[len("fairseq-"):], cmd[1:])
        ran.append(proc)
        return proc.returncode

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out):
            code = paper_script.main(argv, run=run)
    finally:
        os.chdir(previous)
    stdout = out.getvalue() + "".join(p.stdout for p in ran)
    stderr = err.getvalue() + "".join(p.stderr for p in ran)
    if code != 0:
        raise AssertionError(f"{line}\nfailed ({code}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


@functools.lru_cache(maxsize=None)
def eval_instruct_script():
    spec = importlib.util.spec_from_file_location("eval_instruct_script", SCRIPTS / "eval_instruct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command(proc) -> list:
    line = next(l for l in proc.stdout.splitlines() if l.startswith("$ "))
    return shlex.split(line[2:])


def _flag(cmd, name):
    return cmd[cmd.index(name) + 1]


# ------------------------------------------------------------------------------ the paper's commands
@pytest.fixture(scope="module")
def workdir(tmp_path_factory, translation_data, tiny_pretrained):
    """A user's folder: scripts/, data/iwslt14.de-en.prompted.xlm-r-dict.bin (the de→en fixture) and an
    HF cache holding the tiny model under the id facebook/xlm-roberta-xxl."""
    d = tmp_path_factory.mktemp("paper_user")
    (d / "scripts").symlink_to(SCRIPTS)
    (d / "data").mkdir()
    shutil.copytree(translation_data, d / "data" / "iwslt14.de-en.prompted.xlm-r-dict.bin")
    snap = d / "cache" / "models--facebook--xlm-roberta-xxl" / "snapshots" / "0123abc"
    shutil.copytree(tiny_pretrained, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123abc")
    return d


# The README's IWSLT14 block, verbatim except sizes (--train_steps/--eval_steps/--mini_bsz/--accum_step,
# --length_beam); scripts/ds_config_zero2.json is this repository's.
TRAIN = ('bash scripts/task_train.sh --data_path=data/iwslt14.de-en.prompted.xlm-r-dict.bin '
         '--pretrained=facebook/xlm-roberta-xxl --cache_dir=cache --output_dir=outputs/ckpts/iwslt14.xxl '
         '--train_steps=6 --eval_steps=3 --mini_bsz=2048 --accum_step=1 '
         '--ds_config=scripts/ds_config_zero2.json --extra="--src_lang de --tgt_lang en"')
CKPT = 'CKPT=`ls outputs/ckpts/iwslt14.xxl | grep checkpoint* | tail -1`'
LENGTH = ('bash scripts/task_train_length.sh  --data_path=data/iwslt14.de-en.prompted.xlm-r-dict.bin '
          '--pretrained=facebook/xlm-roberta-xxl --cache_dir=cache --output_dir=outputs/ckpts/iwslt14.xxl.length '
          '--train_steps=6 --eval_steps=3 --mini_bsz=4 --accum_step=1 --ds_config=scripts/ds_config_zero2.json '
          '--ckpt=outputs/ckpts/iwslt14.xxl/$CKPT --extra="--src_lang de --tgt_lang en" ')
EVAL_OL = ('bash scripts/eval_task.sh --data_path=data/iwslt14.de-en.prompted.xlm-r-dict.bin '
           '--ckpt=outputs/ckpts/iwslt14.xxl --metric=bleu --output_dir=outputs/ckpts/iwslt14.xxl/eval '
           '--extra="--src_lang en --tgt_lang de --oracle_length"   ')
EVAL_LB = ('bash scripts/eval_task.sh --data_path=data/iwslt14.de-en.prompted.xlm-r-dict.bin '
           '--ckpt=outputs/ckpts/iwslt14.xxl.length --metric=bleu --output_dir=outputs/ckpts/iwslt14.xxl.length/eval '
           '--length_beam=3 --extra="--src_lang en --tgt_lang de"')


def test_iwslt14_commands_of_the_paper_run_as_written(workdir):
    proc = bash(TRAIN, workdir)
    cmd = _command(proc)
    assert cmd[0].endswith("fairseq-train") and _flag(cmd, "--pretrained").endswith("snapshots/0123abc")
    assert _flag(cmd, "--max-update") == "6" and _flag(cmd, "--max-tokens") == "2048"
    assert _flag(cmd, "--best-checkpoint-metric") == "bleu" and "--cpu" in cmd
    assert "ZeRO stage 2, fp16, bf16 not applied: no CUDA device" not in proc.stdout  # "auto": no GPU, no fp16
    assert "scripts/ds_config_zero2.json: ZeRO stage 2 not applied: no CUDA device (--cpu, fp32)" in proc.stdout
    ckpts = workdir / "outputs" / "ckpts" / "iwslt14.xxl"
    log = proc.stdout + proc.stderr
    bleus = [float(x) for x in re.findall(r"valid on 'valid' subset .*\| bleu ([\d.]+) ", log)]
    assert len(bleus) == 2
    best = torch.load(ckpts / "checkpoint_best.pt", weights_only=False)["extra_state"]["best"]
    assert best == pytest.approx(max(bleus))

    proc = user(f"{CKPT}\n{LENGTH}", workdir)
    cmd = _command(proc)
    assert _flag(cmd, "--finetune-from-model").endswith("iwslt14.xxl/checkpoint_last.pt")
    assert "--length-head" in cmd and "--freeze-backbone" in cmd and _flag(cmd, "--batch-size") == "4"
    assert (workdir / "outputs" / "ckpts" / "iwslt14.xxl.length" / "checkpoint_last.pt").is_file()

    for line, ckpt in ((EVAL_OL, "iwslt14.xxl/checkpoint_best.pt"), (EVAL_LB, "iwslt14.xxl.length/checkpoint_best.pt")):
        proc = user(line, workdir)
        assert "--src_lang en --tgt_lang de: data/iwslt14.de-en.prompted.xlm-r-dict.bin holds de→en" in proc.stdout
        cmd = _command(proc)
        assert (_flag(cmd, "--source-lang"), _flag(cmd, "--target-lang")) == ("de", "en")
        assert _flag(cmd, "--path").endswith(ckpt)
        out = (workdir / _flag(cmd, "--results-path") / "generate-test.txt").read_text()
        assert len(re.findall(r"^D-\d+\t", out, re.M)) == 12
        assert re.search(r"^Generate test with beam=\d+: BLEU = [\d.]+", out, re.M)
    assert "--iter-decode-with-beam" in cmd and _flag(cmd, "--iter-decode-with-beam") == "3"


def test_wmt14_eval_typo_is_read_as_meant(workdir):
    """The README's WMT14 eval spells --length_bema; the dry run shows the command it would run."""
    data = workdir / "data" / "wmt14.en-de.prompted.xlm-r-dict.bin"
    data.mkdir()
    (data / "dict.en.txt").write_text("a 1\n")
    (data / "test.en-de.en.idx").write_bytes(b"")
    ckpts = workdir / "outputs" / "ckpts" / "wmt14.xxl.length"
    ckpts.mkdir(parents=True)
    for name in ("checkpoint_1_5000.pt", "checkpoint_2_30000.pt"):
        (ckpts / name).write_bytes(b"x")
    proc = bash('bash scripts/eval_task.sh --data_path=data/wmt14.en-de.prompted.xlm-r-dict.bin '
                '--ckpt=outputs/ckpts/wmt14.xxl.length --metric=bleu --output_dir=outputs/ckpts/wmt14.xxl.length/out '
                '--length_bema=10 --extra="--src_lang en --tgt_lang de --bleu_tokenize intl" --dry-run', workdir)
    assert "--length_bema read as --length_beam" in proc.stdout
    cmd = _command(proc)
    assert _flag(cmd, "--iter-decode-with-beam") == "10" and _flag(cmd, "--sacrebleu-tokenizer") == "intl"
    assert _flag(cmd, "--path").endswith("checkpoint_2_30000.pt"), "the highest update, not the last name"


# The README's Gigaword-10K block, verbatim except sizes (its `gigword` --ckpt path and the wmt14 output
# folders included). No Gigaword text exists offline: a summarisation-shaped fixture prepared with
# prepare_translation.py --template summarization stands in for it.
G_TRAIN = ('bash scripts/task_train.sh --data_path=data/gigaword-10k.prompted.xlm-r-dict.bin '
           '--pretrained=facebook/xlm-roberta-xxl --cache_dir=cache --output_dir=outputs/ckpts/gigaword-10k.xxl '
           '--train_steps=6 --eval_steps=2 --mini_bsz=2048 --accum_step=1 --ds_config=scripts/ds_config_zero2.json '
           '--metric=rouge --extra="--src_lang src --tgt_lang tgt"')
G_CKPT = 'CKPT=`ls outputs/ckpts/gigaword-10k.xxl | grep checkpoint* | tail -1`'
G_LENGTH = ('bash scripts/task_train_length.sh --data_path=data/gigaword-10k.prompted.xlm-r-dict.bin '
            '--pretrained=facebook/xlm-roberta-xxl --cache_dir=cache '
            '--output_dir=outputs/ckpts/gigaword-10k.xxl.length --train_steps=6 --eval_steps=3 --mini_bsz=4 '
            '--accum_step=1 --ds_config=scripts/ds_config_zero2.json --ckpt=outputs/ckpts/gigword-10k.xxl/$CKPT '
            '--metric=rouge --extra="--src_lang src --tgt_lang tgt " ')
G_EVAL_OL = ('bash scripts/eval_task.sh --data_path=data/gigaword-10k.prompted.xlm-r-dict.bin '
             '--ckpt=outputs/ckpts/gigaword-10k.xxl --metric=rouge --output_dir=outputs/ckpts/wmt14.xxl/out '
             '--extra="--src_lang src --tgt_lang tgt --oracle_length"')
G_EVAL_LB = ('bash scripts/eval_task.sh --data_path=data/gigaword-10k.prompted.xlm-r-dict.bin '
             '--ckpt=outputs/ckpts/gigaword-10k.xxl.length --metric=rouge --output_dir=outputs/ckpts/wmt14.xxl.length/out '
             '--length_bema=10 --extra="--src_lang src --tgt_lang tgt"')


def test_gigaword_recipe_of_the_paper_follows_rouge(workdir, spm_model):
    raw = workdir / "raw_gigaword"
    for split, n, seed in (("train", 200, 11), ("valid", 12, 12), ("test", 10, 13)):
        articles = german_sentences(n, seed)
        write_split(raw, split, [f"{translate(a)} , said the report on monday" for a in articles],
                    [" ".join(translate(a).split()[:3]) for a in articles], src="src", tgt="tgt")
    bash(f"{sys.executable} scripts/prepare_translation.py --raw-dir raw_gigaword --src src --tgt tgt "
         f"--splits train=train valid=valid test=test --template summarization --spm-model {spm_model} "
         "--out-dir data/gigaword-10k.prompted.xlm-r-dict.bin", workdir)

    proc = user(G_TRAIN, workdir)
    log = proc.stdout + proc.stderr
    rouge = [float(x) for x in re.findall(r"valid on 'valid' subset .*\| rougeL ([\d.]+) ", log)]
    assert len(rouge) == 3
    best = torch.load(workdir / "outputs/ckpts/gigaword-10k.xxl/checkpoint_best.pt", weights_only=False)
    assert best["extra_state"]["best"] == pytest.approx(max(rouge)), "checkpoint_best.pt follows ROUGE-L"

    proc = user(f"{G_CKPT}\n{G_LENGTH}", workdir)
    assert "--ckpt=outputs/ckpts/gigword-10k.xxl/checkpoint_last.pt does not exist; using " \
           "outputs/ckpts/gigaword-10k.xxl/checkpoint_last.pt" in proc.stdout

    for line in (G_EVAL_OL, G_EVAL_LB):
        proc = user(line, workdir)
        out = (workdir / _flag(_command(proc), "--results-path") / "generate-test.txt").read_text()
        assert len(re.findall(r"^D-\d+\t", out, re.M)) == 10
        assert re.search(r"^Generate test with beam=\d+: ROUGE F: rouge1 = [\d.]+, rouge2 = [\d.]+, rougeL = [\d.]+ ",
                         out, re.M), out[-400:]
    assert "--length_bema read as --length_beam" in proc.stdout


# The README's instruction block, verbatim except sizes; the FLAN shards and data/instruct are fixtures.
I_TRAIN = ('bash scripts/instruction_tuning.sh --data_path=data/flan_2022 --pretrained=facebook/xlm-roberta-xxl '
           '--output_dir=outputs/ckpts/flan_2022.xxl --cache_dir=cache --train_steps=4 --mini_bsz=8 --accum_step=1 '
           '--ds_config=scripts/ds_config_zero2.json')
I_CKPT = 'CKPT=`ls outputs/ckpts/flan_2022.xxl | grep checkpoint* | tail -1`'
I_LENGTH = ('bash scripts/instruction_train_length.sh --data_path=data/flan_2022 --pretrained=facebook/xlm-roberta-xxl '
            '--output_dir=outputs/ckpts/flan_2022.xxl.length --cache_dir=cache --train_steps=4 --mini_bsz=16 '
            '--accum_step=1 --ds_config=scripts/ds_config_zero2.json --ckpt=outputs/ckpts/flan_2022.xxl/$CKPT')
I_EVAL_MC = ('bash scripts/eval_instruct.sh --data_paths="data/instruct/mmlu/0-shot/val/full.jsonl '
             'data/instruct/mmlu/2-shot/val/full.jsonl data/instruct/bbh-nlp/0-shot/validation/full.jsonl '
             'instruct/bbh-nlp/2-shot/validation/full.jsonl" --ckpt=outputs/ckpts/flan_2022.xxl '
             '--output_dir=outputs/ckpts/flan_2022.xxl/out --mini_bsz=8 --max_iter=1 --extra="--oracle_length"')
I_EVAL_LB = ('bash scripts/eval_instruct.sh --data_paths="data/instruct/iwslt14/0-shot/test/deen.jsonl '
             'data/instruct/iwslt14/2-shot/test/deen.jsonl" --ckpt=outputs/ckpts/flan_2022.xxl.length '
             '--output_dir=outputs/ckpts/flan_2022.xxl.length/out --mini_bsz=8 --max_iter=50 --length_beam=10')


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_instruction_commands_of_the_paper_run_as_written(workdir):
    sentences = german_sentences(40, 21)
    prompt = "Translate the German sentence to English. German: {} English:"
    for shard in ("flan_zs_opt_train", "flan_fs_opt_train"):
        _jsonl(workdir / "data" / "flan_2022" / f"{shard}.jsonl",
               [{"inputs": prompt.format(s), "targets": translate(s)} for s in sentences])
    inst = workdir / "data" / "instruct"
    choice_rows = [{"inputs": prompt.format(s) + " (A) yes (B) no", "targets": "AB"[i % 2]}
                   for i, s in enumerate(sentences[:6])]
    for shot in ("0-shot", "2-shot"):
        _jsonl(inst / "mmlu" / shot / "val" / "full.jsonl", choice_rows)
        (inst / "mmlu" / shot / "val" / "index2subject.json").write_text(json.dumps(["anatomy"] * 3 + ["virology"] * 3))
        _jsonl(inst / "bbh-nlp" / shot / "validation" / "snarks.jsonl", choice_rows[:3])
        _jsonl(inst / "bbh-nlp" / shot / "validation" / "hyperbaton.jsonl", choice_rows[3:])
        _jsonl(inst / "iwslt14" / shot / "test" / "deen.jsonl",
               [{"inputs": prompt.format(s), "targets": translate(s)} for s in sentences[6:10]])

    proc = bash(I_TRAIN, workdir)
    cmd = _command(proc)
    assert _flag(cmd, "--task") == "diffusion_instruct" and _flag(cmd, "--lr") == "1e-5"
    assert "has no dict.txt: wrote its tokenizer's vocabulary" in proc.stdout
    assert _flag(cmd, "--dict").endswith("flan_2022.xxl/dict.txt")
    proc = user(f"{I_CKPT}\n{I_LENGTH}", workdir)
    assert _flag(_command(proc), "--finetune-from-model").endswith("flan_2022.xxl/checkpoint_last.pt")

    proc = user(I_EVAL_MC, workdir)
    assert "instruct/bbh-nlp/2-shot/validation/full.jsonl does not exist; using data/instruct/bbh-nlp" in proc.stdout
    out = workdir / "outputs" / "ckpts" / "flan_2022.xxl" / "out"
    names = sorted(f.name for f in out.glob("*.json"))
    assert names == ["bbh-nlp.full.0-shot.json", "bbh-nlp.full.2-shot.json", "mmlu.full.0-shot.json",
                     "mmlu.full.2-shot.json"], names
    report = json.loads((out / "bbh-nlp.full.2-shot.json").read_text())
    assert report["n"] == 6 and set(report["score"]["metrics"]["exact_letter"]["groups"]) == {"snarks", "hyperbaton"}

    proc = user(I_EVAL_LB, workdir)
    cmd = _command(proc)
    assert _flag(cmd, "--length-beam") == "10" and "--oracle-length" not in cmd
    report = json.loads((workdir / "outputs/ckpts/flan_2022.xxl.length/out/iwslt14.deen.2-shot.lb10.json").read_text())
    assert report["n"] == 4 and report["settings"]["canvas"] == "predicted"


# The README's remaining commands, verbatim (sizes included) plus --dry-run: each is parsed, corrected
# and turned into its command without running it (the blocks above run the same scripts for real).
README_DRY = {
    "wmt14_train": ('bash scripts/task_train.sh --data_path=data/wmt14.en-de.prompted.xlm-r-dict.bin '
                    '--pretrained=facebook/xlm-roberta-xxl --cache_dir=cache --output_dir=outputs/ckpts/wmt14.xxl '
                    '--train_steps=100000 --eval_steps=10000 --mini_bsz=1024 --accum_step=16 '
                    '--ds_config=scripts/ds_config_zero2.json --extra="--src_lang en --tgt_lang de --bleu_tokenize intl"'),
    "wmt14_length": ('bash scripts/task_train_length.sh --data_path=data/wmt14.en-de.prompted.xlm-r-dict.bin '
                     '--pretrained=facebook/xlm-roberta-xxl --cache_dir=cache --output_dir=outputs/ckpts/wmt14.xxl.length '
                     '--train_steps=30000 --eval_steps=5000 --mini_bsz=4 --accum_step=8 '
                     '--ds_config=scripts/ds_config_zero2.json --ckpt=outputs/ckpts/wmt14.xxl/checkpoint_last.pt '
                     '--extra="--src_lang en --tgt_lang de --bleu_tokenize intl" '),
    "wmt14_eval": ('bash scripts/eval_task.sh --data_path=data/wmt14.en-de.prompted.xlm-r-dict.bin '
                   '--ckpt=outputs/ckpts/wmt14.xxl --metric=bleu --output_dir=outputs/ckpts/wmt14.xxl/out '
                   '--extra="--src_lang en --tgt_lang de --oracle_length"'),
    "tydiqa": ('bash scripts/eval_instruct.sh --data_paths="data/instruct/tydiqa/0-shot/validation/flan2022.jsonl '
               'data/instruct/tydiqa/1-shot/validation/flan2022.jsonl" --ckpt=outputs/ckpts/flan_2022.xxl.length '
               '--output_dir=outputs/ckpts/flan_2022.xxl.length/out --mini_bsz=8 --max_iter=10 --length_beam=3'),
    "mgsm": ('bash scripts/eval_instruct.sh --data_paths="data/instruct/mgsm/0-shot/en.jsonl '
             'data/instruct/mgsm/3-shot/en.jsonl" --ckpt=outputs/ckpts/flan_2022.xxl '
             '--output_dir=outputs/ckpts/flan_2022.xxl/out --mini_bsz=8 --max_iter=50 --extra="--oracle_length"'),
}


def test_remaining_readme_commands_build_their_commands(tmp_path, tiny_pretrained):
    d = tmp_path
    (d / "scripts").symlink_to(SCRIPTS)
    data = d / "data" / "wmt14.en-de.prompted.xlm-r-dict.bin"
    data.mkdir(parents=True)
    (data / "dict.en.txt").write_text("a 1\n")
    (data / "train.en-de.en.idx").write_bytes(b"")
    snap = d / "cache" / "models--facebook--xlm-roberta-xxl" / "snapshots" / "0123abc"
    shutil.copytree(tiny_pretrained, snap)
    for folder in ("wmt14.xxl", "flan_2022.xxl", "flan_2022.xxl.length"):
        (d / "outputs" / "ckpts" / folder).mkdir(parents=True)
        (d / "outputs" / "ckpts" / folder / "checkpoint_last.pt").write_bytes(b"")
    built = {name: _command(bash(line + " --dry-run", d)) for name, line in README_DRY.items()}
    train = built["wmt14_train"]
    assert (_flag(train, "--source-lang"), _flag(train, "--target-lang")) == ("en", "de")
    assert _flag(train, "--update-freq") == "16" and _flag(train, "--max-tokens") == "1024"
    assert json.loads(_flag(train, "--eval-metric-options")) == {"tokenize": "intl"}
    assert _flag(train, "--validate-interval-updates") == _flag(train, "--save-interval-updates") == "10000"
    assert _flag(built["wmt14_length"], "--batch-size") == "4"
    assert _flag(built["wmt14_eval"], "--path").endswith("wmt14.xxl/checkpoint_last.pt")
    assert "--oracle-length" in built["wmt14_eval"]
    assert _flag(built["tydiqa"], "--length-beam") == "3" and _flag(built["tydiqa"], "--max-iter") == "10"
    assert built["mgsm"][built["mgsm"].index("--files") + 1].endswith("mgsm/0-shot/en.jsonl")


def test_pretrained_extra_and_data_folder(tmp_path, translation_data):
    with pytest.raises(flags.FlagError, match=r"not in the HF cache --cache_dir=nocache .*huggingface-cli download"):
        settings.resolve_pretrained("facebook/xlm-roberta-xxl", "nocache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(flags.FlagError, match=r"--data_path=.*empty has no dict\.\*\.txt"):
        settings.data_pairs(str(tmp_path / "empty"))
    assert settings.data_pairs(str(translation_data)) == [("de", "en")]
    notes = []
    assert settings.fix_direction(str(translation_data), None, None, notes) == ("de", "en") and notes
    with pytest.raises(flags.FlagError, match=r"--src_lang fr --tgt_lang en: .* holds de-en"):
        settings.fix_direction(str(translation_data), "fr", "en", [])
    extra = settings.split_extra('--src_lang src --tgt_lang=tgt --oracle_length --seed 7')
    assert extra == {"src": "src", "tgt": "tgt", "bleu_tokenize": None, "oracle_length": True,
                     "rest": ["--seed", "7"]}
    config = tmp_path / "xl"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"model_type": "xlm-roberta-xl", "hidden_size": 4096}))
    assert settings.arch_for(str(config)) == "xlmr_diffusion_xxl"


def test_instruction_tuning_of_a_llama_backbone_with_lora(tmp_path, spm_model):
    """``instruction_tuning.sh --pretrained LLAMA_DIR`` (the official code's other backbone): the decoder-only
    arch, LLaMA's SentencePiece ``tokenizer.model`` and a dictionary of its pieces; LoRA through --extra."""
    d = tmp_path
    (d / "scripts").symlink_to(SCRIPTS)
    llama = d / "llama-tiny"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    shutil.copy(spm_model, llama / "tokenizer.model")
    _jsonl(d / "data" / "flan" / "flan_zs_opt_train.jsonl", [{"inputs": "a", "targets": "b"}])
    proc = bash("bash scripts/instruction_tuning.sh --data_path=data/flan --pretrained=llama-tiny "
                "--output_dir=out --train_steps=4 --mini_bsz=8 --extra='--lora --lora-rank 8' --dry-run", d)
    cmd = _command(proc)
    assert _flag(cmd, "--arch") == "decoder_diffusion" and _flag(cmd, "--pretrained") == "llama-tiny"
    assert _flag(cmd, "--spm-model").endswith("llama-tiny/tokenizer.model") and _flag(cmd, "--lora-rank") == "8"
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    pieces = [line.split()[0] for line in Path(d / _flag(cmd, "--dict")).read_text(encoding="utf-8").splitlines()]
    assert pieces == [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
