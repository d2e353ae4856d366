"""fairseq_dlm: diffusion language models from pretrained XLM-R, as a fairseq plugin.

Loaded by fairseq with ``--user-dir fairseq_dlm``; it registers the task ``diffusion_lm`` (and
``diffusion_instruct``), the model ``xlmr_diffusion`` (+ arch presets), the criteria
``diffusion_lm``/``diffusion_length``, the optimizer ``torch_adamw``, the LR scheduler
``log_warmup_constant``, the scorer ``rouge`` (``fairseq-generate --scoring rouge``) and the BPE
``hf_tokenizer`` (an HF ``tokenizer.json``);
:class:`DiffusionLM` is the Python API (``DiffusionLM.from_pretrained(PATH).generate([...])``).

Importing the package itself is light: the modules that need neither torch nor fairseq (text
preparation, templates, recipes, metrics on strings) import without them.  The plugin registers
itself with fairseq (:func:`register`) as soon as both are loaded, whichever comes first: at once
when fairseq is imported already (``--user-dir``, or ``import fairseq`` before), else when fairseq
is imported later; ``fairseq_dlm.DiffusionLM`` registers it too.
"""
import importlib.abc
import importlib.util
import sys

from . import errors

__version__ = "0.1.0"
_REGISTERED = False


def register() -> None:
    """Install the fairseq compatibility shims and register every component (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from . import compat

    compat.install()
    errors.install_cli_hook()  # fairseq-* tools: a UserError is one line, not a stack trace
    from . import criterions, models, optim, tasks  # noqa: F401
    from .data import hf_bpe  # noqa: F401  (--bpe hf_tokenizer)
    from .metrics import fairseq_scorers  # noqa: F401


def __getattr__(name: str):
    if name == "DiffusionLM":
        register()
        from .hub import DiffusionLM

        return DiffusionLM
    raise AttributeError(f"module 'fairseq_dlm' has no attribute {name!r}")


class _RegisterAfterFairseq(importlib.abc.MetaPathFinder):
    """Runs :func:`register` right after the top-level ``fairseq`` module is executed (once).

    fairseq imports a ``--user-dir`` only when it is not in ``sys.modules`` yet, so a process that
    imported a light module of this package first would otherwise never register the plugin."""

    def find_spec(self, name, path=None, target=None):
        if name != "fairseq":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        register()

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self.loader, name)


if "fairseq" in sys.modules:
    register()
else:
    sys.meta_path.insert(0, _RegisterAfterFairseq())
