"""Vocabulary pruning: the task dictionary is mapped onto the backbone vocabulary by piece."""
import random

import pytest
import sentencepiece as spm
import torch
from fairseq.data import Dictionary
from transformers import XLMRobertaForMaskedLM

from fairseq_dlm.models.backbone import load_pretrained
from fairseq_dlm.models.vocab import load_backbone_vocab, map_dictionary
from fairseq_dlm.models.xlmr_diffusion import XLMRDiffusionConfig, XLMRDiffusionModel


def _pruned_dictionary(spm_model, n_keep=30, seed=0):
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    random.Random(seed).shuffle(pieces)
    d = Dictionary()
    for p in pieces[:n_keep]:
        d.add_symbol(p)
    d.add_symbol("madeupword0000")
    d.add_symbol("<mask>")
    return d


def test_spm_vocab_follows_xlmr_convention(tiny_pretrained, spm_model):
    vocab = load_backbone_vocab(str(tiny_pretrained))
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    assert [vocab[s] for s in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab[sp.id_to_piece(5)] == 6  # HF id = spm id + 1
    assert vocab["<mask>"] == sp.get_piece_size() + 1


def test_pruned_logits_equal_full_logits(tiny_pretrained, spm_model):
    d = _pruned_dictionary(spm_model)
    cfg = XLMRDiffusionConfig(pretrained=str(tiny_pretrained), dropout=0.0, attention_dropout=0.0)
    hf = load_pretrained(str(tiny_pretrained), list(d.symbols), cfg)
    model = XLMRDiffusionModel(cfg, hf, d).eval()
    full = XLMRobertaForMaskedLM.from_pretrained(tiny_pretrained).eval()
    rows, missing = map_dictionary(list(d.symbols), load_backbone_vocab(str(tiny_pretrained)))
    assert missing == ["madeupword0000"]
    assert not model.hf.config.tie_word_embeddings, "a pruned vocabulary is untied (SPEC §2.2)"

    gen = torch.Generator().manual_seed(0)
    kept = torch.arange(4, len(d) - 2)  # ordinary pieces of the pruned dictionary
    ids = kept[torch.randint(0, len(kept), (3, 12), generator=gen)]
    ids[:, 0], ids[:, -1] = d.bos(), d.eos()
    ids[2, 8:] = d.pad()
    positions = ids.ne(d.pad())
    with torch.no_grad():
        pruned_logits = model(ids, positions=positions)  # [n, V_dict]
        full_logits = full(input_ids=rows[ids], attention_mask=positions.long()).logits[positions]
    assert pruned_logits.shape == (int(positions.sum()), len(d))
    torch.testing.assert_close(pruned_logits, full_logits[:, rows], rtol=1e-5, atol=1e-5)


def test_full_dictionary_stays_tied(tiny_pretrained, spm_model):
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    d = Dictionary()  # <s> <pad> </s> <unk>, then every piece in HF order, then <mask>
    for i in range(3, sp.get_piece_size()):
        d.add_symbol(sp.id_to_piece(i))
    d.add_symbol("<mask>")
    cfg = XLMRDiffusionConfig(pretrained=str(tiny_pretrained))
    hf = load_pretrained(str(tiny_pretrained), list(d.symbols), cfg)
    assert hf.lm_head.decoder.weight is hf.roberta.embeddings.word_embeddings.weight
    assert hf.lm_head.bias is hf.lm_head.decoder.bias


def test_missing_pretrained_dir_is_a_clear_error(tmp_path):
    cfg = XLMRDiffusionConfig(pretrained=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_pretrained(cfg.pretrained, ["<s>"], cfg)
    (tmp_path / "cfgonly").mkdir()
    (tmp_path / "cfgonly" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="none of tokenizer.json, sentencepiece.bpe.model, tokenizer.model"):
        load_pretrained(str(tmp_path / "cfgonly"), ["<s>"], cfg)


def test_backbone_layers_truncates_the_pretrained_encoder(tiny_pretrained, spm_model):
    from fairseq_dlm.models.backbone import build_backbone

    d = _pruned_dictionary(spm_model)
    cfg = XLMRDiffusionConfig(pretrained=str(tiny_pretrained), backbone_layers=1, dropout=0.0, attention_dropout=0.0)
    hf = build_backbone(cfg, list(d.symbols), d.pad())
    assert len(hf.roberta.encoder.layer) == 1 and hf.config.num_hidden_layers == 1
    full = XLMRobertaForMaskedLM.from_pretrained(tiny_pretrained)
    torch.testing.assert_close(hf.roberta.encoder.layer[0].state_dict(), full.roberta.encoder.layer[0].state_dict())
