"""Decoder-only backbones (LLaMA / Qwen2 families) run bidirectionally as diffusion LMs: tiny models
trained by the real fairseq-train, decoded by fairseq-generate and the Python API, and a HuggingFace
``LlamaForCausalLM`` directory adapted through ``--pretrained``."""
import re
import shutil

import pytest
import torch

from conftest import REVERSE_TRAIN, USER_DIR, cli

BLEU_THRESHOLD = 90.0  # 400 updates of 2,000 tokens reach 96.2 (held-out strings); untrained < 5


@pytest.fixture(scope="module")
def llama_reverse(tmp_path_factory, reverse_data):
    """``llama_diffusion_tiny`` (RMSNorm, SwiGLU, rotary positions) with prefix-LM attention, 400 updates."""
    save = tmp_path_factory.mktemp("llama_reverse")
    cli("train", reverse_data, *REVERSE_TRAIN, "--max-tokens", 2000, "--arch", "llama_diffusion_tiny",
        "--attention-strategy", "prefix_lm",
        "--criterion", "diffusion_lm", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 50,
        "--max-update", 400, "--disable-validation", "--save-dir", save)
    return save / "checkpoint_last.pt"


def _load(ckpt, data, **overrides):
    from fairseq_dlm import DiffusionLM

    return DiffusionLM.from_pretrained(str(ckpt), data=str(data), **overrides)


