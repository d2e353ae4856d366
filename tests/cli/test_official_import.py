"""The paper's released checkpoints → plugin checkpoints (``scripts/convert_checkpoint.py official``).

The official format is written here by the tests with exactly the layout of the official
``DiscreteDiffusionXLMRModel`` (an HF masked LM under ``model.``, ``length_trm`` = one
``nn.TransformerEncoder`` layer, ``length_predictor`` = Linear → Tanh → Linear to
``max_position_embeddings`` classes), saved as an HF-Trainer output (``args.json`` +
``checkpoint-<step>/pytorch_model.bin``).  The reference outputs are computed the way the official
``forward`` / ``forward_length`` compute them: the converted model must give the same logits.
"""
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import REPO, USER_DIR, cli

SCRIPT = REPO / "scripts" / "convert_checkpoint.py"
H, HEADS, FFN, POSITIONS = 64, 4, 128, 258


class OfficialLayout(nn.Module):
    """The module tree (hence the state-dict keys) of the official ``DiscreteDiffusionXLMRModel``."""

    def __init__(self, hf_dir: Path):
        super().__init__()
        from transformers import AutoModelForMaskedLM

        self.model = AutoModelForMaskedLM.from_pretrained(hf_dir)  # XLM-R, or XLM-R XL
        self.length_trm = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model=H, nhead=HEADS, dim_feedforward=FFN, batch_first=True), num_layers=1)
        self.length_predictor = nn.Sequential(nn.Linear(H, FFN), nn.Tanh(), nn.Linear(FFN, POSITIONS))

    def denoise(self, ids):
        """The official ``forward``: the backbone on ``inputs_embeds``, then the LM head."""
        mask = ids.ne(1).int()
        embeds = self.model.roberta.embeddings.word_embeddings(ids)
        return self.model.lm_head(self.model.roberta(inputs_embeds=embeds, attention_mask=mask)[0])

    def denoise_prefix_lm(self, ids, partial):
        """The official ``forward`` with ``prefix_lm``: rows of ``partial`` (``<s>`` and the prompt) attend to
        ``partial`` keys only, the others to every token; XLM-R turns the 0/1 mask into −inf (4-D here)."""
        mask = ids.ne(1).int()
        ext = mask[:, None, :].repeat(1, ids.size(1), 1)
        ext_partial = torch.bmm(partial.float()[:, :, None], partial.float()[:, None, :]).int()
        ext[partial] = ext_partial[partial]
        additive = (1.0 - ext[:, None].float()) * torch.finfo(torch.float32).min
        embeds = self.model.roberta.embeddings.word_embeddings(ids)
        return self.model.lm_head(self.model.roberta(inputs_embeds=embeds, attention_mask=additive)[0])

    def length(self, ids):
        """The official ``forward_length``: masked mean of the length layer's output → MLP."""
        mask = ids.ne(1).int()
        feature = self.length_trm(self.model.roberta(ids, attention_mask=mask)[0],
                                  src_key_padding_mask=(1 - mask).bool())
        pooled = feature.masked_fill((mask == 0)[:, :, None], 0).float().sum(1) / mask.sum(-1)[:, None]
        return self.length_predictor(pooled.to(feature))


def write_release(root: Path, hf_dir: Path, *, tied=True, length_head=True, pretrained=None, step=2000,
                  old_buffers=False, bf16=False) -> OfficialLayout:
    """An official model folder: ``args.json``, an empty ``checkpoint-500/`` and ``checkpoint-<step>/``."""
    torch.manual_seed(step)
    ref = OfficialLayout(hf_dir).eval()
    if not tied:  # an untied LM head: its own decoder matrix
        ref.model.lm_head.decoder.weight = nn.Parameter(torch.randn_like(ref.model.lm_head.decoder.weight) * 0.05)
    if bf16:  # as ZeRO-2 saves a bf16 run: the reference computes with the same (rounded) weights in fp32
        ref = ref.to(torch.bfloat16).float()
    state = {k: v.to(torch.bfloat16) if bf16 and v.is_floating_point() else v.clone()
             for k, v in ref.state_dict().items()}
    if tied:
        state["model.lm_head.decoder.weight"] = torch.empty(0)  # how the release stores a tied head
    if not length_head:
        state = {k: v for k, v in state.items() if k.startswith("model.")}
    if old_buffers:  # transformers < 4.31 saved the position-id buffer
        state["model.roberta.embeddings.position_ids"] = torch.arange(POSITIONS)[None]
    ckpt = root / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (root / "checkpoint-500").mkdir()  # lexicographically last, numerically first: must not be chosen
    torch.save(state, ckpt / "pytorch_model.bin")
    args = {"model": {"pretrained": str(pretrained or hf_dir), "attention_strategy": "full",
                      "num_diffusion_timesteps": 50}, "train": {"output_dir": str(root)}}
    (root / "args.json").write_text(json.dumps(args, indent=4), encoding="utf-8")
    return ref


