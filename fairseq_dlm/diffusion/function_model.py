"""Any function as a denoising network: decode with a model outside fairseq, or a stub in tests."""
from typing import Optional

import torch

from ..errors import ConfigError


class FunctionDenoiser:
    """Any ``denoise_fn(tokens [B, L]) -> log-probs (or logits) [B, L, V]`` as a network the
    generator can decode with (``generator.generate([FunctionDenoiser(fn)], sample)``): a stub in
    tests, or a model outside fairseq.  It has no length head, so decode with ``oracle_length``
    (or give it ``length_fn(prompt [B, P1]) -> [B, C]`` length logits).

    Args:
        denoise_fn: the network; rows are canvases ``[<s>, prompt…, slots…, </s>, <pad>…]``.
        max_positions: tokens per sequence it accepts (``<s>``/``</s>`` included).
        length_fn: optional length predictor.
    """

    def __init__(self, denoise_fn, max_positions: int = 512, length_fn=None):
        self.denoise_fn, self._max_positions, self.length_fn = denoise_fn, max_positions, length_fn

    def __call__(self, tokens: torch.Tensor, positions: Optional[torch.Tensor] = None,
                 prompt_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[n, V]`` at ``positions`` (``[B, L, V]`` without); ``prompt_mask`` is not used."""
        out = self.denoise_fn(tokens)
        return out if positions is None else out[positions]

    def eval(self):
        return self

    def max_positions(self) -> int:
        return self._max_positions

    def predict_length(self, prompt: torch.Tensor) -> torch.Tensor:
        if self.length_fn is None:
            raise ConfigError("this denoise_fn has no length predictor: decode with oracle_length=True or pass length_fn")
        return self.length_fn(prompt)
