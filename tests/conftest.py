"""Shared fixtures: tiny corpora, a tiny SentencePiece model, a tiny HF XLM-R directory, and a
runner for the real fairseq command-line tools of this environment.

``tests/unit/``: in-process tests of the library (no trained model, no command; ``pytest -m "not cli"``);
``tests/cli/``: the real commands and trained models end to end, marked ``cli``."""
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "reverse"))
from make_data import strings as random_strings  # noqa: E402  (the main job's data generator)
USER_DIR = str(REPO / "fairseq_dlm")
GOLDEN = REPO / "tests" / "golden"  # committed toy models of examples/reverse/run.sh and their test split
BIN = Path(sys.executable).parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore", category=UserWarning, module="hydra")

# A tiny "German → English" lexicon: word-by-word translation is learnable and tokenizes into
# several SentencePiece pieces per word.
LEXICON = {
    "der": "the", "hund": "dog", "katze": "cat", "mann": "man", "frau": "woman", "kind": "child",
    "sieht": "sees", "hat": "has", "mag": "likes", "einen": "a", "ball": "ball", "apfel": "apple",
    "roten": "red", "kleinen": "small", "grossen": "big", "blauen": "blue", "vogel": "bird",
}
SUBJECTS = ["der hund", "der mann", "die frau", "das kind", "die katze"]
LEXICON.update({"die": "the", "das": "the"})
PROMPT = "Translate the German sentence to English. German: {src} English:"


def pytest_collection_modifyitems(config, items):
    """Every test under tests/cli/ is marked ``cli``."""
    for item in items:
        if Path(str(item.fspath)).parent.name == "cli":
            item.add_marker(pytest.mark.cli)


# FAIRSEQ_DLM_TEST_SUBPROCESS=1: every cli() call starts the real console script in a new process
SUBPROCESS = os.environ.get("FAIRSEQ_DLM_TEST_SUBPROCESS", "") not in ("", "0")


