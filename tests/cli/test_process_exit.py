"""No abort at exit (``fairseq_dlm/compat.py``, issue 18.2).

fairseq's ``BufferedIterator`` collates batches in a daemon thread; a process that ends while that
thread is inside a torch op aborts (``terminate called without an active exception``, rc 134): what
intermittently ended ``fairseq-train`` after "done training" when ``--max-update`` stopped it
mid-epoch.  Here the thread is kept busy deterministically: its source is a real torch computation.
"""
import subprocess
import sys

PROBE = """
import sys
import torch
if sys.argv[1] == "with-plugin":
    import fairseq_dlm

    fairseq_dlm.register()  # what --user-dir does
from fairseq.data.iterators import BufferedIterator

class Batches:  # collation stand-in: every item is seconds of torch work in total, tens of ms each
    def __len__(self):
        return 10 ** 6
    def __iter__(self):
        a = torch.randn(800, 800)
        while True:
            yield a @ a

itr = BufferedIterator(1000, Batches())
next(itr)  # the consumer thread starts and keeps computing while the process ends
print("exiting")
"""


def _exit_code(mode):
    return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                          env={"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}).returncode


def test_a_busy_data_thread_does_not_abort_the_process():
    assert [_exit_code("with-plugin") for _ in range(2)] == [0, 0]
    # the control: without the plugin's exit hook the same program aborts (SIGABRT = -6; it did every time
    # it was tried, a second try is allowed for a thread caught between two matmuls)
    assert _exit_code("fairseq-only") == -6 or _exit_code("fairseq-only") == -6
