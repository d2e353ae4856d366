"""The quickstarts' progress line: updates done and time left, read from fairseq-train's own log lines."""
import io

from fairseq_dlm.tools import UpdateProgress

# fairseq-train --log-format simple (the quickstarts' format): train_inner lines, then the epoch's train line
LINES = [
    "2026-12-03 12:11:33 | INFO | fairseq_cli.train | begin training epoch 1\n",
    "2026-12-03 12:11:56 | INFO | train_inner | epoch 001:     10 / 735 loss=78.895, nll_loss=13.296, ppl=10055, "
    "wps=296.1, ups=0.45, wpb=660.2, bsz=37.6, num_updates=10, lr=0.0001, gnorm=154.747, clip=100, train_wall=23\n",
    "2026-12-03 12:12:16 | INFO | train_inner | epoch 001:     20 / 735 loss=60.692, num_updates=20, lr=0.0002\n",
    "2026-12-03 12:12:36 | INFO | train_inner | epoch 001:     30 / 735 loss=52.793, num_updates=30, lr=0.0003\n",
    "2026-12-03 12:12:56 | INFO | train | epoch 001 | loss 50.1 | ppl 400 | num_updates 40 | lr 0.0004\n",
]


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_counts_updates_and_estimates_the_time_left(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("fairseq_dlm.tools.time.monotonic", clock)
    out = io.StringIO()
    progress = UpdateProgress(40, "stage 1", stream=out)
    for i, line in enumerate(LINES):
        clock.now = 1000.0 + 20 * i  # 20 s between log lines
        progress.feed(line)
    shown = out.getvalue().splitlines()
    # one line per tenth of the budget reached (not a terminal): 25 %, 50 %, 75 %, 100 %; the first
    # estimate is from the elapsed time, the later ones from the rate since the first count (10 updates
    # per 20 s here)
    assert shown == [
        "stage 1: 10/40 updates (25%), 0:20 elapsed, ~1:00 left",
        "stage 1: 20/40 updates (50%), 0:40 elapsed, ~0:40 left",
        "stage 1: 30/40 updates (75%), 1:00 elapsed, ~0:20 left",
        "stage 1: 40/40 updates (100%), 1:20 elapsed, ~0:00 left",
    ]


def test_start_up_time_does_not_inflate_the_estimate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("fairseq_dlm.tools.time.monotonic", clock)
    out = io.StringIO()
    progress = UpdateProgress(300, "stage 1", stream=out)
    clock.now += 60  # a minute of loading before the first log line
    progress.feed("| train_inner | epoch 001:  5 / 735 loss=9.1, num_updates=5, lr=5e-05\n")
    clock.now += 10  # then 1 update/s
    progress.feed("| train_inner | epoch 001: 15 / 735 loss=8.7, num_updates=15, lr=0.00015\n")
    assert progress.line() == "stage 1: 15/300 updates (5%), 1:10 elapsed, ~4:45 left"


def test_lines_without_updates_change_nothing_and_counts_never_go_back():
    out = io.StringIO()
    progress = UpdateProgress(100, "length head", stream=out)
    progress.feed("2026-12-03 | INFO | fairseq.trainer | begin training epoch 1\n")
    assert out.getvalue() == "" and progress.done == 0
    progress.feed(LINES[3])
    progress.feed(LINES[1])  # an older line (another log stream) does not move it back
    assert progress.done == 30 and progress.line().startswith("length head: 30/100 updates (30%)")