def convert(src, out, *extra, check=True):
    """``scripts/convert_checkpoint.py official SRC --out OUT ...`` run in this process (its ``main``):
    the same parsing, messages and exit code as the command, without a second start-up of fairseq."""
    spec = importlib.util.spec_from_file_location("convert_checkpoint_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = script.main(["--quiet", "official", str(src), "--out", str(out), *map(str, extra)])
    proc = subprocess.CompletedProcess(["convert_checkpoint.py"], code, stdout.getvalue(), stderr.getvalue())
    if check and code != 0:
        raise AssertionError(f"convert_checkpoint.py failed ({code}):\n{proc.stderr[-3000:]}")
    return proc


def load_plugin(path: Path):
    import fairseq_dlm

    fairseq_dlm.register()  # registers the task and model
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return models[0].eval(), task


def batch(task, lengths):
    """Right-padded rows ``[<s>, pieces…, </s>]`` of the given lengths (ids from the whole vocabulary)."""
    g = torch.Generator().manual_seed(0)
    d = task.dictionary
    rows = [torch.cat([torch.tensor([d.bos()]), torch.randint(4, len(d) - 1, (n,), generator=g),
                       torch.tensor([d.eos()])]) for n in lengths]
    out = torch.full((len(rows), max(map(len, rows))), d.pad())
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_pretrained):
    root = tmp_path_factory.mktemp("official") / "flan_v2.tiny.length"
    ref = write_release(root, tiny_pretrained, old_buffers=True)
    out = root.parent / "converted"
    proc = convert(root, out)
    return root, out, ref, proc


def test_tied_release_with_length_head_gives_the_official_logits(release):
    root, out, ref, proc = release
    assert f"wrote {out}/checkpoint.pt" in proc.stdout and "tied LM head, with a length head" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["args.json", "checkpoint.pt", "conversion.json", "dict.txt",
                                                    "sentencepiece.bpe.model"]
    report = json.loads((out / "conversion.json").read_text())
    assert report["checkpoint"] == "checkpoint-2000" and report["step"] == 2000  # not checkpoint-500
    assert report["tied_lm_head"] and report["length_head"]
    model, task = load_plugin(out / "checkpoint.pt")
    assert model.hf.lm_head.decoder.weight is model.hf.roberta.embeddings.word_embeddings.weight
    assert len(task.dictionary) == ref.model.config.vocab_size  # full vocabulary: index = HF token id
    tokens = batch(task, [9, 4, 13])
    with torch.no_grad():
        ours, theirs = model(tokens), ref.denoise(tokens)
        keep = tokens.ne(1)
        torch.testing.assert_close(ours[keep], theirs[keep], atol=1e-5, rtol=1e-5)
        prompts = tokens[:, :-1].masked_fill(tokens[:, :-1].eq(task.dictionary.eos()), 1)
        torch.testing.assert_close(model.predict_length(prompts), ref.length(prompts), atol=1e-5, rtol=1e-5)


