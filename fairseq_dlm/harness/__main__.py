"""``python -m fairseq_dlm.harness run --model fairseq_dlm --model_args path=CKPT --tasks ...``: lm-eval's
command line with this package's model registered and its offline tasks (``tasks/``: ``dlm_mmlu``,
``dlm_bbh``, ``dlm_gsm8k``, ...) on the task path, next to any ``--include_path`` of yours (several
folders: separate them with ``%s``)."""
import os

from . import model  # noqa: F401  (registers "fairseq_dlm" with lm-eval)
from .tasks import TASKS_DIR

__doc__ %= os.pathsep


def main() -> None:
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    parser = HarnessCLI()
    args = parser.parse_args()  # lm-eval's parser reads sys.argv
    if hasattr(args, "include_path"):  # run, ls, validate
        theirs = [p for p in (args.include_path or "").split(os.pathsep) if p]
        args.include_path = [str(TASKS_DIR), *theirs]
    parser.execute(args)


if __name__ == "__main__":
    main()
