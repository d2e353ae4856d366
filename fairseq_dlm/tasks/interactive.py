"""Input-line bookkeeping for ``fairseq-interactive`` (every input line gets exactly one result).

fairseq-interactive reads its input in buffers of ``--buffer-size`` lines and numbers its output
``offset + id``, with ``id`` the row of the buffer's inference dataset; so the dataset's ids are
line indices *within* the buffer, while the generator is given global line numbers (its random
streams are seeded by them).  A line that cannot be decoded gets one ``E-<line>\\t<reason>`` line.
"""
import logging
import sys
from typing import Dict, List, Optional, TextIO

import torch

logger = logging.getLogger(__name__)


class InteractiveLines:
    """The buffers read so far; ``current`` is the one being decoded."""

    def __init__(self, output: Optional[TextIO] = None):
        self.read = 0
        self.output = output  # where E- lines go (fairseq-interactive's stdout; None: sys.stdout at write time)
        self.current: Optional["LineBuffer"] = None

    def start(self, n: int) -> "LineBuffer":
        """A new buffer of ``n`` lines, numbered after the ones already read."""
        self.current, self.read = LineBuffer(self.read, self.output), self.read + n
        return self.current


class LineBuffer:
    """One buffer of input lines: which were kept (in order) and their token rows."""

    def __init__(self, offset: int, output: Optional[TextIO] = None):
        self.offset, self.output = offset, output
        self.local_ids: List[int] = []  # indices within the buffer of the lines kept for decoding
        self._by_tokens: Dict[tuple, List[int]] = {}  # token row -> its global line numbers, in input order

    def keep(self, i: int, tokens: torch.Tensor) -> None:
        """Line ``i`` of the buffer is decoded as the ``[P]`` token row ``tokens``."""
        self.local_ids.append(i)
        self._by_tokens.setdefault(tuple(tokens.tolist()), []).append(self.offset + i)

    def skip(self, i: int, why: str) -> None:
        """Report line ``i`` of the buffer as not decoded: one ``E-<line>`` output line.

        Written to stdout because it is part of fairseq-interactive's output protocol, next to
        fairseq's own ``S-``/``H-``/``D-`` lines (which come after the buffer is decoded)."""
        line = self.offset + i
        logger.warning("input line %d skipped: %s", line, why)
        write_result_line(f"E-{line}\t{why}", self.output)
        for rows in self._by_tokens.values():
            if line in rows:
                rows.remove(line)

    def line_ids(self, src_tokens: torch.Tensor, pad: int) -> torch.Tensor:
        """``[B]`` global line numbers of a batch's ``[B, L]`` right-padded rows (identical lines are
        assigned in input order, the order in which fairseq batches them)."""
        ids = []
        for row in src_tokens.tolist():
            rows = self._by_tokens.get(tuple(t for t in row if t != pad))
            if not rows:
                raise RuntimeError("fairseq-interactive decoded a row that was not read from the input")
            ids.append(rows.pop(0))
        return torch.tensor(ids, device=src_tokens.device)


def write_result_line(text: str, output: Optional[TextIO] = None) -> None:
    """One line of a fairseq CLI's result protocol (``S-``/``H-``/``E-``... lines on stdout), flushed."""
    stream = output or sys.stdout
    stream.write(text + "\n")
    stream.flush()
