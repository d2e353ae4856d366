"""The package imports lazily: text, recipe and preparation modules (and the scripts made of them)
start without torch or fairseq, and the plugin registers itself with fairseq whichever is imported
first."""
import subprocess
import sys

import pytest

from conftest import REPO

LIGHT_MODULES = [
    "fairseq_dlm", "fairseq_dlm.data", "fairseq_dlm.data.text", "fairseq_dlm.data.templates",
    "fairseq_dlm.data.prepare", "fairseq_dlm.data.download", "fairseq_dlm.data.instruct_mixture",
    "fairseq_dlm.data.jsonl_mixture", "fairseq_dlm.data.iwslt14", "fairseq_dlm.data.wmt14",
    "fairseq_dlm.data.gigaword", "fairseq_dlm.recipes.commands", "fairseq_dlm.convert.outputs",
    "fairseq_dlm.metrics", "fairseq_dlm.errors",
]
LIGHT_SCRIPTS = ["prepare_translation", "prepare_iwslt14", "prepare_wmt14", "prepare_gigaword", "paper_script",
                 "build_instruct_mixture", "download_flan_2022", "download_ckpts"]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_light_modules_and_scripts_import_neither_torch_nor_fairseq():
    code = ("import sys\nsys.path.insert(0, 'scripts')\n"
            + "".join(f"import {m}\n" for m in LIGHT_MODULES + LIGHT_SCRIPTS)
            + "print(sorted(m for m in ('torch', 'fairseq') if m in sys.modules))")
    assert _python(code) == "[]"


@pytest.mark.parametrize("order", ["plugin first", "fairseq first", "api"])
def test_the_plugin_registers_with_fairseq_in_any_import_order(order):
    first = {"plugin first": "import fairseq_dlm.data.text\nimport fairseq.tasks\n",
             "fairseq first": "import fairseq.tasks\nimport fairseq_dlm\n",
             "api": "from fairseq_dlm import DiffusionLM\nimport fairseq.tasks\n"}[order]
    out = _python(first + "from fairseq.tasks import TASK_REGISTRY\nfrom fairseq.models import ARCH_MODEL_REGISTRY\n"
                  "from fairseq.criterions import CRITERION_REGISTRY\nimport fairseq.checkpoint_utils as cu\n"
                  "print('diffusion_lm' in TASK_REGISTRY, 'diffusion_instruct' in TASK_REGISTRY,\n"
                  "      'xlmr_diffusion_tiny' in ARCH_MODEL_REGISTRY, 'diffusion_length' in CRITERION_REGISTRY,\n"
                  "      type(cu.torch).__name__)")
    assert out.splitlines()[-1] == "True True True True _TorchProxy"  # registered, and the loading shim installed
