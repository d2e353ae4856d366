"""Learning must be shown for instruction tuning: a tiny diffusion LM trained by ``fairseq-train
--task diffusion_instruct`` on a three-task jsonl mixture follows the instruction on held-out
prompts.

The three tasks map the same kind of input (five random letters) to three different outputs (the
letters reversed, copied, or each replaced by the next letter of the alphabet), and their
instructions differ in their first word only, so that word is all that tells them apart: a model
that ignored it could get at most one task right on a string (the three outputs differ on every
held-out string), i.e. at most 33 % exact match on average.  Chance is 16^-5 per string.
"""
import json
import random
import re

import pytest

from conftest import USER_DIR, cli

ALPHABET = "abcdefghijklmnop"
LENGTH = 5
# Same-length instructions: the tasks differ in their first word only.
TASKS = {
    "reverse": ("Reverse the letters: {s}", lambda w: w[::-1]),
    "copy": ("Copy the letters: {s}", lambda w: w),
    "shift": ("Shift the letters: {s}", lambda w: [ALPHABET[(ALPHABET.index(c) + 1) % len(ALPHABET)] for c in w]),
}
# Per task, on held-out strings. Measured (this seed): 100 % on all three after 450 updates of 2,000 tokens
# (~20 s on 2 cores; batches of 4,000 tokens: also 100 %, and after 300 updates copy 97.5, shift 97.5,
# reverse 25; after 150: 0-30 %).
EXACT_MATCH_THRESHOLD = 80.0
TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "xlmr_diffusion_tiny",
         "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--cpu", "--seed", 1,
         "--max-tokens", 2000, "--dropout", 0.0, "--attention-dropout", 0.0, "--max-positions", 48,
         "--epoch-size", 3000, "--num-workers", 0, "--no-epoch-checkpoints", "--log-format", "simple",
         "--log-interval", 100,
         "--disable-validation"]


def _letters(rng):
    return [rng.choice(ALPHABET) for _ in range(LENGTH)]


def _row(task, letters):
    template, answer = TASKS[task]
    return {"inputs": template.format(s=" ".join(letters)), "targets": " ".join(answer(letters)), "task": task}


@pytest.fixture(scope="module")
def letter_tasks(tmp_path_factory):
    return write_letter_tasks(tmp_path_factory.mktemp("letter_tasks"))


def write_letter_tasks(d):
    """One shard per task (ratio 1:1:1), a word-level SentencePiece model and its dictionary; valid/
    holds 40 held-out strings per task, none seen in training."""
    import sentencepiece as spm

    rng = random.Random(0)
    held_out, seen = [], set()
    while len(held_out) < 40:
        w = _letters(rng)
        if w != w[::-1]:  # then the outputs of the three tasks all differ (shift ≠ reverse always)
            held_out.append(w)
            seen.add(" ".join(w))
    (d / "valid").mkdir()
    for task in TASKS:
        train = []
        while len(train) < 3000:
            w = _letters(rng)
            if " ".join(w) not in seen:
                train.append(_row(task, w))
        (d / f"{task}_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
        (d / "valid" / f"{task}.jsonl").write_text("".join(json.dumps(_row(task, w)) + "\n" for w in held_out),
                                                    encoding="utf-8")
    (d / "ratio.json").write_text(json.dumps({f"{t}_train.jsonl": 1.0 for t in TASKS}))
    text = d / "spm.txt"
    text.write_text("\n".join(TASKS[t][0].format(s=" ".join(ALPHABET)) for t in TASKS) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(d / "sentencepiece.bpe"), model_type="word",
                                   vocab_size=32, hard_vocab_limit=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(d / "sentencepiece.bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    (d / "dict.txt").write_text("".join(f"{p} 1\n" for p in pieces), encoding="utf-8")
    return d


def _exact_match_by_task(data, ckpt, results):
    """Decode valid/ with oracle length; exact match (percent) per task from fairseq-generate's lines."""
    cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--path", ckpt, "--cpu",
        "--gen-subset", "valid", "--batch-size", 60, "--oracle-length", "--iter-decode-max-iter", 10,
        "--post-process", "sentencepiece", "--results-path", results)
    out = (results / "generate-valid.txt").read_text(encoding="utf-8")
    src = dict(re.findall(r"^S-(\d+)\t(.*)$", out, re.M))
    ref = dict(re.findall(r"^T-(\d+)\t(.*)$", out, re.M))
    hyp = dict(re.findall(r"^D-(\d+)\t\S+\t(.*)$", out, re.M))
    assert len(hyp) == len(ref) == 40 * len(TASKS), "every held-out prompt is decoded"
    scores = {}
    for task, (template, _) in TASKS.items():
        lead = template.split(":")[0]
        ids = [i for i, s in src.items() if s.startswith(lead)]
        assert len(ids) == 40, task
        scores[task] = 100.0 * sum(hyp[i].split() == ref[i].split() for i in ids) / len(ids)
    return scores


def test_tiny_model_follows_instructions(letter_tasks, tmp_path):
    cli("train", letter_tasks, *TRAIN, "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 50,
        "--max-update", 450, "--save-dir", tmp_path)
    trained = _exact_match_by_task(letter_tasks, tmp_path / "checkpoint_last.pt", tmp_path / "gen")
    for task, score in trained.items():
        assert score >= EXACT_MATCH_THRESHOLD, f"{task}: held-out exact match {score} < {EXACT_MATCH_THRESHOLD}; {trained}"