def test_untied_bf16_release_without_length_head(tmp_path, tiny_pretrained):
    root = tmp_path / "release"
    ref = write_release(root, tiny_pretrained, tied=False, length_head=False, step=7000, bf16=True)
    proc = convert(root, tmp_path / "out")
    assert "untied LM head, no length head, bfloat16 weights (loaded as float32)" in proc.stdout
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert report["weights_dtype"] == "bfloat16" and "--autocast-bf16" in report["half_precision"]
    model, task = load_plugin(tmp_path / "out" / "checkpoint.pt")
    assert model.length_head is None
    assert not torch.equal(model.hf.lm_head.decoder.weight, model.hf.roberta.embeddings.word_embeddings.weight)
    tokens = batch(task, [6, 11])
    with torch.no_grad():
        keep = tokens.ne(1)
        torch.testing.assert_close(model(tokens)[keep], ref.denoise(tokens)[keep], atol=1e-5, rtol=1e-5)


def test_attention_flags_as_the_official_forward_reads_them(tmp_path, tiny_pretrained):
    """XLM-R's official forward reads ``prefix_lm`` only: with it the run converts to
    ``--attention-strategy prefix_lm`` (the official masking, same logits); an ``attention_strategy`` other
    than full without ``prefix_lm`` was full attention, and converts so (said in the report)."""
    for prefix, strategy in ((True, "prefix_lm"), (False, "blockwise")):
        root = tmp_path / f"release_{prefix}"
        ref = write_release(root, tiny_pretrained, length_head=False)
        args = json.loads((root / "args.json").read_text())
        args["model"].update(prefix_lm=prefix, attention_strategy=strategy)
        (root / "args.json").write_text(json.dumps(args))
        convert(root, tmp_path / f"out_{prefix}")
        report = json.loads((tmp_path / f"out_{prefix}" / "conversion.json").read_text())
        model, task = load_plugin(tmp_path / f"out_{prefix}" / "checkpoint.pt")
        tokens = batch(task, [9, 5])
        partial = torch.zeros_like(tokens, dtype=torch.bool)
        partial[:, :4] = True  # <s> and three prompt tokens
        keep = tokens.ne(1)
        with torch.no_grad():
            if prefix:
                assert report["attention"] == "prefix_lm" and model.prefix_lm
                ours, theirs = model(tokens, prompt_mask=partial), ref.denoise_prefix_lm(tokens, partial)
                assert not torch.allclose(theirs[keep], ref.denoise(tokens)[keep], atol=1e-3)  # it is not full
            else:
                assert report["attention"] == "full" and "not read" in report["attention_note"]
                ours, theirs = model(tokens), ref.denoise(tokens)
        torch.testing.assert_close(ours[keep], theirs[keep], atol=1e-5, rtol=1e-5)


def test_xl_vocabulary_padding_rows_are_left_out(tmp_path, spm_model):
    """An XLM-R XL/XXL release has 250,880 embedding rows for 250,002 tokens (the official code never
    resizes them): here a tiny XL with 878 rows past its tokenizer's.  The conversion keeps the rows of
    the tokens (HF id = dictionary index) and gives the official logits over them."""
    import sentencepiece as spm
    from transformers import XLMRobertaXLConfig, XLMRobertaXLForMaskedLM

    tokens_count = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size() + 2
    xl = tmp_path / "tiny-xl"
    torch.manual_seed(0)
    XLMRobertaXLForMaskedLM(XLMRobertaXLConfig(
        vocab_size=tokens_count + 878, hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=POSITIONS, pad_token_id=1, type_vocab_size=1)).save_pretrained(xl)
    shutil.copy(spm_model, xl / "sentencepiece.bpe.model")
    ref = write_release(tmp_path / "release", xl, length_head=False)
    convert(tmp_path / "release", tmp_path / "out", "--config", xl)
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert report["dropped_rows"]["count"] == 878 and report["vocabulary"] == tokens_count
    model, task = load_plugin(tmp_path / "out" / "checkpoint.pt")
    assert model.hf.config.model_type == "xlm-roberta-xl" and len(task.dictionary) == tokens_count
    tokens = batch(task, [8, 6])
    keep = tokens.ne(1)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[keep], ref.denoise(tokens)[keep][:, :tokens_count],
                                   atol=1e-5, rtol=1e-5)


