"""``scripts/export_hf.py``: a plugin checkpoint → a standard HuggingFace directory, and back.

* the trained reverse model with its length head (no SentencePiece model: a whitespace tokenizer)
  is exported; ``AutoModelForMaskedLM`` / ``AutoTokenizer`` load the directory as it is and give the
  plugin's logits and ids; ``convert_checkpoint.py hf`` turns it back into a checkpoint with
  identical logits and length logits; ``--pretrained EXPORTED --length-head`` (fairseq's own
  argument parsing, task and model building, as in ``fairseq-train``) starts from the exported head;
* ``diffusion_instruct`` checkpoints over the tiny SentencePiece model, one with the full vocabulary
  and one with a pruned dictionary (untied LM head), built from ``--pretrained tiny_pretrained``
  by fairseq's task and model code: the pruned vocabulary is exported as it is, with a tokenizer
  that maps to it;
* bad input: an existing ``--out``, paths that are not checkpoints, a directory that is not an export.

The scripts run in this process (their ``main``): same parsing, messages and exit codes as the
commands, without another start-up of fairseq.
"""
import contextlib
import importlib.util
import io
import json
import logging
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import PROMPT, REPO, USER_DIR

EXPORT = REPO / "scripts" / "export_hf.py"
CONVERT = REPO / "scripts" / "convert_checkpoint.py"
REVERSE_LINE = "reverse : a b c d ="  # a raw line of the reverse task's (pre-encoded) data


def run_script(script: Path, *argv, check=True) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGV`` as its ``main(argv)`` in this process; stdout/stderr captured."""
    spec = importlib.util.spec_from_file_location(f"{script.stem}_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = module.main([str(a) for a in argv])
    proc = subprocess.CompletedProcess([script.name], code, stdout.getvalue(), stderr.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script.name} failed ({code}):\n{proc.stderr[-3000:]}")
    return proc


def load_plugin(path: Path, data: Path = None):
    import fairseq_dlm

    fairseq_dlm.register()  # registers the tasks and the model
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(path)], arg_overrides={"data": str(data)} if data else None)
    return models[0].eval(), task


def build_from_command_line(*argv):
    """``(model, task)`` built as ``fairseq-train ARGV`` builds them (no training step)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), [str(a) for a in argv])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task.build_model(cfg.model), task, cfg


