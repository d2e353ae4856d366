"""User mistakes, told as one message: the error classes' common base, and the fairseq CLIs' hook.

Every error this package raises for a mistake in what the user gave it (a flag, a file, a data
line, an API argument) is a :class:`UserError`, and its message names the flag or file and the fix.
In the ``fairseq-*`` command-line tools an uncaught :class:`UserError` is printed as
``fairseq-train: error: MESSAGE`` (exit status 1) instead of a stack trace (:func:`install_cli_hook`);
``FAIRSEQ_DLM_TRACEBACK=1`` shows the trace as well.  Other exceptions (bugs) keep their trace.

Standard library only: the light-import scripts load modules that use it.
"""
import os
import sys

TRACEBACK_ENV = "FAIRSEQ_DLM_TRACEBACK"


class UserError(Exception):
    """Base (mixin) of the errors whose message is all a user needs: what was wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A flag or argument value that cannot be used."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder that a flag names (or that a step needs) is not there."""


class ArgumentTypeError(UserError, TypeError):
    """An argument of the Python API of the wrong type (a float where a whole number is needed, ...)."""


def _cli_name(argv0: str):
    """``fairseq-train`` for fairseq's console scripts (and ``python -m fairseq_cli.train``), else None."""
    base = os.path.basename(argv0 or "")
    if base.startswith("fairseq-"):
        return base
    parent = os.path.basename(os.path.dirname(argv0 or ""))
    if parent == "fairseq_cli" and base.endswith(".py"):
        return "fairseq-" + base[:-3]
    return None


def user_error_in(exc: BaseException):
    """The :class:`UserError` ``exc`` is or was raised from (``raise ... from``), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__
    return None


def install_cli_hook(argv0=None) -> bool:
    """In a fairseq command-line tool, print uncaught :class:`UserError` s as one line (idempotent);
    True when installed.  Library use (a notebook, a script of yours) is left as it is."""
    name = _cli_name(sys.argv[0] if argv0 is None else argv0)
    if name is None or getattr(sys.excepthook, "_fairseq_dlm", False):
        return False
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        error = user_error_in(exc)
        if error is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            previous(exc_type, exc, tb)
        if error is not None:
            sys.stderr.write(f"{name}: error: {error}\n")
            sys.stderr.flush()

    hook._fairseq_dlm = True
    sys.excepthook = hook
    return True


class PrepareError(UserError):
    """A problem with the inputs of data preparation; the message names the file and the fix."""
