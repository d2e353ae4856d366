"""A backbone whose tokenizer is an HF ``tokenizer.json`` (byte-level BPE, as Qwen2's): the data is prepared
with it (``prepare_translation.py --spm-model tokenizer.json``), a tiny Qwen2 trains on it, and
``fairseq-generate --bpe hf_tokenizer``, the Python API and the HF export give text back through the
tokenizer's own decoder.  The tokenizer is trained here with the ``tokenizers`` library."""
import json
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO, REVERSE_TRAIN, USER_DIR, cli, german_sentences

# held-out BLEU after 400 updates of 2,000 tokens: 100.0 (320 updates: 93.3, 250: 26.5); untrained < 5
BLEU_THRESHOLD = 60.0


@pytest.fixture(scope="module")
def bpe_json(tmp_path_factory, reverse_data):
    """A byte-level BPE tokenizer.json (Qwen2's kind: ByteLevel pre-tokenizer and decoder), 320 tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = reverse_data.parent / "raw"
    lines = (raw / "train.src").read_text().splitlines() + german_sentences(200, 3) + ["Grüße, Straße: 3 €!"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory, reverse_data, bpe_json):
    """The reverse task prepared with the byte-level BPE (the dictionary: its whole vocabulary) and a
    ``qwen2_diffusion_tiny`` trained on it, 400 updates."""
    out = tmp_path_factory.mktemp("bpe_data") / "bin"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_translation.py"),
                           "--raw-dir", reverse_data.parent / "raw", "--src", "src", "--tgt", "tgt", "--template",
                           "{src}", "--splits", "train=train", "valid=valid", "test=test", "--spm-model", bpe_json,
                           "--out-dir", out], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    save = out.parent / "ckpt"
    cli("train", out, *REVERSE_TRAIN, "--max-tokens", 2000, "--arch", "qwen2_diffusion_tiny", "--criterion",
        "diffusion_lm", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 50,
        "--max-update", 400, "--disable-validation", "--save-dir", save)
    return out, save / "checkpoint_last.pt"


def test_tokenizer_json_round_trips_text_byte_for_byte(bpe_json):
    from fairseq_dlm.data.subword import TokenizerJson, load_subword

    sub = load_subword(str(bpe_json))
    assert isinstance(sub, TokenizerJson)
    for text in ("Grüße, Straße: 3 €!", "der hund sieht einen ball", "reverse : a b c ="):
        pieces = sub.pieces(text)
        assert all(p and not any(c.isspace() for c in p) for p in pieces)
        assert sub.detokenize(pieces) == text
    assert sub.detokenize(sub.pieces("der hund") + ["<mask>"]) == "der hund <mask>"


def test_bytelevel_backbone_learns_and_decodes_to_text(bpe_model, tmp_path):
    data, ckpt = bpe_model
    assert (data / "tokenizer.json").is_file()
    symbols = [line.split()[0] for line in (data / "dict.src.txt").read_text(encoding="utf-8").splitlines()]
    assert "Ġa" in symbols and not any("▁" in s for s in symbols)  # the tokenizer's own (byte-level) tokens
    assert len(symbols) == 320  # the tokenizer's whole vocabulary (fairseq's <s> <pad> </s> <unk> come on top)
    cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", ckpt, "--cpu",
        "--gen-subset", "test", "--batch-size", 64, "--oracle-length", "--iter-decode-max-iter", 10,
        "--bpe", "hf_tokenizer", "--hf-tokenizer-json", data / "tokenizer.json", "--scoring", "sacrebleu",
        "--results-path", tmp_path)
    out = (tmp_path / "generate-test.txt").read_text()
    detok = re.findall(r"^D-\d+\t\S+\t(.*)$", out, re.M)
    assert len(detok) == 200 and not any("Ġ" in d for d in detok)
    bleu = float(re.search(r"BLEU = ([\d.]+)", out).group(1))
    assert bleu >= BLEU_THRESHOLD, f"held-out BLEU {bleu} < {BLEU_THRESHOLD}"

    from fairseq_dlm import DiffusionLM

    m = DiffusionLM.from_pretrained(str(ckpt))  # the tokenizer.json is found in the training data folder
    assert m.spm_model.endswith("tokenizer.json")
    text = m.generate("reverse : a b c d =", oracle_lengths=[4], steps=4)
    assert re.fullmatch(r"[a-z]( [a-z]){3}", text), text


def test_bytelevel_export_encodes_with_the_dictionary_ids(bpe_model, tmp_path):
    """The exported tokenizer.json is the BPE re-keyed to the dictionary: AutoTokenizer gives the plugin's
    ids; the export converts back with the same logits."""
    from transformers import AutoTokenizer

    from fairseq_dlm import DiffusionLM
    from fairseq_dlm.convert.export_hf import export_checkpoint

    data, ckpt = bpe_model
    report = export_checkpoint(str(ckpt), str(tmp_path / "hf"))
    assert report["tokenizer"] == "hf_tokenizer"
    m = DiffusionLM.from_pretrained(str(ckpt))
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in ("reverse : a b c =", "reverse : h g f e d c b a ="):
        ours = m.encode(text).tolist()
        assert tok(text)["input_ids"] == [m.task.dictionary.bos()] + ours, text
    back = DiffusionLM.from_pretrained(str(tmp_path / "hf"))
    row = torch.cat([torch.tensor([m.task.dictionary.bos()]), m.encode("reverse : a b =")])
    with torch.no_grad():
        assert torch.allclose(m.models[0](row[None]), back.models[0](row[None]), atol=1e-5)
    assert json.loads((tmp_path / "hf" / "diffusion_config.json").read_text())["tokenizer"] == "hf_tokenizer"


def test_distillation_writes_detokenized_text(bpe_model, tmp_path, capsys):
    """``scripts/distill.py`` on byte-level data (the teacher: the model + a 150-update length stage): its
    targets as text through the tokenizer's decoder (no ``Ġ``), and its BLEU against the folder's
    references detokenized the same way."""
    import importlib.util

    data, ckpt = bpe_model
    teacher = tmp_path / "length"  # distillation predicts lengths: the length stage on the frozen model
    cli("train", data, *REVERSE_TRAIN, "--max-tokens", 2000, "--arch", "qwen2_diffusion_tiny", "--length-head",
        "--freeze-backbone", "--criterion", "diffusion_length", "--finetune-from-model", ckpt, "--lr", "1e-3",
        "--max-update", 150, "--disable-validation", "--save-dir", teacher)
    spec = importlib.util.spec_from_file_location("distill_script", REPO / "scripts" / "distill.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main(["--data", str(data), "--teacher", str(teacher / "checkpoint_last.pt"), "--out", str(tmp_path / "out"), "--splits",
                        "valid", "--steps", "6", "--batch-size", "50", "--cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    text = (tmp_path / "out" / "text" / "valid.tgt").read_text(encoding="utf-8").splitlines()
    assert len(text) == 100 and all(re.fullmatch(r"[a-z]( [a-z])*", t) for t in text), text[:3]
    assert float(re.search(r"teacher BLEU on valid: ([\d.]+)", out).group(1)) >= BLEU_THRESHOLD  # 94.3 measured
