"""Per-sequence loss weights of the reparameterised objective (SPEC §4.3).

``w(t) = T - t + 1`` (``linear``; ``= T·λ_{t-1}`` with ``λ_{t-1} = 1 - (t-1)/T``) or ``w(t) = T``
(``constant``).  The loss of sequence ``j`` with masked set ``M_j`` and ``N_j`` maskable positions is
``w(t_j) · Σ_{n∈M_j} CE_n / N_j``; the batch loss is the mean over the ``2B`` coupled sequences.
"""
import torch

WEIGHTINGS = ("linear", "constant")


def timestep_weights(t: torch.Tensor, num_timesteps: int, kind: str = "linear") -> torch.Tensor:
    """``[B]`` float weights for timesteps ``t`` (``[B]`` long, ``1..T``)."""
    if kind == "linear":
        return (num_timesteps - t + 1).float()
    if kind == "constant":
        return torch.full_like(t, num_timesteps, dtype=torch.float)
    raise ValueError(f"unknown weighting {kind!r}; choose one of {WEIGHTINGS}")


def reweighted_loss(
    token_loss: torch.Tensor,
    seq_index: torch.Tensor,
    t: torch.Tensor,
    num_maskable: torch.Tensor,
    num_timesteps: int,
    kind: str = "linear",
    smooth_loss: torch.Tensor = None,
    epsilon: float = 0.0,
) -> torch.Tensor:
    """The batch loss ``L`` (or ``L_ls`` when ``epsilon > 0``), a scalar.

    Args:
        token_loss: ``[n]`` cross-entropy ``-log p(x0_n | x_t)`` at the masked positions.
        seq_index: ``[n]`` long, which of the ``S`` sequences each masked position belongs to.
        t: ``[S]`` timestep per sequence.
        num_maskable: ``[S]`` maskable positions ``N_j`` per sequence (clamped to ≥ 1).
        smooth_loss: ``[n]`` mean over the vocabulary of ``-log p(v | x_t)`` (label smoothing).
    Formula: ``L = (1/S) Σ_j w(t_j) Σ_{n∈M_j} CE_n / N_j`` and
    ``L_ls = (1-ε)·L + ε·(1/S) Σ_j T · Σ_{n∈M_j} smooth_n / N_j``.
    """
    nseq = t.numel()
    denom = num_maskable.clamp(min=1).to(token_loss.dtype)
    per_seq = token_loss.new_zeros(nseq).index_add_(0, seq_index, token_loss) / denom
    w = timestep_weights(t, num_timesteps, kind).to(token_loss.dtype)
    loss = (w * per_seq).sum() / nseq
    if epsilon > 0:
        assert smooth_loss is not None, "label smoothing needs smooth_loss"
        per_seq_s = token_loss.new_zeros(nseq).index_add_(0, seq_index, smooth_loss) / denom
        loss = (1 - epsilon) * loss + epsilon * (num_timesteps * per_seq_s).sum() / nseq
    return loss
