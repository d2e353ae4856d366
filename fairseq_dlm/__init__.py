"""fairseq_dlm: diffusion language models from pretrained XLM-R, as a fairseq plugin.

Loaded by fairseq with ``--user-dir fairseq_dlm``; importing it registers the task
``diffusion_lm``, the model ``xlmr_diffusion`` (+ arch presets), the criterion ``diffusion_lm``,
the optimizer ``torch_adamw``, the LR scheduler ``log_warmup_constant`` and the scorer ``rouge``
(``fairseq-generate --scoring rouge``); :class:`DiffusionLM` is the Python API
(``DiffusionLM.from_pretrained(PATH).generate([...])``).
"""
from . import compat, errors

compat.install()
errors.install_cli_hook()  # fairseq-* tools: a UserError is one line, not a stack trace

from . import criterions, models, optim, tasks  # noqa: E402,F401
from .metrics import fairseq_scorers  # noqa: E402,F401
from .hub import DiffusionLM  # noqa: E402,F401

__version__ = "0.1.0"