def test_task_run_with_a_pruned_dictionary(tmp_path, tiny_pretrained, spm_model):
    """A task run (``dataset_type`` fairseq): the official ``remove_redundant_embeddings`` cut the embedding
    and ``lm_head.decoder`` to the data's ``dict.de.txt`` and left ``lm_head.bias`` at full size (stale).
    It converts to a ``diffusion_lm`` model of that dictionary with the official logits; a dictionary
    without ``<mask>`` (the official code then masks with ``<unk>``) gets one with ``<unk>``'s rows."""
    import sentencepiece as spm
    from fairseq.data import Dictionary

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    pieces = [sp.id_to_piece(i) for i in range(10, 40)]
    for with_mask in (True, False):
        data = tmp_path / f"data_{with_mask}"
        data.mkdir()
        (data / "dict.de.txt").write_text("".join(f"{p} 1\n" for p in pieces + (["<mask>"] if with_mask else [])))
        d = Dictionary.load(str(data / "dict.de.txt"))
        root = tmp_path / f"run_{with_mask}"
        ref = write_release(root, tiny_pretrained, length_head=False)
        hf_id = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": sp.get_piece_size() + 1}  # XLM-R ids
        rows = torch.tensor([hf_id.get(s, sp.piece_to_id(s) + 1) for s in d.symbols])
        with torch.no_grad():  # remove_redundant_embeddings
            emb = ref.model.roberta.embeddings.word_embeddings.weight[rows].clone()
            ref.model.roberta.embeddings.word_embeddings = nn.Embedding.from_pretrained(emb, freeze=False,
                                                                                        padding_idx=1)
            decoder = nn.Linear(H, len(rows))
            decoder.weight.data = ref.model.lm_head.decoder.weight[rows].clone()
            decoder.bias.data = ref.model.lm_head.decoder.bias[rows].clone()
            ref.model.lm_head.decoder = decoder
        state = ref.state_dict()
        assert state["model.lm_head.bias"].shape[0] == sp.get_piece_size() + 2 != len(rows)  # the stale one
        torch.save(state, root / "checkpoint-2000" / "pytorch_model.bin")
        args = json.loads((root / "args.json").read_text())
        args["data"] = {"dataset_type": "fairseq", "data_path": str(tmp_path / "moved"), "src_lang": "de",
                        "tgt_lang": "en"}
        (root / "args.json").write_text(json.dumps(args))
        out = tmp_path / f"out_{with_mask}"
        proc = convert(root, out, check=False)
        assert proc.returncode == 2 and "pass --data DIR" in proc.stderr and "dict.de.txt" in proc.stderr
        convert(root, out, "--data", data)
        assert (out / "dict.de.txt").is_file() and (out / "dict.en.txt").is_file()
        model, task = load_plugin(out / "checkpoint.pt")
        n = len(d)
        assert len(task.source_dictionary) == n + (0 if with_mask else 1)
        tokens = batch(task, [7, 11])
        keep = tokens.ne(1)
        with torch.no_grad():
            ours, theirs = model(tokens)[keep], ref.denoise(tokens)[keep]
        torch.testing.assert_close(ours[:, :n], theirs, atol=1e-5, rtol=1e-5)
        if not with_mask:
            assert torch.equal(ours[:, n], ours[:, 3])  # the appended <mask> scores as <unk> did


