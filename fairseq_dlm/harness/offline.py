"""Offline lm-eval tasks: the paper's evaluation files (MMLU, BBH-NLP) and GSM8K read from a local
data folder instead of the HuggingFace hub.  The task configs are in ``tasks/`` (see its README);
this module builds their datasets (lm-eval's ``custom_dataset`` hook) and scores generated answers
with the rules of ``scripts/eval_instruct.py`` (:mod:`fairseq_dlm.metrics`), so the two agree.

The data folder holds ``paper-eval/`` (``mmlu/``, ``bbh-nlp/``) and ``gsm8k/`` — the layout of the
shared data folder (``../shared/data`` next to the repository).  It is, in order: the task metadata's
``data_root`` (``--metadata '{"data_root": "DIR"}'``), the environment variable
``FAIRSEQ_DLM_DATA``, or ``../shared/data`` next to the repository.  ``shots`` (metadata, default 0)
picks the paper's ``k-shot`` files, whose prompts already hold ``k`` demonstrations.
"""
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ..errors import MissingFileError
from ..metrics.answers import choice_correct, number_correct
from ..metrics.evalfiles import EvalFileError

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

ENV = "FAIRSEQ_DLM_DATA"
SHOTS = {"mmlu": (0, 1, 2, 3), "bbh": (0, 1, 2, 3)}


def find_data_root(data_root: Optional[str] = None) -> Path:
    """The folder holding ``paper-eval/`` and ``gsm8k/`` (see the module docstring)."""
    given = data_root or os.environ.get(ENV)
    root = Path(given) if given else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not root.is_dir():
        how = (f"it was given as {'data_root' if data_root else ENV}={given}" if given else
               "the default, ../shared/data next to the repository, is not there")
        raise MissingFileError(f"no evaluation data folder {root} ({how}): pass --metadata "
                               f"'{{\"data_root\": \"DIR\"}}' or set {ENV}=DIR, where DIR holds paper-eval/ and gsm8k/")
    return root


def _shot_folder(root: Path, bench: str, shots) -> Path:
    try:
        k = int(shots)
    except (TypeError, ValueError):
        k = None
    if k not in SHOTS[bench]:
        raise MissingFileError(f"{bench}: shots={shots!r} is not one of the paper's files "
                               f"({', '.join(map(str, SHOTS[bench]))}); pass --metadata '{{\"shots\": K}}'")
    return root / "paper-eval" / ("bbh-nlp" if bench == "bbh" else bench) / f"{k}-shot"


def _dataset(splits: Dict[str, List[dict]]):
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


def _choice_rows(path: Path, bench: str) -> List[dict]:
    """``{"inputs", "targets", "group", "choices", "label"}`` rows of a paper-eval file, read as
    ``eval_instruct.py`` reads it; rows without an answer are left out (logged), as its scores do.
    MMLU's options are A–D (its questions may hold other bracketed letters: "poly(A) tail")."""
    from ..evaluation import load_job

    data = load_job(str(path), bench).data
    rows, unanswered = [], 0
    for ex, group in zip(data.examples, data.groups):
        target = ex.targets.strip()
        if not target:
            unanswered += 1
            continue
        choices = list("ABCD") if bench == "mmlu" else option_letters(ex.inputs)
        if target not in choices:
            raise EvalFileError(f"{path}: the answer {target!r} of a row is not among its options "
                                   f"{choices}; the file is not in the paper's layout")
        rows.append({"inputs": ex.inputs, "targets": target, "group": group, "choices": choices,
                     "label": choices.index(target)})
    if unanswered:
        logger.warning("%s: %d of %d rows have no answer in the file and are left out (eval_instruct.py leaves "
                       "them out of its scores too)", path, unanswered, len(data.examples))
    return rows


def option_letters(prompt: str) -> List[str]:
    """``A`` up to the highest ``(X)`` of the prompt's last question (after its last `` Q:``; a
    few-shot prompt's demonstrations come before it): BBH's options, 2 to 18 of them."""
    found = re.findall(r"\(([A-Z])\)", prompt.rsplit(" Q:", 1)[-1])
    return [chr(c) for c in range(ord("A"), ord(max(found, default="A")) + 1)]


def mmlu(shots=0, data_root=None, **_) -> "datasets.DatasetDict":
    """MMLU validation (``paper-eval/mmlu/{k}-shot/val/full.jsonl``, 1,531 rows, 57 subjects)."""
    folder = _shot_folder(find_data_root(data_root), "mmlu", shots)
    return _dataset({"validation": _choice_rows(folder / "val" / "full.jsonl", "mmlu")})


def bbh(task: str, shots=0, data_root=None, **_) -> "datasets.DatasetDict":
    """One BBH-NLP task (``paper-eval/bbh-nlp/{k}-shot/validation/{task}.jsonl``)."""
    folder = _shot_folder(find_data_root(data_root), "bbh", shots)
    return _dataset({"validation": _choice_rows(folder / "validation" / f"{task}.jsonl", "bbh-nlp")})


def gsm8k(data_root=None, **_) -> "datasets.DatasetDict":
    """GSM8K test (1,319 rows; train for lm-eval's ``--num_fewshot``): ``question``, ``work`` (the
    worked solution on one line) and ``final`` (the answer), as the instruction mixture reads them."""
    from ..data.instruct_mixture import BuildError, read_gsm8k

    root = find_data_root(data_root)
    try:
        splits = {split: read_gsm8k(root, split) for split in ("test", "train")}
    except BuildError as e:
        raise MissingFileError(f"{e}; the data folder is given by --metadata '{{\"data_root\": \"DIR\"}}' or "
                               f"{ENV}") from None
    return _dataset({split: [{"question": q, "work": w, "final": f} for q, w, f in rows]
                     for split, rows in splits.items()})


# ------------------------------------------------------------------ lm-eval hooks (tasks/*.yaml)
def gsm8k_prompt(doc: dict) -> str:
    """The instruction mixture's GSM8K question template."""
    from ..data.instruct_templates import GSM8K_QUESTION

    return GSM8K_QUESTION.format(q=doc["question"])


def gsm8k_demo_target(doc: dict) -> str:
    """A demonstration's answer (lm-eval's ``--num_fewshot``): the worked solution, ``The answer is N.``"""
    from ..data.instruct_templates import gsm8k_target

    return gsm8k_target(doc["work"], doc["final"], demo=True)


def choice_results(doc: dict, results: List[str]) -> Dict[str, float]:
    """A generated answer is right when it names the reference option (``eval_instruct.py``'s rule)."""
    return {"acc": float(bool(choice_correct(results[0], doc["targets"])))}


def gsm8k_results(doc: dict, results: List[str]) -> Dict[str, float]:
    """Right when the answer's last number is the reference (MGSM's official rule)."""
    return {"acc": float(number_correct(results[0], doc["final"]))}
