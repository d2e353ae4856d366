"""The fairseq dictionary of a diffusion model, in one place: its layout (fairseq's four specials
first, ``<mask>`` last), loading it, and writing ``dict.txt`` lines.  fairseq is imported only by
:func:`load_dictionary`, SentencePiece only by :func:`full_dictionary_lines`."""
import os
from typing import List

from ..errors import MissingFileError

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's (and XLM-R's) first four symbols
MASK = "<mask>"  # appended by the tasks; the last symbol


def load_dictionary(path: str):
    """A fairseq ``Dictionary`` with ``<mask>`` (added when missing); ``.path`` names its file."""
    from fairseq.data import Dictionary

    if not os.path.isfile(path):
        raise MissingFileError(
            f"no dictionary at {path}: binarize the data with `fairseq-preprocess --joined-dictionary "
            f"--destdir {os.path.dirname(path) or '.'} ...` (it writes dict.<lang>.txt)"
        )
    dictionary = Dictionary.load(path)
    if MASK not in dictionary.indices:
        dictionary.add_symbol(MASK)
    dictionary.path = path  # named in errors about it
    return dictionary


def full_dictionary_lines(spm_model: str) -> List[str]:
    """XLM-R's ``dict.txt`` for a SentencePiece model: pieces ``3..n-1``, one ``piece 1`` line each.

    With fairseq's four specials in front and ``<mask>`` appended, dictionary index ``i`` is the HF
    XLM-R tokenizer's id ``i`` (``<s> <pad> </s> <unk>``, piece ``k ≥ 3`` → ``k + 1``, ``<mask>`` last)."""
    from .subword import SentencePieceModel

    return [f"{piece} 1\n" for piece in SentencePieceModel(spm_model).vocabulary()]


def dictionary_lines(dictionary, error=ValueError) -> List[str]:
    """The ``dict.txt`` lines (``symbol count``) of a task dictionary: the symbols after fairseq's
    four specials, without the ``<mask>`` the task appended (``error`` if the layout differs)."""
    symbols = list(dictionary.symbols)
    if symbols[:len(SPECIALS)] != list(SPECIALS) or symbols[-1] != MASK:
        raise error(f"the dictionary {getattr(dictionary, 'path', '')} does not have fairseq's layout "
                    f"(<s> <pad> </s> <unk> first, <mask> last): {symbols[:4]} … {symbols[-1]}")
    return [f"{s} {dictionary.count[i]}\n" for i, s in enumerate(symbols[len(SPECIALS):-1], len(SPECIALS))]