def batch(dictionary, lengths, seed=0):
    """Right-padded rows ``[<s>, symbols…, </s>]`` (ids from the whole vocabulary, ``<mask>`` included)."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.cat([torch.tensor([dictionary.bos()]), torch.randint(4, len(dictionary), (n,), generator=g),
                       torch.tensor([dictionary.eos()])]) for n in lengths]
    out = torch.full((len(rows), max(map(len, rows))), dictionary.pad())
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def prompts_of(tokens, dictionary):
    """Length-head inputs ``[<s>, prompt…]``: the rows without their ``</s>``."""
    rows = tokens[:, :-1].clone()
    return rows.masked_fill(rows.eq(dictionary.eos()), dictionary.pad())


def hf_logits(out_dir: Path, tokens: torch.Tensor, pad: int):
    """``AutoModelForMaskedLM`` logits ``[B, L, V]`` of the exported directory, and its loading report."""
    from transformers import AutoModelForMaskedLM

    hf, info = AutoModelForMaskedLM.from_pretrained(out_dir, output_loading_info=True)
    with torch.no_grad():
        return hf.eval()(input_ids=tokens, attention_mask=tokens.ne(pad).long()).logits, info


def assert_same_logits(ours, theirs, tokens, pad):
    keep = tokens.ne(pad)
    diff = (ours[keep] - theirs[keep]).abs().max().item()
    assert diff <= 1e-5, f"max logit difference {diff}"
    return diff


# ------------------------------------------------------------------------- the reverse model
@pytest.fixture(scope="module")
def exported(tmp_path_factory, reverse_length_model):
    from fairseq_dlm.recipes.checkpoint_choice import resolve_checkpoint

    folder = reverse_length_model[0].parent
    out = tmp_path_factory.mktemp("hf_export") / "reverse-hf"
    proc = run_script(EXPORT, folder, "--out", out)  # a folder: its best (else last) checkpoint is exported
    return Path(resolve_checkpoint(str(folder))), out, proc


def test_export_loads_in_transformers_with_the_plugin_logits_and_ids(exported, reverse_data):
    from transformers import AutoTokenizer

    ckpt, out, proc = exported
    assert f"wrote {out}: diffusion_lm model, full vocabulary of 25, whitespace tokenizer, with a length head" \
        in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "dict.txt", "diffusion_config.json", "length_head.safetensors", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json"]
    meta = json.loads((out / "diffusion_config.json").read_text())
    assert meta["task"] == "diffusion_lm" and meta["source_lang"] == "src" and meta["target_lang"] == "tgt"
    assert meta["decoding"] == {"steps": 10, "strategy": "reparam-uncond-deterministic-cosine", "length_beam": 1,
                                "temperature": 0.0}
    assert meta["length_head"] and meta["length_head_sizes"] == {"hidden": 64, "heads": 4, "ffn": 128,
                                                                 "num_classes": 514}
    assert meta["vocabulary"] == "full" and meta["tokenizer"] == "whitespace" and meta["tie_word_embeddings"]
    assert meta["source_checkpoint"] == str(ckpt.absolute()) and meta["prompt_template"] is None
    assert (out / "dict.txt").read_text() == (reverse_data / "dict.src.txt").read_text()

    model, task = load_plugin(ckpt)
    tokens = batch(task.dictionary, [9, 4, 13])
    theirs, info = hf_logits(out, tokens, task.dictionary.pad())
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    with torch.no_grad():
        assert_same_logits(model(tokens), theirs, tokens, task.dictionary.pad())

    from safetensors import safe_open

    with safe_open(str(out / "length_head.safetensors"), framework="pt") as f:
        head = {k: f.get_tensor(k) for k in f.keys()}
        assert f.metadata() == {"hidden": "64", "heads": "4", "ffn": "128", "num_classes": "514"}
    own = model.length_head.state_dict()
    assert head.keys() == own.keys() and all(torch.equal(head[k], own[k]) for k in own)

    tok = AutoTokenizer.from_pretrained(out)
    expected = [task.dictionary.bos()] + task.dictionary.encode_line(REVERSE_LINE, add_if_not_exist=False).tolist()
    assert tok(REVERSE_LINE)["input_ids"] == expected
    assert tok.mask_token_id == task.mask_idx and tok.pad_token_id == task.dictionary.pad()


def test_round_trip_gives_identical_logits_and_length_logits(exported, tmp_path):
    ckpt, out, _ = exported
    back = tmp_path / "back"
    proc = run_script(CONVERT, "--quiet", "hf", out, "--out", back)
    assert f"wrote {back}/checkpoint.pt from {out} (with a length head)" in proc.stdout
    assert sorted(p.name for p in back.iterdir()) == ["checkpoint.pt", "conversion.json", "dict.src.txt",
                                                     "dict.tgt.txt", "dict.txt"]
    original, task = load_plugin(ckpt)
    converted, task2 = load_plugin(back / "checkpoint.pt")  # its own folder is its data folder
    assert task2.dictionary.symbols == task.dictionary.symbols
    tokens = batch(task.dictionary, [9, 4, 13], seed=1)
    prompts = prompts_of(tokens, task.dictionary)
    with torch.no_grad():
        assert torch.equal(converted(tokens), original(tokens))
        assert torch.equal(converted.predict_length(prompts), original.predict_length(prompts))


def test_pretrained_export_gives_the_length_head_back(exported, reverse_data, tmp_path, caplog):
    ckpt, out, _ = exported
    original, _task = load_plugin(ckpt)
    train = [reverse_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--arch", "xlmr_diffusion_tiny",
             "--pretrained", out, "--save-dir", tmp_path / "save", "--cpu"]
    model, task, _cfg = build_from_command_line(*train, "--length-head", "--criterion", "diffusion_length")
    own, exported_head = model.length_head.state_dict(), original.length_head.state_dict()
    assert all(torch.equal(own[k], exported_head[k]) for k in exported_head)
    assert all(torch.equal(v, original.hf.state_dict()[k]) for k, v in model.hf.state_dict().items())
    assert model.hf.lm_head.decoder.weight is model.hf.roberta.embeddings.word_embeddings.weight  # still tied
    prompts = prompts_of(batch(task.dictionary, [5, 8], seed=2), task.dictionary)
    with torch.no_grad():
        assert torch.equal(model.eval().predict_length(prompts), original.predict_length(prompts))

    with caplog.at_level(logging.INFO, logger="fairseq_dlm.models.backbone"):
        model, _task, _cfg = build_from_command_line(*train)
    assert model.length_head is None and f"{out}/length_head.safetensors ignored" in caplog.text

    other = tmp_path / "other-head"  # an export whose head has other sizes
    shutil.copytree(out, other)
    from safetensors.torch import load_file, save_file

    head = load_file(str(other / "length_head.safetensors"))
    head["mlp.2.weight"], head["mlp.2.bias"] = head["mlp.2.weight"][:100], head["mlp.2.bias"][:100]
    save_file(head, str(other / "length_head.safetensors"))
    train[train.index(out)] = other
    with pytest.raises(ValueError, match=f"{other}/length_head.safetensors does not fit the length head.*"
                                         r"mlp.2.weight: file \(100, 128\) vs model \(514, 128\)"):
        build_from_command_line(*train, "--length-head", "--criterion", "diffusion_length")


# ------------------------------------------------------------ SentencePiece vocabularies
def instruct_checkpoint(root: Path, spm_model: Path, tiny_pretrained: Path, dict_lines, untie_seed=None) -> Path:
    """A ``diffusion_instruct`` checkpoint built by fairseq from ``--pretrained tiny_pretrained`` with the
    dictionary ``dict_lines``; ``untie_seed``: perturb the (untied) LM-head matrix, as training would."""
    from omegaconf import OmegaConf

    from fairseq_dlm.convert.plugin_checkpoint import write_checkpoint

    data = root / "data"
    data.mkdir(parents=True)
    (data / "dict.txt").write_text("".join(dict_lines), encoding="utf-8")
    shutil.copy(spm_model, data / "sentencepiece.bpe.model")
    (data / "train.jsonl").write_text(json.dumps({"inputs": "der hund", "targets": "the dog"}) + "\n")
    model, task, cfg = build_from_command_line(
        data, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "xlmr_diffusion_tiny",
        "--pretrained", tiny_pretrained, "--criterion", "diffusion_lm", "--save-dir", root / "save", "--cpu",
        "--prompt-template", "Translate to English: {src}", "--decoding-strategy", "reparam-cond-deterministic-linear")
    if untie_seed is not None:
        decoder = model.hf.lm_head.decoder.weight
        assert decoder is not model.hf.roberta.embeddings.word_embeddings.weight
        with torch.no_grad():
            decoder.add_(torch.randn(decoder.shape, generator=torch.Generator().manual_seed(untie_seed)) * 0.05)
    saved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    saved["generation"].update(iter_decode_max_iter=7, iter_decode_with_beam=3)  # fairseq-train keeps the defaults
    path = root / "checkpoint_last.pt"
    write_checkpoint(str(path), saved, model.state_dict(), 2)
    return path


KEPT_TEXT = ["der hund sieht einen ball", "the dog sees a ball", "die katze hat einen apfel"]


@pytest.fixture(scope="module")
def spm_checkpoints(tmp_path_factory, spm_model, tiny_pretrained):
    """``(full-vocabulary checkpoint, pruned-vocabulary checkpoint)``."""
    import sentencepiece as spm

    from fairseq_dlm.data.dictionary import full_dictionary_lines

    root = tmp_path_factory.mktemp("instruct_ckpts")
    full = instruct_checkpoint(root / "full", spm_model, tiny_pretrained, full_dictionary_lines(str(spm_model)))
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    counts = Counter(p for text in KEPT_TEXT for p in sp.encode(text, out_type=str))
    pruned_lines = [f"{p} {n}\n" for p, n in counts.most_common()] + ["madeupword0000 0\n"]
    pruned = instruct_checkpoint(root / "pruned", spm_model, tiny_pretrained, pruned_lines, untie_seed=0)
    return full, pruned


def test_full_vocabulary_exports_the_xlmr_tokenizer_of_the_plugin_ids(spm_checkpoints, tmp_path):
    from transformers import AutoTokenizer

    full, _ = spm_checkpoints
    out = tmp_path / "full-hf"
    run_script(EXPORT, full, "--out", out)
    meta = json.loads((out / "diffusion_config.json").read_text())
    assert meta["task"] == "diffusion_instruct" and meta["vocabulary"] == "full" and meta["tie_word_embeddings"]
    assert meta["tokenizer"] == "sentencepiece" and not meta["length_head"]
    assert meta["prompt_template"] == "Translate to English: {src}"
    assert meta["decoding"]["steps"] == 7 and meta["decoding"]["length_beam"] == 3
    assert (out / "sentencepiece.bpe.model").is_file() and not (out / "length_head.safetensors").exists()
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "XLMRobertaTokenizer"

    model, task = load_plugin(full)
    tok = AutoTokenizer.from_pretrained(out)
    for text in KEPT_TEXT + [PROMPT.format(src="das kind mag einen grossen vogel"), "zebra xylophon quiz!"]:
        assert tok(text)["input_ids"] == [task.dictionary.bos()] + task.encoder.encode(text).tolist(), text
    assert tok.mask_token_id == task.mask_idx == len(task.dictionary) - 1
    tokens = batch(task.dictionary, [7, 12])
    theirs, info = hf_logits(out, tokens, task.dictionary.pad())
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        assert_same_logits(model(tokens), theirs, tokens, task.dictionary.pad())

    back = tmp_path / "back"
    run_script(CONVERT, "--quiet", "hf", out, "--out", back)
    converted, task2 = load_plugin(back / "checkpoint.pt")
    assert task2.cfg.prompt_template == "Translate to English: {src}"
    assert task2.cfg.decoding_strategy == "reparam-cond-deterministic-linear"
    from fairseq_dlm.checkpoints import read_checkpoint

    assert read_checkpoint(str(back / "checkpoint.pt"))["cfg"]["generation"]["iter_decode_max_iter"] == 7
    with torch.no_grad():
        assert torch.equal(converted(tokens), model(tokens))


def test_pruned_vocabulary_is_exported_as_it_is_and_round_trips(spm_checkpoints, tmp_path):
    from transformers import AutoTokenizer

    _, pruned = spm_checkpoints
    out = tmp_path / "pruned-hf"
    run_script(EXPORT, pruned, "--out", out)
    meta = json.loads((out / "diffusion_config.json").read_text())
    assert meta["vocabulary"] == "pruned" and not meta["tie_word_embeddings"] and meta["tokenizer"] == "sentencepiece"
    assert (out / "dict.txt").read_text() == (pruned.parent / "data" / "dict.txt").read_text()

    model, task = load_plugin(pruned)
    d = task.dictionary
    assert meta["vocabulary_size"] == len(d) < 67  # the tiny backbone has 67 rows
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == len(d) and tok.convert_ids_to_tokens(list(range(len(d)))) == list(d.symbols)
    for text in KEPT_TEXT:  # every piece kept: the plugin's ids
        assert tok(text)["input_ids"] == [d.bos()] + task.encoder.encode(text).tolist(), text
    tokens = batch(d, [6, 10])
    theirs, info = hf_logits(out, tokens, d.pad())
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        assert_same_logits(model(tokens), theirs, tokens, d.pad())

    back = tmp_path / "back"
    run_script(CONVERT, "--quiet", "hf", out, "--out", back)
    assert json.loads((back / "conversion.json").read_text())["tied_lm_head"] is False
    converted, _ = load_plugin(back / "checkpoint.pt")
    assert converted.hf.lm_head.decoder.weight is not converted.hf.roberta.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert torch.equal(converted(tokens), model(tokens))

    # --pretrained of the export keeps its own (untied) LM-head matrix for the same dictionary
    data = pruned.parent / "data"
    again, _task, _cfg = build_from_command_line(
        data, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "xlmr_diffusion_tiny",
        "--pretrained", out, "--save-dir", tmp_path / "save", "--cpu", "--dropout", 0, "--attention-dropout", 0)
    with torch.no_grad():
        assert torch.equal(again.eval()(tokens), model(tokens))


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_the_path_named(exported, tmp_path):
    ckpt, out, _ = exported
    proc = run_script(EXPORT, ckpt, "--out", out, check=False)
    assert proc.returncode == 2 and f"{out} already exists; pass --overwrite" in proc.stderr
    again = tmp_path / "again"
    again.mkdir()
    (again / "length_head.safetensors").write_text("stale")  # an earlier export's file is replaced
    (again / "notes.txt").write_text("mine")  # other files are kept
    run_script(EXPORT, ckpt, "--out", again, "--overwrite")
    assert (again / "notes.txt").read_text() == "mine"
    from safetensors.torch import load_file

    fresh, first = load_file(str(again / "length_head.safetensors")), load_file(str(out / "length_head.safetensors"))
    assert fresh.keys() == first.keys() and all(torch.equal(fresh[k], first[k]) for k in first)

    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    proc = run_script(EXPORT, text, "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and f"{text} is not a fairseq checkpoint" in proc.stderr
    raw = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, raw)
    proc = run_script(EXPORT, raw, "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and f"{raw} is not a fairseq checkpoint (no cfg/model" in proc.stderr
    proc = run_script(EXPORT, out, "--out", tmp_path / "x", check=False)  # an export is not a checkpoint folder
    assert proc.returncode == 2 and f"{out}: no checkpoint_best.pt" in proc.stderr
    proc = run_script(EXPORT, tmp_path / "nowhere.pt", "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and f"checkpoint {tmp_path / 'nowhere.pt'} does not exist" in proc.stderr
    proc = run_script(EXPORT, ckpt, "--out", tmp_path / "x", "--data", tmp_path / "nodata", check=False)
    assert proc.returncode == 2 and f"of {ckpt} ({tmp_path / 'nodata'}) does not exist; pass --data" in proc.stderr
    proc = run_script(EXPORT, ckpt, "--out", tmp_path / "x", "--spm-model", tmp_path / "none.model", check=False)
    assert proc.returncode == 2 and f"--spm-model {tmp_path / 'none.model'} does not exist" in proc.stderr
    assert not (tmp_path / "x").exists()

    proc = run_script(CONVERT, "hf", ckpt.parent, "--out", tmp_path / "y", check=False)
    assert proc.returncode == 2 and f"{ckpt.parent} has no diffusion_config.json" in proc.stderr
    proc = run_script(CONVERT, "hf", out, "--out", again, check=False)
    assert proc.returncode == 2 and f"{again} already exists; pass --overwrite" in proc.stderr
    assert not (tmp_path / "y").exists()