def cli(tool: str, *args, check: bool = True, timeout: int = 600, input: str = None,
        subprocess_only: bool = False) -> subprocess.CompletedProcess:
    """Run ``fairseq-<tool>`` of this environment (``input``: its stdin); on failure show the end of its output.

    By default the tool's own ``cli_main`` runs in this process (:func:`in_process.run`: the same
    parsing, logging, exit status and error lines as the console script, without a new interpreter
    importing torch and fairseq, seconds a call); ``subprocess_only`` (or FAIRSEQ_DLM_TEST_SUBPROCESS=1)
    starts the console script itself, for what a process boundary changes (signals, distributed spawns)."""
    if SUBPROCESS or subprocess_only:
        env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2")
        proc = subprocess.run(
            [str(BIN / f"fairseq-{tool}"), *map(str, args)],
            capture_output=True, text=True, env=env, timeout=timeout, input=input,
        )
    else:
        import in_process

        proc = in_process.run(tool, [str(a) for a in args], input)
    if check and proc.returncode != 0:
        raise AssertionError(f"fairseq-{tool} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def german_sentences(n: int, seed: int):
    rng = random.Random(seed)
    objs = ["einen ball", "einen apfel", "einen vogel", "einen roten ball", "einen kleinen apfel",
            "einen grossen vogel", "einen blauen ball"]
    verbs = ["sieht", "hat", "mag"]
    return [f"{rng.choice(SUBJECTS)} {rng.choice(verbs)} {rng.choice(objs)}" for _ in range(n)]


def translate(de: str) -> str:
    return " ".join(LEXICON[w] for w in de.split())


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory) -> Path:
    """A tiny unigram SentencePiece model (ids: <unk>=0 <s>=1 </s>=2, as XLM-R's)."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("spm")
    text = d / "text.txt"
    lines = german_sentences(400, 0)
    lines += [translate(s) for s in lines] + [PROMPT.format(src="")] * 20
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(d / "spm"), vocab_size=90, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
    )
    return d / "spm.model"


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory, spm_model) -> Path:
    """A tiny random HF XLM-R masked LM saved with ``save_pretrained`` + its SentencePiece model."""
    import shutil

    import sentencepiece as spm
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    d = tmp_path_factory.mktemp("tiny_xlmr")
    size = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=size + 2, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=258, pad_token_id=1, type_vocab_size=1,
    )
    XLMRobertaForMaskedLM(cfg).save_pretrained(d)
    shutil.copy(spm_model, d / "sentencepiece.bpe.model")
    return d


def encode_lines(spm_model: Path, lines):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    return [" ".join(sp.encode(line, out_type=str)) for line in lines]


def write_split(raw: Path, split: str, src_lines, tgt_lines, src="de", tgt="en"):
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{split}.{src}").write_text("".join(line + "\n" for line in src_lines), encoding="utf-8")
    (raw / f"{split}.{tgt}").write_text("".join(line + "\n" for line in tgt_lines), encoding="utf-8")


def preprocess(raw: Path, dest: Path, splits=("train", "valid", "test"), src="de", tgt="en", *extra):
    flags = {"train": "--trainpref", "valid": "--validpref", "test": "--testpref"}
    args = ["--source-lang", src, "--target-lang", tgt, "--destdir", dest, "--joined-dictionary", "--workers", 1]
    for s in splits:
        args += [flags[s], raw / s]
    cli("preprocess", *args, *extra)
    return dest


@pytest.fixture(scope="session")
def translation_data(tmp_path_factory, spm_model) -> Path:
    """SentencePiece-encoded prompted toy translation data binarized by fairseq-preprocess."""
    root = tmp_path_factory.mktemp("toy_mt")
    raw = root / "raw"
    for split, n, seed in (("train", 300, 1), ("valid", 20, 2), ("test", 12, 3)):
        de = german_sentences(n, seed)
        write_split(raw, split, encode_lines(spm_model, [PROMPT.format(src=s) for s in de]),
                    encode_lines(spm_model, [translate(s) for s in de]))
    return preprocess(raw, root / "bin")


# ---------------------------------------------------------------------------------------------
# A tiny diffusion LM trained on a learnable task (reverse random symbol strings), shared by the
# learning test and the decoding tests, plus its length stage.
REVERSE_TEMPLATE = "reverse : {src} ="
REVERSE_TRAIN = ["--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_tiny",
                 "--optimizer", "torch_adamw", "--max-tokens", 4000, "--dropout", 0.0, "--attention-dropout", 0.0,
                 "--cpu", "--seed", 1, "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", 50,
                 "--num-workers", 0]  # no DataLoader worker started per epoch: same batches, ~15 % faster here


@pytest.fixture(scope="session")
def reverse_data(tmp_path_factory) -> Path:
    """3000 training strings; 100 valid and 200 test strings never seen in training."""
    root = tmp_path_factory.mktemp("reverse")
    rng = random.Random(0)
    train = random_strings(rng, 3000)
    held_out = random_strings(rng, 300, exclude=frozenset(train))  # never seen in training
    for split, strings in (("train", train), ("valid", held_out[:100]), ("test", held_out[100:])):
        write_split(root / "raw", split, [REVERSE_TEMPLATE.format(src=s) for s in strings],
                    [" ".join(s.split()[::-1]) for s in strings], src="src", tgt="tgt")
    return preprocess(root / "raw", root / "bin", ("train", "valid", "test"), "src", "tgt")


@pytest.fixture(scope="session")
def reverse_model(tmp_path_factory, reverse_data) -> Path:
    """Stage 1: 500 diffusion updates from random initialisation (~40 s)."""
    save = tmp_path_factory.mktemp("reverse_ckpt")
    cli("train", reverse_data, *REVERSE_TRAIN, "--criterion", "diffusion_lm", "--lr", "3e-3",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 50, "--max-update", 500,
        "--disable-validation", "--save-dir", save)
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def reverse_length_model(tmp_path_factory, reverse_data, reverse_model):
    """Stage 2: the length head on the frozen stage-1 backbone; returns (checkpoint, train log)."""
    save = tmp_path_factory.mktemp("reverse_len")
    proc = cli("train", reverse_data, *REVERSE_TRAIN, "--length-head", "--freeze-backbone",
               "--criterion", "diffusion_length", "--finetune-from-model", reverse_model, "--lr", "1e-3",
               "--weight-decay", 0.01, "--max-update", 200, "--save-dir", save)
    return save / "checkpoint_last.pt", proc.stdout + proc.stderr


INSTRUCT_WORDS = "der hund sieht einen ball die katze mag apfel".split()


def instruct_pair(i: int):
    """``(prompt, target)`` of a toy instruction row: the German words reversed."""
    words = [INSTRUCT_WORDS[(i * 7 + k) % len(INSTRUCT_WORDS)] for k in range(3 + i % 4)]
    return PROMPT.format(src=" ".join(words)), " ".join(reversed(words))


def write_jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="session")
def instruct_ckpt(tmp_path_factory, spm_model):
    """(checkpoint, data dir with dict.txt + sentencepiece.bpe.model): 4 updates of
    ``fairseq-train --task diffusion_instruct`` on toy rows, 192 positions (an untrained model)."""
    import shutil

    import sentencepiece as spm

    d = tmp_path_factory.mktemp("eval_instruct_data")
    write_jsonl(d / "a_train.jsonl", [dict(zip(("inputs", "targets"), instruct_pair(i))) for i in range(60)])
    shutil.copy(spm_model, d / "sentencepiece.bpe.model")
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    (d / "dict.txt").write_text("".join(f"{sp.id_to_piece(i)} 1\n" for i in range(3, sp.get_piece_size())),
                                encoding="utf-8")
    save = tmp_path_factory.mktemp("eval_instruct_ckpt")
    cli("train", d, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "xlmr_diffusion_tiny",
        "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--lr", "1e-3", "--cpu", "--seed", 1,
        "--batch-size", 8, "--epoch-size", 16, "--max-update", 4, "--disable-validation", "--no-epoch-checkpoints",
        "--max-positions", 192, "--save-dir", save)
    return save / "checkpoint_last.pt", d


def assert_same_hypothesis(a, b, history=True):
    """Two hypothesis dicts are identical: tokens, score, positional scores (and step history)."""
    import torch

    assert torch.equal(a["tokens"], b["tokens"])
    assert a["score"].item() == b["score"].item() or (a["score"].isinf() and b["score"].isinf())
    assert torch.equal(a["positional_scores"], b["positional_scores"])
    if history:
        assert len(a["history"]) == len(b["history"])
        for x, y in zip(a["history"], b["history"]):
            assert torch.equal(x["tokens"], y["tokens"]) and x["steps"] == y["steps"]
