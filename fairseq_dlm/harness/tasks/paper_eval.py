"""The functions the task configs of this folder name with ``!function paper_eval.NAME`` (lm-eval
imports this file by its path); they live in :mod:`fairseq_dlm.harness.offline`."""
from fairseq_dlm.harness.offline import (bbh, choice_results, gsm8k, gsm8k_demo_target, gsm8k_prompt,
                                         gsm8k_results, mmlu)

__all__ = ["bbh", "choice_results", "gsm8k", "gsm8k_demo_target", "gsm8k_prompt", "gsm8k_results", "mmlu"]
