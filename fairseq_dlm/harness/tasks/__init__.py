"""lm-eval task configs that read local files (see :mod:`fairseq_dlm.harness.offline`); give this
folder to lm-eval's ``TaskManager(include_path=TASKS_DIR)`` (``python -m fairseq_dlm.harness`` does)."""
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