def test_lora_adapter_folder_of_an_xlmr_run(tmp_path, tiny_pretrained):
    """``--lora`` runs saved only peft's adapters (``base_model.model.`` + the official name): the
    conversion puts them on the pretrained backbone (args.json's ``pretrained``, a local folder here)
    as the plugin's own LoRA layers, with the official logits; no length head (TOKEN_CLS saves none)."""
    torch.manual_seed(3)
    ref = OfficialLayout(tiny_pretrained).eval()
    adapters = {}
    for i, layer in enumerate(ref.model.roberta.encoder.layer):
        for name in ("query", "value"):
            linear = getattr(layer.attention.self, name)
            a, b = torch.randn(8, H) * 0.1, torch.randn(H, 8) * 0.1
            key = f"base_model.model.model.roberta.encoder.layer.{i}.attention.self.{name}"
            adapters[key + ".lora_A.weight"], adapters[key + ".lora_B.weight"] = a, b
            with torch.no_grad():
                linear.weight.add_(2.0 * b @ a)  # lora_alpha 16 / r 8
    ckpt = tmp_path / "run" / "checkpoint-100"
    ckpt.mkdir(parents=True)
    torch.save(adapters, ckpt / "adapter_model.bin")
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "task_type": "TOKEN_CLS", "r": 8,
                                                          "lora_alpha": 16, "target_modules": ["query", "value"],
                                                          "lora_dropout": 0.1, "bias": "none"}))
    (tmp_path / "run" / "args.json").write_text(json.dumps({"model": {"pretrained": str(tiny_pretrained),
                                                                      "lora": True}}))
    proc = convert(tmp_path / "run", tmp_path / "out")
    assert "no length head, LoRA r=8 on query,value" in proc.stdout
    model, task = load_plugin(tmp_path / "out" / "checkpoint.pt")
    assert model.cfg.lora and model.length_head is None
    tokens = batch(task, [7, 12])
    with torch.no_grad():
        keep = tokens.ne(1)
        torch.testing.assert_close(model(tokens)[keep], ref.denoise(tokens)[keep], atol=1e-5, rtol=1e-5)
    # a folder with adapters the official trainer never writes is refused by name
    adapters["base_model.model.model.lm_head.dense.modules_to_save.weight"] = torch.zeros(2)
    torch.save(adapters, ckpt / "adapter_model.bin")
    proc = convert(tmp_path / "run", tmp_path / "out2", check=False)
    assert proc.returncode == 2 and "modules_to_save" in proc.stderr and "not LoRA A/B" in proc.stderr


def test_converted_model_decodes_with_fairseq_and_the_instruction_evaluation(release, tmp_path, spm_model):
    """fairseq-generate (binarized data with the converted dict.txt), fairseq-interactive and
    eval_instruct.py (predicted lengths from the converted head) load the converted folder as it is."""
    from conftest import encode_lines, preprocess, write_split

    _root, out, _ref, _proc = release
    prompts = ["Translate the German sentence to English. German: der hund English:"] * 3
    write_split(tmp_path / "raw", "test", encode_lines(spm_model, prompts), encode_lines(spm_model, ["the dog"] * 3))
    data = preprocess(tmp_path / "raw", tmp_path / "bin", ("test",), "de", "en", "--srcdict", out / "dict.txt")
    gen = cli("generate", data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", out / "checkpoint.pt",
              "--gen-subset", "test", "--iter-decode-max-iter", 2, "--iter-decode-with-beam", 2, "--cpu",
              "--batch-size", 3, "--remove-bpe", "sentencepiece")
    assert sum(line.startswith("H-") for line in gen.stdout.splitlines()) == 3
    inter = cli("interactive", out, "--user-dir", USER_DIR, "--task", "diffusion_instruct",
                "--path", out / "checkpoint.pt", "--iter-decode-max-iter", 2, "--cpu",
                "--bpe", "sentencepiece", "--sentencepiece-model", out / "sentencepiece.bpe.model",
                input="Translate: der hund\n")
    assert any(line.startswith("H-0") for line in inter.stdout.splitlines())
    jsonl = tmp_path / "mgsm" / "0-shot" / "en.jsonl"
    jsonl.parent.mkdir(parents=True)
    jsonl.write_text("".join(json.dumps({"inputs": f"Q: {i} + 1 = ?", "targets": "The answer is 2."}) + "\n"
                             for i in range(3)), encoding="utf-8")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "eval_instruct.py"), "--ckpt", str(out),
                           "--files", str(jsonl), "--max-iter", "2", "--length-beam", "2", "--cpu", "--no-progress",
                           "--output-dir", str(tmp_path / "eval")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "mgsm.en.0-shot.lb2.json").read_text())
    assert len(report["predictions"]) == 3 and all(p["canvas"] >= 1 for p in report["predictions"])


