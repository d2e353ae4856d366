"""The official trainer's LLaMA runs (``DiscreteDiffusionLlamaModel``) and LoRA adapter folders →
plugin checkpoints (``scripts/convert_checkpoint.py official``).

The release is written here in the official layout: a tiny HF ``LlamaForCausalLM`` (the module tree of
the official ``LlamaMaskedLM``: ``.model`` + ``.lm_head``) under ``model.``, its vocabulary resized as
``load_model_tokenizer`` resizes it (``<pad>`` and ``<mask>`` appended, initialised to the mean row),
transformers 4.28's saved ``rotary_emb.inv_freq`` buffers and the ``fake_layer``; LoRA runs as peft's
``get_peft_model_state_dict`` names the adapters (``base_model.model.`` + the official name).  The
reference logits are computed as the official ``LlamaNonCausalModel`` computes them: LLaMA with the
additive padding-only mask of ``_expand_mask`` (no causal mask), on the official token ids.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from test_official_import import batch, convert, load_plugin

R, ALPHA = 4, 8.0


def _official_mask(ids: torch.Tensor, pad: int) -> torch.Tensor:
    """``_expand_mask`` of the official ``LlamaNonCausalModel``: ``[B, 1, T, T]``, finfo.min at pad keys."""
    keep = ids.ne(pad)[:, None, None, :].expand(-1, 1, ids.size(1), -1).float()
    return (1.0 - keep).masked_fill((1.0 - keep).bool(), torch.finfo(torch.float32).min)


class OfficialLlama(nn.Module):
    """The module tree (hence the state-dict keys) of the official ``DiscreteDiffusionLlamaModel``."""

    def __init__(self, base_dir: Path, pieces: int):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.model = LlamaForCausalLM.from_pretrained(base_dir)
        self.pad = pieces  # <pad> and <mask> appended after the SentencePiece ids
        with torch.no_grad():  # load_model_tokenizer: resize, then the added rows take the mean row
            embed, head = self.model.get_input_embeddings().weight, self.model.get_output_embeddings().weight
            grown = [torch.cat([w, w.mean(0, keepdim=True).expand(2, -1)]) for w in (embed, head)]
            self.model.set_input_embeddings(nn.Embedding(*grown[0].shape))
            self.model.set_output_embeddings(nn.Linear(grown[1].shape[1], grown[1].shape[0], bias=False))
            self.model.get_input_embeddings().weight.copy_(grown[0])
            self.model.get_output_embeddings().weight.copy_(grown[1])
        self.model.config.vocab_size = pieces + 2

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(input_ids=ids, attention_mask=_official_mask(ids, self.pad)).logits


@pytest.fixture(scope="module")
def llama_base(tmp_path_factory, spm_model):
    """A tiny pretrained LLaMA folder (``tiny-llama``: the official code takes the LLaMA route by the name)."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    base = tmp_path_factory.mktemp("hub") / "tiny-llama"
    pieces = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=pieces, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                                 tie_word_embeddings=False)).save_pretrained(base)
    shutil.copy(spm_model, base / "tokenizer.model")
    return base, pieces


def _release(root: Path, base: Path, state: dict, model_args: dict = None, step: int = 300) -> Path:
    ckpt = root / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / ("adapter_model.bin" if any(k.startswith("base_model.") for k in state)
                              else "pytorch_model.bin"))
    args = {"model": {"pretrained": str(base), "attention_strategy": "full", "vocab_pad_to_multiple": 1,
                      **(model_args or {})}, "train": {"output_dir": str(root)}}
    (root / "args.json").write_text(json.dumps(args, indent=4), encoding="utf-8")
    return ckpt


def _compare(out: Path, ref: OfficialLlama) -> nn.Module:
    """The converted model's logits over its dictionary equal the official logits of the same tokens."""
    net, task = load_plugin(out / "checkpoint.pt")
    d = task.dictionary
    # the official id of every dictionary symbol, from the two tokenizers' own definitions
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece.bpe.model"))
    special = {"<s>": 1, "<pad>": ref.pad, "</s>": 2, "<unk>": 0, "<mask>": ref.pad + 1}
    rows = torch.tensor([special.get(s, sp.piece_to_id(s)) for s in d.symbols])
    assert len(d) == ref.pad + 2 and len(set(rows.tolist())) == len(d)
    tokens = batch(task, [9, 4, 12])
    tokens[:, 2:4] = d.index("<mask>")  # a diffusion input: masked slots among the tokens
    with torch.no_grad():
        ours = net(tokens)
    theirs = ref.logits(rows[tokens])[..., rows]
    valid = tokens.ne(d.pad())
    assert torch.allclose(ours[valid], theirs[valid], atol=1e-5), (ours[valid] - theirs[valid]).abs().max()
    return net


