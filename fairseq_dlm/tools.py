"""Locating fairseq's command-line tools for the scripts that drive them."""
import shutil
import sys
from pathlib import Path


def fairseq_tool(name: str) -> str:
    """``fairseq-*`` next to the running Python (a venv), else on ``PATH`` (e.g. the GPU kit's)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)
