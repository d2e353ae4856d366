"""Optimizer and LR scheduler plugins; importing this package registers them.

* ``--optimizer torch_adamw``: decoupled AdamW on torch's fused / foreach kernels
  (apex ``FusedAdam`` when apex is importable), see :mod:`.torch_adamw`.
* ``--lr-scheduler log_warmup_constant``: logarithmic warmup, then a constant LR
  (SPEC §8), see :mod:`.log_warmup_constant`.
"""

from fairseq_dlm.optim import log_warmup_constant, torch_adamw  # noqa: F401
