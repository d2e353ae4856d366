"""Mapping a fairseq dictionary onto a pretrained backbone's vocabulary (SPEC §2.2).

``row[i] = hf_vocab.get(dictionary[i], hf_unk)``: every dictionary symbol is looked up by its
SentencePiece piece; symbols the backbone does not know (e.g. fairseq's ``madeupword*``
padding symbols) fall back to the backbone's ``<unk>`` row and are counted.
"""
import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import ConfigError, MissingFileError

logger = logging.getLogger(__name__)

XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def load_backbone_vocab(pretrained_dir: str) -> Dict[str, int]:
    """Piece → backbone id for a local HF directory.

    Reads ``tokenizer.json`` (exact ids) when present, else ``sentencepiece.bpe.model`` with
    XLM-R's fairseq convention (``<s>``=0 ``<pad>``=1 ``</s>``=2 ``<unk>``=3, SentencePiece
    piece ``i ≥ 3`` → ``i + 1``, ``<mask>`` last), else ``tokenizer.model`` (LLaMA's SentencePiece
    model: piece ``i`` → id ``i``).
    """
    tok_json = os.path.join(pretrained_dir, "tokenizer.json")
    spm_path = os.path.join(pretrained_dir, "sentencepiece.bpe.model")
    if os.path.isfile(tok_json):
        with open(tok_json, encoding="utf-8") as f:
            tokenizer = json.load(f)
        vocab = tokenizer["model"]["vocab"]
        if isinstance(vocab, dict):  # BPE/WordPiece style
            mapping = dict(vocab)
        else:  # Unigram: list of [piece, score], index = id
            mapping = {piece: i for i, (piece, _) in enumerate(vocab)}
        for tok in tokenizer.get("added_tokens", []):
            mapping.setdefault(tok["content"], tok["id"])
        return mapping
    if os.path.isfile(spm_path):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=spm_path)
        mapping = {s: i for i, s in enumerate(XLMR_SPECIALS)}
        for i in range(3, sp.get_piece_size()):
            mapping.setdefault(sp.id_to_piece(i), i + 1)
        mapping["<mask>"] = sp.get_piece_size() + 1
        return mapping
    llama_spm = os.path.join(pretrained_dir, "tokenizer.model")
    if os.path.isfile(llama_spm):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=llama_spm)
        return {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    raise MissingFileError(
        f"cannot map the dictionary onto the backbone vocabulary: {pretrained_dir} has none of "
        "tokenizer.json, sentencepiece.bpe.model, tokenizer.model; copy the tokenizer files of the checkpoint "
        "into that directory"
    )


def map_dictionary(symbols: List[str], vocab: Dict[str, int]) -> Tuple[torch.Tensor, List[str]]:
    """``(rows, missing)``: ``rows`` ``[len(symbols)]`` long backbone ids; ``missing`` symbols → ``<unk>``."""
    unk = vocab.get("<unk>", 3)
    rows, missing = [], []
    for sym in symbols:
        idx = vocab.get(sym)
        if idx is None:
            missing.append(sym)
            idx = unk
        rows.append(idx)
    return torch.tensor(rows, dtype=torch.long), missing


def report_missing(missing: List[str], total: int, source: str) -> None:
    """Log how many dictionary symbols had no backbone row (madeupword* padding is expected)."""
    if not missing:
        logger.info("all %d dictionary symbols found in the backbone vocabulary of %s", total, source)
        return
    padding = [m for m in missing if m.startswith("madeupword")]
    other = [m for m in missing if not m.startswith("madeupword")]
    logger.warning(
        "%d of %d dictionary symbols are not in the backbone vocabulary of %s and use its <unk> "
        "row (%d are fairseq madeupword padding symbols; others: %s)",
        len(missing), total, source, len(padding), other[:10],
    )


def dictionary_fingerprint(symbols: List[str]) -> str:
    """A stable hash of the dictionary's symbols (order included)."""
    return hashlib.sha1("\n".join(symbols).encode("utf-8")).hexdigest()


def check_dictionary(saved: dict, symbols: List[str], path: Optional[str] = None) -> None:
    """Fail clearly when ``symbols`` (the data's dictionary + ``<mask>``) is not the dictionary the
    checkpoint (whose ``backbone_state`` is ``saved``) was trained with; ``path`` names the file."""
    if saved.get("dictionary") == dictionary_fingerprint(symbols):
        return
    where = f" ({saved['source']})" if saved.get("source") else ""
    raise ConfigError(
        f"dictionary mismatch: the checkpoint{where} was trained with a dictionary of {saved.get('dictionary_size')} "
        f"symbols, but {path or 'the data dictionary'} (+<mask>) has {len(symbols)} symbols"
        + (" with different entries" if saved.get("dictionary_size") == len(symbols) else "")
        + ". Decode with the data folder (dict.*.txt) that the model was trained on, or binarize your "
        "data with fairseq-preprocess --srcdict <that dict.txt> --joined-dictionary"
    )
