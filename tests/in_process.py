"""Run a fairseq console script's ``cli_main`` in the test process, as the console script would run.

What a fresh process gives a command and this restores around each run:

* ``sys.argv`` (``fairseq-<tool> ARGS``), ``sys.stdin`` (``input``), ``sys.stdout``/``sys.stderr``
  (captured); the root logger's handlers, replaced by one that writes where and as the console
  script's logs go (see ``TRAIN_FORMAT``);
* the exit status: ``SystemExit`` codes, 1 for an exception, whose trace goes to stderr unless it is
  a :class:`fairseq_dlm.errors.UserError`, printed as the plugin's exception hook prints it
  (``fairseq-train: error: MESSAGE``);
* what runs at interpreter exit: ``atexit`` callbacks registered during the run are called at its
  end (fairseq-generate's skipped-examples line comes after the score line), and fairseq's data
  threads are stopped;
* process-wide settings a command may change: torch's deterministic-algorithms flag and thread
  count, the environment, ``--trust-checkpoint``, and fairseq's best validation score so far
  (``checkpoint_utils.save_checkpoint.best``, which decides whether ``checkpoint_best.pt`` is written).

One difference is chosen: unless the test passes ``--num-workers``, batches are loaded in the
process (``--num-workers 0``; the same batches).  fairseq's default of one DataLoader worker would
fork the test process, and a worker left by a run stopped at ``--max-update`` is joined when its
iterator is garbage-collected, seconds later, in the middle of another test.
"""
import atexit
import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
import warnings

MODULES = {"train": "fairseq_cli.train", "generate": "fairseq_cli.generate", "preprocess": "fairseq_cli.preprocess",
           "interactive": "fairseq_cli.interactive", "validate": "fairseq_cli.validate"}
# where the console scripts' logs go: fairseq_cli/train.py configures the root logger (stdout, this format)
# before importing fairseq; the other tools import fairseq first, which configures it as logging's default
# (stderr, "LEVEL:name:message"), so their own logging.basicConfig(stream=sys.stdout) changes nothing
TRAIN_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


def run(tool: str, args, input=None) -> subprocess.CompletedProcess:
    import torch

    import fairseq_dlm

    fairseq_dlm.register()  # what --user-dir imports; its shims installed once
    from fairseq_dlm import compat, errors, safe_load

    main = importlib.import_module(MODULES[tool]).cli_main
    name = f"fairseq-{tool}"
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handler = logging.StreamHandler(out if tool == "train" else err)
    handler.setFormatter(logging.Formatter(TRAIN_FORMAT, datefmt="%Y-%m-%d %H:%M:%S") if tool == "train"
                         else logging.Formatter(logging.BASIC_FORMAT))
    at_exit, register = [], atexit.register
    saved = (sys.argv, sys.stdin, dict(os.environ), torch.are_deterministic_algorithms_enabled(),
             torch.get_num_threads())
    code = 0
    _forget_best()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    atexit.register = lambda fn, *a, **k: (at_exit.append((fn, a, k)), fn)[1]
    if tool in ("train", "generate", "validate", "interactive") and "--num-workers" not in args:
        args = [*args, "--num-workers", "0"]
    sys.argv, sys.stdin = [name, *args], io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    err.write(e.code + "\n")
            except Exception as e:  # noqa: BLE001  (what the interpreter would report; Ctrl-C still stops pytest)
                code = 1
                user_error = errors.user_error_in(e)
                if user_error is None:
                    traceback.print_exception(e, file=err)
                else:
                    err.write(f"{name}: error: {user_error}\n")
            finally:
                for fn, a, k in reversed(at_exit):
                    fn(*a, **k)
                compat.stop_data_threads()
                handler.flush()
    finally:
        atexit.register = register
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.argv, sys.stdin = saved[0], saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
        torch.use_deterministic_algorithms(saved[3])
        torch.set_num_threads(saved[4])
        safe_load.set_trusted(False)
        _forget_best()
    return subprocess.CompletedProcess([name, *args], code, out.getvalue(), err.getvalue())


def _forget_best() -> None:
    """fairseq keeps the best validation score of the process on a function attribute."""
    from fairseq import checkpoint_utils

    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best