def test_llama_release_gives_the_official_logits_and_decodes(tmp_path, llama_base):
    base, pieces = llama_base
    torch.manual_seed(1)
    ref = OfficialLlama(base, pieces).eval()
    with torch.no_grad():  # "trained": every weight moved, the added rows too
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state = {k: v.clone() for k, v in ref.state_dict().items()}  # model.model.*, model.lm_head.weight
    for layer in range(2):  # what transformers 4.28 saved, and the LoRA-checkpointing helper
        state[f"model.model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    state["fake_layer"] = torch.zeros(32)
    _release(tmp_path / "run", base, state)
    proc = convert(tmp_path / "run", tmp_path / "out")
    assert "(llama, 2 × 32, vocabulary" in proc.stdout and "untied LM head, no length head" in proc.stdout
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert report["official_ids"] == {"<pad>": pieces, "<mask>": pieces + 1} and report["arch"] == "decoder_diffusion"
    net = _compare(tmp_path / "out", ref)
    assert net.decoder_only and not net.prefix_lm and net.max_positions() == 254

    from fairseq_dlm import DiffusionLM

    m = DiffusionLM.from_pretrained(str(tmp_path / "out"))
    out = m.generate(["der hund", "ein mann"], oracle_lengths=[3, 4], steps=2, return_dict=True)
    assert [o["length"] for o in out] == [3, 4] and all(isinstance(o["text"], str) for o in out)


def test_llama_lora_adapter_folder_keeps_the_adapters_and_gives_the_official_logits(tmp_path, llama_base):
    base, pieces = llama_base
    ref = OfficialLlama(base, pieces).eval()  # frozen: the pretrained weights, the mean rows
    torch.manual_seed(2)
    adapters, targets = {}, ("q_proj", "v_proj")
    for layer in range(2):
        for t in targets:
            linear = ref.model.model.layers[layer].self_attn.get_submodule(t)
            a, b = torch.randn(R, linear.in_features) * 0.2, torch.randn(linear.out_features, R) * 0.2
            name = f"model.model.layers.{layer}.self_attn.{t}"
            adapters[f"base_model.model.{name}.lora_A.weight"] = a
            adapters[f"base_model.model.{name}.lora_B.weight"] = b
            with torch.no_grad():
                linear.weight.add_((ALPHA / R) * b @ a)  # the reference runs the merged weights
    ckpt = _release(tmp_path / "run", base, adapters, {"lora": True, "lora_rank": R})
    (ckpt / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "TOKEN_CLS", "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.05,
         "target_modules": list(targets), "bias": "none", "base_model_name_or_path": str(base)}))
    proc = convert(tmp_path / "run", tmp_path / "out")
    assert "LoRA r=4 on q_proj,v_proj" in proc.stdout
    net = _compare(tmp_path / "out", ref)
    from transformers import LlamaForCausalLM

    pretrained = LlamaForCausalLM.from_pretrained(base)
    q = net.hf.model.layers[1].self_attn.q_proj
    assert torch.equal(q.base_layer.weight, pretrained.model.layers[1].self_attn.q_proj.weight)  # frozen base kept
    assert net.cfg.lora and net.cfg.lora_rank == R and net.cfg.lora_alpha == ALPHA

    # the adapters alone cannot be placed without the base model
    (tmp_path / "run" / "args.json").write_text(json.dumps({"model": {"pretrained": "meta/llama-7b-hf"}}))
    proc = convert(tmp_path / "run", tmp_path / "out2", check=False)
    assert proc.returncode == 2 and "LoRA adapters only" in proc.stderr and "--base-model DIR" in proc.stderr
    assert "Traceback" not in proc.stderr
    # vocab_pad_to_multiple > 1: rows the official code drew at random and never saved
    (tmp_path / "run" / "args.json").write_text(json.dumps({"model": {"pretrained": "meta/llama-7b-hf",
                                                                      "vocab_pad_to_multiple": 64}}))
    proc = convert(tmp_path / "run", tmp_path / "out2", "--base-model", base, check=False)
    assert proc.returncode == 2 and "cannot be rebuilt" in proc.stderr


def test_llama_attention_flags_that_do_not_convert(tmp_path, llama_base):
    base, _ = llama_base
    for strategy, reason in (("prefix_lm", "adds its 3-D 0/1 attention mask"), ("causal", "autoregressive LLaMA")):
        root = tmp_path / strategy
        _release(root, base, {"model.model.embed_tokens.weight": torch.zeros(3, 2)}, {"attention_strategy": strategy})
        proc = convert(root, tmp_path / "out", check=False)
        assert proc.returncode == 2 and reason in proc.stderr, proc.stderr
