"""Raw text → token ids of the backbone's vocabulary, and fitting an example into the positions.

Instruction data (jsonl) is tokenised on the fly with the backbone's subword model (SentencePiece, or
an HF ``tokenizer.json``: :mod:`.subword`) and a fairseq dictionary of its pieces (XLM-R's full
``dict.txt``: ids equal the HF ids).
"""
import logging
import os
from typing import Optional, Tuple

import torch

from ..errors import MissingFileError
from .subword import load_subword

logger = logging.getLogger(__name__)


class PieceEncoder:
    """``encode(text) -> [n+1]`` long ids (pieces, then ``</s>``) with the backbone's subword model."""

    def __init__(self, spm_model: str, dictionary):
        if not os.path.isfile(spm_model):
            raise MissingFileError(
                f"no subword model at {spm_model}: copy the backbone's sentencepiece.bpe.model (or its HF "
                "tokenizer.json) there, or pass --spm-model PATH"
            )
        self.subword = load_subword(spm_model)
        self.dictionary = dictionary

    def encode(self, text: str) -> torch.Tensor:
        pieces = self.subword.pieces(text)
        return self.dictionary.encode_line(" ".join(pieces), add_if_not_exist=False, append_eos=True).long()


def fit_example(prompt: torch.Tensor, response: torch.Tensor, max_positions: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Fit ``[<s>, prompt…, response…, </s>]`` into ``max_positions`` (SPEC §2.4).

    ``prompt`` ``[P+1]`` and ``response`` ``[M+1]`` end with ``</s>``; the sequence needs
    ``P + M + 2`` positions.  The prompt loses its *oldest* tokens (``<s>`` is added later, so it is
    kept); an example whose response leaves no room for one prompt token (``M + 3 > max_positions``)
    is dropped (None).  Returns ``(prompt, response)``, the prompt possibly shortened."""
    room = max_positions - 2 - (response.numel() - 1)  # prompt tokens that fit
    if room < 1:
        return None
    body = prompt[:-1]
    if body.numel() > room:
        prompt = torch.cat([body[-room:], prompt[-1:]])
    return prompt, response
