"""Dynamic int8 quantisation of the backbone for CPU decoding (``--quantize-dynamic``).

torch's own ``torch.ao.quantization.quantize_dynamic``: every ``nn.Linear`` of the HF masked LM
(attention projections, feed-forward layers, the LM head's dense layer and decoder) becomes a
dynamically quantised int8 linear layer — weights stored in int8, activations quantised per batch
on the fly, accumulation in int32, output in float.  Embeddings, layer norms and the length head
stay in float32.  Inference only (the weights are replaced in place), CPU only (torch's dynamic
int8 kernels are fbgemm/x86 CPU kernels).
"""
import logging

import torch
from torch import nn

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def quantize_dynamic_int8(model) -> None:
    """Quantise ``model.hf``'s linear layers in place (once; a second call does nothing)."""
    if getattr(model, "quantized_int8", False):
        return
    param = next(model.parameters())
    if param.device.type != "cpu":
        raise ConfigError(f"--quantize-dynamic is for CPU decoding (torch's dynamic int8 kernels run on the CPU), but "
                          f"the model is on {param.device}; drop the flag, or decode with --cpu")
    before = sum(p.numel() * p.element_size() for p in model.hf.parameters())
    linear = sum(isinstance(m, nn.Linear) for m in model.hf.modules())
    torch.ao.quantization.quantize_dynamic(model.hf, {nn.Linear}, dtype=torch.qint8, inplace=True)
    model.quantized_int8 = True
    logger.info("--quantize-dynamic: %d linear layers of the backbone in int8 (float32 weights were %.1f MB)",
                linear, before / 1e6)
