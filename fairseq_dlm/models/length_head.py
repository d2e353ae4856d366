"""The length predictor, the only module the paper adds to XLM-R (SPEC §5).

::

    h      = backbone([<s>, prompt…]).last_hidden_state            # [B, P1, H], frozen
    h'     = TransformerEncoderLayer(H, heads, FFN, dropout, ReLU, post-LN)(h, key_padding_mask)
    logits = Linear(H, FFN) → Tanh → Linear(FFN, C) on mean_nonpad(h')   # [B, C], fp32
    class c ⇔ response length c + 1
"""
import torch
from torch import nn


class LengthHead(nn.Module):
    """Args: ``hidden`` H, ``heads``, ``ffn`` FFN, ``num_classes`` C (lengths ``1..C``)."""

    def __init__(self, hidden: int, heads: int, ffn: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=ffn, dropout=dropout, activation="relu", batch_first=True
        )
        self.mlp = nn.Sequential(nn.Linear(hidden, ffn), nn.Tanh(), nn.Linear(ffn, num_classes))

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``[B, P, H]``, ``padding_mask`` ``[B, P]`` (True = pad) → ``[B, C]`` float32 logits."""
        h = self.layer(hidden, src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.mlp(pooled).float()