# --------------------------------------------------------------------------------- bad input
def test_folder_without_args_or_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = convert(tmp_path / "empty", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "has no args.json" in proc.stderr and "checkpoint-<step>" in proc.stderr
    (tmp_path / "empty" / "args.json").write_text("{}")
    proc = convert(tmp_path / "empty", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "no checkpoint-<step>/ folder" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_zero_only_checkpoint_names_the_gather_command(tmp_path):
    root = tmp_path / "release"
    (root / "checkpoint-300" / "global_step300").mkdir(parents=True)
    (root / "checkpoint-300" / "latest").write_text("global_step300")
    (root / "args.json").write_text(json.dumps({"model": {"pretrained": "facebook/xlm-roberta-base"}}))
    proc = convert(root, tmp_path / "out", check=False)
    ckpt = root / "checkpoint-300"
    assert proc.returncode == 2 and "DeepSpeed ZeRO" in proc.stderr
    assert f"python {ckpt}/zero_to_fp32.py {ckpt} {ckpt}/pytorch_model.bin" in proc.stderr


def test_sizes_of_no_preset_and_a_tokenizer_of_another_vocabulary(tmp_path, tiny_pretrained, spm_model):
    root = tmp_path / "release"
    write_release(root, tiny_pretrained, pretrained="facebook/xlm-roberta-xxl")
    proc = convert(root, tmp_path / "out", "--tokenizer", tiny_pretrained, check=False)
    assert proc.returncode == 2 and "match no XLM-R preset" in proc.stderr and "--config" in proc.stderr
    # --config names the sizes; a pruned embedding (fewer rows than the tokenizer's vocabulary) is refused
    state = torch.load(root / "checkpoint-2000" / "pytorch_model.bin")
    for key in ("model.roberta.embeddings.word_embeddings.weight", "model.lm_head.bias", "model.lm_head.decoder.bias"):
        state[key] = state[key][:40]
    torch.save(state, root / "checkpoint-2000" / "pytorch_model.bin")
    pruned_cfg = tmp_path / "cfg"
    shutil.copytree(tiny_pretrained, pruned_cfg)
    cfg = json.loads((pruned_cfg / "config.json").read_text())
    (pruned_cfg / "config.json").write_text(json.dumps(dict(cfg, vocab_size=40)))
    proc = convert(root, tmp_path / "out", "--tokenizer", tiny_pretrained, "--config", pruned_cfg, check=False)
    assert proc.returncode == 2 and "do not belong together" in proc.stderr and "40 embedding rows" in proc.stderr


def test_missing_tensor_tokenizer_and_existing_output(tmp_path, tiny_pretrained):
    root = tmp_path / "release"
    write_release(root, tiny_pretrained)
    state = torch.load(root / "checkpoint-2000" / "pytorch_model.bin")
    del state["model.roberta.encoder.layer.1.output.dense.weight"]
    torch.save(state, root / "checkpoint-2000" / "pytorch_model.bin")
    proc = convert(root, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "missing 1 tensors (hf.roberta.encoder.layer.1.output.dense.weight)" in proc.stderr
    assert not (tmp_path / "out").exists()
    (root / "args.json").write_text(json.dumps({"model": {"pretrained": "facebook/xlm-roberta-base"}}))
    proc = convert(root, tmp_path / "out", "--config", tiny_pretrained, "--cache-dir", tmp_path / "nocache",
                   check=False)
    assert proc.returncode == 2 and "no sentencepiece.bpe.model" in proc.stderr and "--tokenizer" in proc.stderr
    (tmp_path / "out").mkdir()
    proc = convert(root, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "already exists; pass --overwrite" in proc.stderr


def test_non_finite_and_truncated_weights_are_refused_by_name(tmp_path, tiny_pretrained):
    """A diverged or damaged release: NaN/inf weights name their tensor; a truncated pytorch_model.bin
    (or model.safetensors) names the file, not torch's "central directory" error."""
    root = tmp_path / "release"
    write_release(root, tiny_pretrained)
    weights = root / "checkpoint-2000" / "pytorch_model.bin"
    good = weights.read_bytes()
    state = torch.load(weights)
    state["model.roberta.encoder.layer.1.attention.self.query.weight"][3, 5] = float("nan")
    state["length_predictor.2.bias"][0] = float("inf")
    torch.save(state, weights)
    proc = convert(root, tmp_path / "out", check=False)
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    assert re.search(r"tensor hf\.roberta\.encoder\.layer\.1\.attention\.self\.query\.weight \(64, 64\) holds 1 "
                     r"NaN/inf value\(s\)", proc.stderr), proc.stderr
    weights.write_bytes(good[: len(good) // 2])
    proc = convert(root, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "central directory" not in proc.stderr
    assert f"{weights} cannot be read ({len(good) // 2} bytes): it is not a complete zip archive" in proc.stderr
    assert "download it again" in proc.stderr
    from safetensors.torch import save_file

    weights.unlink()
    save_file({k: v.contiguous() for k, v in torch.load(io.BytesIO(good)).items() if v.numel()},
              root / "checkpoint-2000" / "model.safetensors")
    blob = (root / "checkpoint-2000" / "model.safetensors").read_bytes()
    (root / "checkpoint-2000" / "model.safetensors").write_bytes(blob[:1000])
    proc = convert(root, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "model.safetensors cannot be read (1000 bytes)" in proc.stderr


def test_download_ckpts_joins_parts_in_order_unpacks_and_converts(tmp_path, tiny_pretrained):
    """``download_ckpts.sh`` from a file:// mirror of the HF repo layout: the XL model's three parts
    (joined 0, 1, 2 — the official script joins 0, 2, 1), unpacked, converted; a rerun downloads nothing."""
    import tarfile

    release = tmp_path / "build" / "outputs" / "flan_2022.xl.length"
    write_release(release, tiny_pretrained)
    with tarfile.open(tmp_path / "xl.tar.gz", "w:gz") as tar:
        tar.add(release, arcname="outputs/flan_2022.xl.length")
    blob = (tmp_path / "xl.tar.gz").read_bytes()
    mirror = tmp_path / "mirror" / "flan_v2.xl.length"
    mirror.mkdir(parents=True)
    cut = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    for i in range(3):
        (mirror / f"flan_v2.xl.length.tar.gz.part{i}").write_bytes(blob[cut[i]:cut[i + 1]])
    out = tmp_path / "ckpts"

    def run(base):
        return subprocess.run(["bash", str(REPO / "scripts" / "download_ckpts.sh"), "--sizes", "xl", "--out", str(out),
                               "--base-url", base.as_uri(), "--tokenizer", str(tiny_pretrained)],
                              capture_output=True, text=True, timeout=300,
                              env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"})

    proc = run(tmp_path / "mirror")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [str(out / "flan-xlmr-xl")]
    assert (out / "flan_v2.xl.length" / "args.json").is_file() and not list(out.glob("*.tar.gz*"))
    assert sorted(p.name for p in out.iterdir()) == ["flan-xlmr-xl", "flan_v2.xl.length"]  # no .unpack-xl/ left
    report = json.loads((out / "flan-xlmr-xl" / "conversion.json").read_text())
    assert report["step"] == 2000 and report["length_head"]
    proc = run(tmp_path / "nowhere")  # everything is there: nothing is fetched
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "flan_v2.xl.length" / "args.json").unlink()
    proc = run(tmp_path / "nowhere")
    assert proc.returncode == 1 and "could not download" in proc.stderr and "flan_v2.xl.length.tar.gz.part0" in proc.stderr
    # an archive that is not a release: an error, and nothing of the attempt left behind
    with tarfile.open(out / "flan_v2.xl.length.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "xl.tar.gz", arcname="something/else.bin")
    proc = run(tmp_path / "nowhere")
    assert proc.returncode == 1 and "holds no args.json: not an official model archive" in proc.stderr
    assert not list(out.glob(".unpack-*"))


def test_python_api_loads_the_converted_folder(release):
    """``DiffusionLM.from_pretrained(OUT)`` reads the converted folder's dictionary and SentencePiece
    model and decodes with the converted length head."""
    from fairseq_dlm import DiffusionLM

    _root, out, _ref, _proc = release
    m = DiffusionLM.from_pretrained(str(out))
    assert m.spm_model == str(out / "sentencepiece.bpe.model") and m.models[0].length_head is not None
    outs = m.generate(["Translate: der hund", "Translate: die katze"], steps=2, length_beam=2, return_dict=True)
    assert len(outs) == 2 and all(o["length"] >= 1 and isinstance(o["text"], str) for o in outs)
    assert m.encode("der hund").tolist()[-1] == m.task.dictionary.eos()
