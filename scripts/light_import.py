"""Load a standard-library-only module of ``fairseq_dlm`` without running ``fairseq_dlm/__init__.py``.

``import fairseq_dlm`` imports fairseq and torch: seconds of start-up, their warnings, and a root log
handler that would override a script's own log format.  The data-preparation scripts only need
modules such as ``fairseq_dlm.data.text``, ``fairseq_dlm.data.templates`` or
``fairseq_dlm.convert.outputs``, which import nothing heavy; this loads them by path from this
checkout, under their real names, so that their relative imports (``from .text import ...``) work.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fairseq_dlm"


def load_package_module(name: str):
    """``fairseq_dlm.<name>`` (e.g. ``"data.text"``), imported normally once the package is loaded."""
    full = f"fairseq_dlm.{name}"
    if full in sys.modules or "fairseq_dlm" in sys.modules:
        return importlib.import_module(full)
    if name != "errors":
        load_package_module("errors")  # the error base classes every module may import (stdlib only)
    spec = importlib.util.spec_from_file_location(full, PACKAGE / (name.replace(".", "/") + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise
    return module
