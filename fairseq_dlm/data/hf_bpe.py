"""``--bpe hf_tokenizer``: fairseq's BPE interface over an HF ``tokenizer.json`` (:mod:`.subword`).

``fairseq-generate --bpe hf_tokenizer --hf-tokenizer-json PATH`` detokenizes hypotheses and
references through the tokenizer's own decoder (byte-level BPE reassembles its bytes), and
``fairseq-interactive`` encodes typed prompts with it, as ``--bpe sentencepiece`` does for
SentencePiece models.
"""
from dataclasses import dataclass, field

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass

from .subword import TokenizerJson, load_subword


@dataclass
class HFTokenizerBPEConfig(FairseqDataclass):
    hf_tokenizer_json: str = field(
        default="???", metadata={"help": "the backbone's HF tokenizer.json (byte-level BPE of Qwen2, GPT-2, "
                                         "LLaMA-3, …) whose tokens the dictionary holds"})


@register_bpe("hf_tokenizer", dataclass=HFTokenizerBPEConfig)
class HFTokenizerBPE:
    def __init__(self, cfg):
        self.subword = load_subword(cfg.hf_tokenizer_json)
        if not isinstance(self.subword, TokenizerJson):
            raise ValueError(f"--hf-tokenizer-json {cfg.hf_tokenizer_json}: not a tokenizer.json; use --bpe "
                             "sentencepiece for a SentencePiece model")

    def encode(self, x: str) -> str:
        return " ".join(self.subword.pieces(x))

    def decode(self, x: str) -> str:
        return self.subword.detokenize(x.split())

    def is_beginning_of_word(self, x: str) -> bool:
        return x.startswith("\u0120") or x.startswith("\u2581")
