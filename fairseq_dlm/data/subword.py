"""The backbone's subword model: raw text ↔ the pieces a fairseq dictionary holds.

Two kinds, chosen by the file:

* **SentencePiece** (``*.model``: XLM-R's ``sentencepiece.bpe.model``, LLaMA's ``tokenizer.model``):
  pieces such as ``▁Hund``; text comes back by joining them and turning ``▁`` into spaces (fairseq's
  ``sentencepiece`` post-processing).
* **HF tokenizers** (``tokenizer.json``: the byte-level BPE of Qwen2, GPT-2, LLaMA-3, or any model of
  the ``tokenizers`` library): pieces are the tokenizer's own token strings (``Ġdog``; byte-level
  tokens hold no whitespace, so a dictionary line and a binarized line can carry them), and text
  comes back through the tokenizer's decoder (bytes reassembled), so nothing is lost on the way.

Dictionaries hold pieces, not ids: a decoder-only backbone's rows are gathered by piece
(:mod:`fairseq_dlm.models.vocab`), so any subset of the vocabulary works (``fairseq-preprocess``
builds one from the data; :meth:`vocabulary` lists all of them for a full one).
"""
import os
import re
from typing import List, Optional, Sequence

from ..errors import MissingFileError, UserError

SPM_FILE = "sentencepiece.bpe.model"  # XLM-R's SentencePiece model, and the name a data folder keeps one under
TOKENIZER_JSON = "tokenizer.json"  # an HF tokenizers model
# the file names a data or model folder holds the subword model under, in the order they are looked for
SUBWORD_FILES = (SPM_FILE, TOKENIZER_JSON)
FAIRSEQ_SYMBOLS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class SubwordError(UserError, ValueError):
    """A subword model that cannot be used; the message names the file."""


class SentencePieceModel:
    kind = "sentencepiece"

    def __init__(self, path: str):
        import sentencepiece as spm

        self.path = path
        try:
            self.sp = spm.SentencePieceProcessor(model_file=path)
        except (RuntimeError, OSError) as e:
            raise SubwordError(f"cannot load SentencePiece model {path} ({e})") from None

    def pieces(self, text: str) -> List[str]:
        return self.sp.encode(text, out_type=str)

    def pieces_batch(self, texts: Sequence[str], workers: int = 1) -> List[List[str]]:
        return self.sp.encode(list(texts), out_type=str, num_threads=workers)

    def detokenize(self, pieces: Sequence[str]) -> str:
        return "".join(pieces).replace("\u2581", " ").strip()

    def vocabulary(self) -> List[str]:
        """Every piece after ``<unk> <s> </s>`` (ids 3…), in id order (XLM-R: dictionary index = HF id)."""
        return [self.sp.id_to_piece(i) for i in range(3, self.sp.get_piece_size())]


class TokenizerJson:
    kind = "hf_tokenizer"

    def __init__(self, path: str):
        from tokenizers import Tokenizer

        self.path = path
        try:
            self.tok = Tokenizer.from_file(path)
        except Exception as e:  # noqa: BLE001  (tokenizers raises its own Exception subclass)
            raise SubwordError(f"cannot load the HF tokenizer {path} ({str(e).splitlines()[0]}): not a "
                               "tokenizer.json of the tokenizers library") from None
        self.vocab = self.tok.get_vocab(with_added_tokens=True)

    def pieces(self, text: str) -> List[str]:
        return self.tok.encode(text, add_special_tokens=False).tokens

    def pieces_batch(self, texts: Sequence[str], workers: int = 1) -> List[List[str]]:
        return [e.tokens for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def detokenize(self, pieces: Sequence[str]) -> str:
        """The tokenizer's decoder on the pieces it knows; a piece it does not (``<unk>``, ``<mask>``) is
        written as itself, between the decoded stretches."""
        out, run = [], []
        for p in pieces:
            if p in self.vocab:
                run.append(self.vocab[p])
                continue
            if run:
                out.append(self.tok.decode(run, skip_special_tokens=False))
                run = []
            out.append(f" {p} ")
        if run:
            out.append(self.tok.decode(run, skip_special_tokens=False))
        return re.sub(r" {2,}", " ", "".join(out)).strip()

    def vocabulary(self) -> List[str]:
        """Every token in id order, except fairseq's own symbols; refused when a token holds whitespace
        (it could not be a dictionary line)."""
        tokens = sorted(self.vocab, key=self.vocab.get)
        spaced = [t for t in tokens if t != t.strip() or len(t.split()) != 1]
        if spaced:
            raise SubwordError(f"{self.path} has tokens with whitespace ({spaced[:3]}): its pieces cannot be written "
                               "to a fairseq dictionary (byte-level BPE tokenizers have none)")
        return [t for t in tokens if t not in FAIRSEQ_SYMBOLS]


def is_tokenizer_json(path: Optional[str]) -> bool:
    """Whether the subword model file ``path`` is an HF tokenizer.json (else a SentencePiece model)."""
    return bool(path) and str(path).endswith(".json")


def load_subword(path: str):
    """The subword model of ``path``: :class:`TokenizerJson` for a ``.json`` file, else :class:`SentencePieceModel`."""
    if not path or not os.path.isfile(path):
        raise MissingFileError(f"no subword model at {path}: pass the backbone's sentencepiece.bpe.model / "
                               "tokenizer.model (SentencePiece) or tokenizer.json (HF tokenizers)")
    return TokenizerJson(path) if is_tokenizer_json(path) else SentencePieceModel(path)


def find_subword(folder: Optional[str]) -> Optional[str]:
    """The first of :data:`SUBWORD_FILES` in ``folder``, or None."""
    for name in SUBWORD_FILES:
        if folder and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None