def _logits(model, tokens: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """``[L, V]`` logits of one row ``tokens`` whose first ``prompt_len`` tokens are the prompt side."""
    prompt_mask = torch.zeros_like(tokens, dtype=torch.bool)
    prompt_mask[:prompt_len] = True
    with torch.no_grad():
        return model(tokens.unsqueeze(0), prompt_mask=prompt_mask.unsqueeze(0))[0]


def test_llama_backbone_learns_to_reverse(llama_reverse, reverse_data, tmp_path):
    cli("generate", reverse_data, "--user-dir", USER_DIR, "--task", "diffusion_lm", "--path", llama_reverse, "--cpu",
        "--gen-subset", "test", "--batch-size", 64, "--oracle-length", "--iter-decode-max-iter", 10,
        "--scoring", "sacrebleu", "--results-path", tmp_path)
    out = (tmp_path / "generate-test.txt").read_text()
    assert len(re.findall(r"^H-\d+\t", out, re.M)) == 200
    bleu = float(re.search(r"BLEU = ([\d.]+)", out).group(1))
    assert bleu >= BLEU_THRESHOLD, f"held-out BLEU {bleu} < {BLEU_THRESHOLD}"


def test_llama_backbone_is_not_causal_and_its_prompt_cache_is_exact(llama_reverse, reverse_data):
    m = _load(llama_reverse, reverse_data)
    net = m.models[0]
    assert net.decoder_only and net.hf.config.model_type == "llama" and net.prefix_lm
    d = m.task.target_dictionary
    mask = d.index("<mask>")
    prompt = m.encode("reverse : a b c d e =")[:-1]
    row = torch.cat([torch.tensor([d.bos()]), prompt, torch.tensor([mask] * 4 + [d.eos()])])
    other = row.clone()
    other[-2] = d.index("a")  # a later response slot
    p = prompt.numel() + 1
    before, after = _logits(net, row, p), _logits(net, other, p)
    assert not torch.allclose(before[p], after[p])  # the first response slot sees a later one
    assert torch.allclose(before[:p], after[:p])  # prefix-LM: the prompt side does not see the response
    # decoding with the prompt's keys/values computed once gives what the full passes give
    prompts = [f"reverse : {' '.join(s)} =" for s in ("abcdef", "bca", "fedcbaab", "cab")]
    cached = m.generate(prompts, steps=5, oracle_lengths=[6, 3, 8, 3], return_dict=True)
    plain = m.generate(prompts, steps=5, oracle_lengths=[6, 3, 8, 3], return_dict=True, prompt_cache=False)
    assert [c["text"] for c in cached] == [x["text"] for x in plain]
    assert max(abs(c["score"] - x["score"]) for c, x in zip(cached, plain)) < 1e-5


def test_qwen2_backbone_attends_both_ways(reverse_data, tmp_path):
    """Full attention: a prompt position's output changes with the last response token."""
    cli("train", reverse_data, *REVERSE_TRAIN, "--arch", "qwen2_diffusion_tiny", "--criterion", "diffusion_lm",
        "--lr", "3e-3", "--max-update", 5, "--disable-validation", "--save-dir", tmp_path)
    m = _load(tmp_path / "checkpoint_last.pt", reverse_data)
    net = m.models[0]
    assert net.hf.config.model_type == "qwen2" and not net.prefix_lm
    d = m.task.target_dictionary
    row = torch.cat([torch.tensor([d.bos()]), m.encode("reverse : a b =")[:-1],
                     torch.tensor([d.index("<mask>"), d.index("<mask>"), d.eos()])])
    other = row.clone()
    other[-2] = d.index("b")
    assert not torch.allclose(_logits(net, row, 0)[1], _logits(net, other, 0)[1])


def test_pretrained_llama_directory(tmp_path, instruct_ckpt, spm_model):
    """``--pretrained`` a HF ``LlamaForCausalLM`` directory (its SentencePiece ``tokenizer.model``): the
    dictionary's pieces take the model's rows, ``<pad>`` and ``<mask>`` (not in LLaMA's vocabulary)
    the mean row, as the official code initialises added tokens; bidirectional; trains and decodes."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=sp.get_piece_size(), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                      max_position_embeddings=256, tie_word_embeddings=False))
    pretrained = tmp_path / "llama"
    hf.save_pretrained(pretrained)
    shutil.copy(spm_model, pretrained / "tokenizer.model")
    _, data = instruct_ckpt
    forgot = cli("train", data, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "decoder_diffusion",
                 "--criterion", "diffusion_lm", "--optimizer", "torch_adamw", "--cpu", "--batch-size", 8, "--max-update", 1,
                 "--save-dir", tmp_path / "forgot", check=False)
    assert forgot.returncode != 0 and "pass --pretrained DIR" in forgot.stderr and "Traceback" not in forgot.stderr
    save = tmp_path / "ckpt"
    cli("train", data, "--user-dir", USER_DIR, "--task", "diffusion_instruct", "--arch", "decoder_diffusion",
        "--pretrained", pretrained, "--max-positions", 128, "--criterion", "diffusion_lm", "--optimizer",
        "torch_adamw", "--lr", "0", "--cpu", "--seed", 1, "--batch-size", 8, "--epoch-size", 16, "--max-update", 1,
        "--disable-validation", "--no-epoch-checkpoints", "--save-dir", save)
    m = _load(save / "checkpoint_last.pt", data)
    net, d = m.models[0], m.task.target_dictionary
    assert net.decoder_only and net.max_positions() == 128
    embed, head = net.hf.get_input_embeddings().weight, net.hf.get_output_embeddings().weight
    for sym in ("▁der", "▁hund", "</s>", "<s>", "<unk>"):
        assert torch.equal(embed[d.index(sym)], hf.model.embed_tokens.weight[sp.piece_to_id(sym)]), sym
        assert torch.equal(head[d.index(sym)], hf.lm_head.weight[sp.piece_to_id(sym)]), sym
    for sym in ("<pad>", "<mask>"):
        assert torch.allclose(embed[d.index(sym)], hf.model.embed_tokens.weight.mean(0)), sym
        assert torch.allclose(head[d.index(sym)], hf.lm_head.weight.mean(0)), sym
    out = m.generate(["Translate the German sentence to English. German: der hund English:"], oracle_lengths=[3],
                     steps=2)
    assert isinstance(out[0], str)
    # --backbone-layers keeps the first decoder layers, as for XLM-R
    from fairseq_dlm.models.backbone import build_backbone
    from fairseq_dlm.models.xlmr_diffusion import XLMRDiffusionConfig

    short = build_backbone(XLMRDiffusionConfig(pretrained=str(pretrained), backbone_layers=1), list(d.symbols), d.pad())
    assert len(short.model.layers) == short.config.num_hidden_layers == 1
    assert torch.equal(short.model.layers[0].mlp.up_proj.weight, hf.model.layers[0].mlp.up_proj.weight)


def _masked_row(m, prompt: str, slots: int) -> torch.Tensor:
    """``[<s>, prompt…, <mask> × slots, </s>]`` in ``m``'s dictionary."""
    d = m.task.target_dictionary
    return torch.cat([torch.tensor([d.bos()]), m.encode(prompt)[:-1],
                      torch.tensor([d.index("<mask>")] * slots + [d.eos()])])


def _bleu(model, raw, limit: int = 100) -> float:
    """Held-out BLEU of ``model`` (a DiffusionLM) on the first ``limit`` lines of ``raw``/test.{src,tgt},
    oracle lengths, 10 steps."""
    import sacrebleu

    prompts = (raw / "test.src").read_text().splitlines()[:limit]
    refs = (raw / "test.tgt").read_text().splitlines()[:limit]
    hyps = model.generate(prompts, steps=10, oracle_lengths=[len(r.split()) for r in refs], batch_size=64)
    return sacrebleu.corpus_bleu(hyps, [refs]).score


@pytest.fixture(scope="module")
def lora_copier(llama_reverse, reverse_data, tmp_path_factory):
    """LoRA (r = 8 on q/k/v/o) on the reversing model, fine-tuned 200 updates of 2,000 tokens to *copy* the string,
    compact checkpoints (``--lora-adapters-only``); returns ``(checkpoint, base checkpoint, data)``."""
    from conftest import preprocess

    tmp = tmp_path_factory.mktemp("lora_copier")
    raw = tmp / "raw"
    raw.mkdir()
    for split in ("train", "valid", "test"):
        prompts = (reverse_data.parent / "raw" / f"{split}.src").read_text().splitlines()
        (raw / f"{split}.src").write_text("".join(p + "\n" for p in prompts))
        (raw / f"{split}.tgt").write_text("".join(p[len("reverse : "):-len(" =")] + "\n" for p in prompts))
    copy = preprocess(raw, tmp / "bin", ("train", "valid", "test"), "src", "tgt",
                      "--srcdict", reverse_data / "dict.src.txt")
    save = tmp / "lora"
    cli("train", copy, *REVERSE_TRAIN, "--max-tokens", 2000, "--arch", "llama_diffusion_tiny",
        "--attention-strategy", "prefix_lm", "--finetune-from-model", llama_reverse, "--lora", "--lora-rank", 8,
        "--lora-target-modules", "q_proj,k_proj,v_proj,o_proj", "--lora-adapters-only", "--criterion", "diffusion_lm",
        "--lr", "5e-3", "--max-update", 200, "--disable-validation", "--save-dir", save)
    return save / "checkpoint_last.pt", llama_reverse, copy


def test_lora_adapts_the_model_to_a_new_task_and_leaves_its_weights_alone(lora_copier, tmp_path):
    """LoRA (r = 8 on the attention projections) on the reversing model, fine-tuned to *copy* the string
    instead: held-out BLEU on copying (100 strings) rises from the reverser's 13.0 to ≥ 50 (63.6 measured)
    while every base weight stays bit-identical; merging the adapters gives the same logits."""
    from fairseq.checkpoint_utils import load_checkpoint_to_cpu

    from fairseq_dlm.models.lora import merge_lora

    ckpt, llama_reverse, copy = lora_copier
    raw = copy.parent / "raw"
    m = _load(ckpt, copy)
    before, after = _bleu(_load(llama_reverse, copy), raw), _bleu(m, raw)
    assert before < 20 and after >= 50, (before, after)

    # the checkpoint holds the adapters and a fingerprint of the frozen weights, which come back from the base
    base = load_checkpoint_to_cpu(str(llama_reverse))["model"]
    saved = load_checkpoint_to_cpu(str(ckpt))
    tuned, fingerprint = saved["model"], saved["cfg"]["model"]["lora_base_fingerprint"]
    assert sorted({k.split(".self_attn.")[1].split(".")[0] for k in tuned}) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert all(".lora_" in k for k in tuned) and re.fullmatch(r"[0-9a-f]{40}", fingerprint)
    assert ckpt.stat().st_size < 0.5 * llama_reverse.stat().st_size
    for key, value in torch.nn.Module.state_dict(m.models[0]).items():  # the loaded model, base included
        if ".lora_" not in key:
            assert torch.equal(value, base[key.replace(".base_layer.", ".")]), key
    from fairseq_dlm.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist here"):  # the base moved: named, with the fix
        _load(ckpt, copy, lora_base=str(tmp_path / "moved.pt"))
    other = tmp_path / "other_base.pt"
    state = load_checkpoint_to_cpu(str(llama_reverse))
    state["model"]["hf.model.layers.0.self_attn.q_proj.weight"] = torch.randn_like(
        state["model"]["hf.model.layers.0.self_attn.q_proj.weight"])
    torch.save(state, other)
    with pytest.raises(ConfigError, match="fingerprints differ"):
        _load(ckpt, copy, lora_base=str(other))
    # fairseq-train resumes a compact checkpoint (its frozen weights read back from the recorded base and
    # checked); fairseq's EMA (--store-ema) keeps compact states too
    resumed = tmp_path / "resumed"
    shutil.copytree(ckpt.parent, resumed)
    cli("train", copy, *REVERSE_TRAIN, "--max-tokens", 2000, "--arch", "llama_diffusion_tiny", "--attention-strategy",
        "prefix_lm", "--lora", "--lora-rank", 8, "--lora-target-modules", "q_proj,k_proj,v_proj,o_proj",
        "--lora-adapters-only", "--criterion", "diffusion_lm", "--lr", "5e-3", "--max-update", 205,
        "--store-ema", "--ema-start-update", 201, "--disable-validation", "--save-dir", resumed)
    again = load_checkpoint_to_cpu(str(resumed / "checkpoint_last.pt"))
    assert again["optimizer_history"][-1]["num_updates"] == 205
    assert again["cfg"]["model"]["lora_base_fingerprint"] == fingerprint
    assert all(".lora_" in k for k in again["extra_state"]["ema"])
    # a random backbone cannot be read back: refused
    proc = cli("train", copy, *REVERSE_TRAIN, "--arch", "llama_diffusion_tiny", "--lora", "--lora-adapters-only",
               "--criterion", "diffusion_lm", "--max-update", 1, "--save-dir", tmp_path / "random", check=False)
    assert proc.returncode != 0 and "--finetune-from-model CKPT" in proc.stderr and "Traceback" not in proc.stderr

    net = m.models[0]
    row = _masked_row(m, "reverse : a b c =", 3)
    adapted = _logits(net, row, 6)
    assert merge_lora(net.hf) == 8  # 2 layers × 4 projections
    assert not any(".lora_" in k for k in net.state_dict())
    assert torch.allclose(adapted, _logits(net, row, 6), atol=1e-5)

    # scripts/export_hf.py --merge-lora: a plain HF LlamaForCausalLM directory with the same logits
    from fairseq_dlm.convert.export_hf import export_checkpoint

    report = export_checkpoint(str(ckpt), str(tmp_path / "hf"), merge_lora=True)
    assert report["max_positions"] == net.max_positions() and report["attention_strategy"] == "prefix_lm"
    assert report["lora_adapter"] is None and not (tmp_path / "hf" / "lora_adapter").exists()
    exported = _load(tmp_path / "hf", copy).models[0]
    assert exported.decoder_only and exported.prefix_lm and not any(".lora_" in k for k in exported.state_dict())
    assert torch.allclose(adapted, _logits(exported, row, 6), atol=1e-5)


def test_lora_export_writes_a_peft_adapter_folder(lora_copier, tmp_path):
    """Without --merge-lora: the base weights (bit-identical to the reverser's) and peft's own adapter folder,
    which ``PeftModel.from_pretrained`` puts on the exported model; the export converts back (and loads
    through ``DiffusionLM.from_pretrained``) as a LoRA model with the same logits."""
    from fairseq.checkpoint_utils import load_checkpoint_to_cpu
    from peft import PeftModel

    from fairseq_dlm.convert.export_hf import export_checkpoint

    ckpt, base_ckpt, data = lora_copier
    m = _load(ckpt, data)
    row = _masked_row(m, "reverse : a b c =", 3)
    adapted = _logits(m.models[0], row, 6)
    report = export_checkpoint(str(ckpt), str(tmp_path / "hf"))
    folder = tmp_path / "hf" / "lora_adapter"
    assert report["lora_adapter"] == "lora_adapter"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    # peft's own loading: the exported base model (bit-identical to the reverser's weights) + the folder
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    base = load_checkpoint_to_cpu(str(base_ckpt))["model"]
    assert torch.equal(hf.model.layers[1].self_attn.q_proj.weight, base["hf.model.layers.1.self_attn.q_proj.weight"])
    PeftModel.from_pretrained(hf, str(folder))  # injects the adapters into hf in place
    assert hasattr(hf.model.layers[1].self_attn.q_proj, "lora_A")
    # DiffusionLM.from_pretrained(export) and scripts/convert_checkpoint.py hf: back to a LoRA model
    from fairseq_dlm.convert.from_hf import convert_hf_dir

    back = _load(tmp_path / "hf", data).models[0]
    assert back.cfg.lora and back.cfg.lora_rank == 8
    assert torch.allclose(adapted, _logits(back, row, 6), atol=1e-5)
    back.hf = hf  # the same network with peft's loaded adapters
    assert torch.allclose(adapted, _logits(back, row, 6), atol=1e-5)
    assert convert_hf_dir(str(tmp_path / "hf"), str(tmp_path / "back"))["lora"]
