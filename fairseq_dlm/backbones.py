"""The backbone families by HuggingFace ``model_type`` (no torch or fairseq import: the recipes use it).

Encoders (XLM-R: ``xlm-roberta``, ``xlm-roberta-xl``) run as masked LMs; the decoder-only families run
bidirectionally as diffusion LMs (:mod:`fairseq_dlm.models.decoder_backbone`).
"""

DECODER_TYPES = ("llama", "qwen2", "mistral")


def is_decoder_type(model_type: str) -> bool:
    return str(model_type) in DECODER_TYPES
