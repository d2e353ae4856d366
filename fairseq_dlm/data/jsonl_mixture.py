"""Streaming mixture of jsonl shards for instruction tuning (SPEC §2.4, §9.3); no fairseq import.

**Shards.** A folder of ``x.jsonl`` / ``x.jsonl.gz`` files, one JSON object ``{"inputs": str,
"targets": str, ...}`` per line (other keys ignored). A shard's *name* is ``x.jsonl`` in both cases,
so the official ratio keys (``flan_zs_opt_train.jsonl``) match either file.

**Virtual epoch** of n examples, weights w_i (normalised, names sorted): shard i gives c_i examples,
``Σ c_i = n`` (:meth:`JsonlMixture.counts`)::

    largest_remainder (default; SPEC's round(n·w_i)):
        c_i = ⌊n·w_i⌋ + 1 for the n − Σ_j ⌊n·w_j⌋ shards with the largest n·w_i − ⌊n·w_i⌋ (ties: name)
    random (systematic rounding), u ~ U[0,1) seeded by (seed, epoch), C_k = n·Σ_{j≤k} w_j, C_0 = 0:
        c_k = ⌊C_k + u⌋ − ⌊C_{k−1} + u⌋  ∈ {⌊n·w_k⌋, ⌈n·w_k⌉},   E[c_k] = n·w_k exactly

(exact rational arithmetic). ``random`` keeps a small weight from always being rounded down when
n·w_i < 1; ``largest_remainder`` gives the same counts in every epoch.

**Reading** (:meth:`JsonlMixture.take`). Each shard is read sequentially in file order from its
position, taking c_i *valid* lines; at the end of the file it wraps to line 1 (``pass += 1``). The
examples, concatenated in name order, are returned in the order of a permutation seeded by
(seed, epoch). ``take`` is a pure function of (files, weights, seed, rounding, n, epoch, position):
storing the position returned for epoch e and calling ``take(n, e + 1, stored)`` after a restart
gives what the uninterrupted run got. Note: SPEC §2.4 takes from a *fresh permutation* of each
binarized shard; a many-GB jsonl cannot be permuted without an index, so a shard is read in file
order -- shuffle the files once beforehand if they are grouped by task.

**Position** (JSON): ``{"version": 1, "shards": {name: {"pass": p, "line": l, "offset": b}}}`` --
l lines of pass p consumed, b = byte offset just after them (of the decompressed stream for .gz).
Resuming a plain file seeks (O(1)); resuming a ``.gz`` re-decompresses the file up to b (O(b), about
the time to gunzip that much; decompress big shards to plain .jsonl if restarts must be fast).
Within a run the open files are kept, so consecutive epochs cost only the lines they read.

**Bad lines** (invalid UTF-8/JSON, not an object, ``inputs``/``targets`` missing or not strings,
``inputs`` or ``targets`` empty or whitespace): skipped, counted in :attr:`JsonlMixture.bad_lines` each time they
are read, the first ``SHOW_BAD`` per shard logged as ``file:line: reason``, then a count per epoch.
Blank lines are skipped silently and not counted (a trailing newline is no error). A shard without
any valid line, and a truncated or corrupt .gz file, raise :class:`JsonlError` naming the file.
"""
import gzip
import json
import logging
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["Example", "JsonlError", "JsonlMixture", "find_shards", "read_ratios", "shard_name"]

SHOW_BAD = 5                     # bad lines logged one by one per shard; the rest are counted
POSITION_VERSION = 1
ROUNDINGS = ("largest_remainder", "random")
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class JsonlError(UserError, ValueError):
    """A shard folder, ratio file, shard or position that cannot be used; the message names it."""


@dataclass(frozen=True)
class Example:
    """One instruction example: ``shard`` name, 1-based ``line`` in its file, the two texts."""
    shard: str
    line: int
    inputs: str
    targets: str


class _State(NamedTuple):
    """Where a shard's next read starts: pass number, lines consumed in it, byte offset after them."""
    pass_: int
    line: int
    offset: int


def shard_name(filename: str) -> str:
    """``x.jsonl.gz`` → ``x.jsonl``; any other name is returned unchanged."""
    return filename[:-3] if filename.endswith(".jsonl.gz") else filename


def find_shards(folder: Union[str, Path]) -> Dict[str, Path]:
    """Map shard name → file for the ``*.jsonl`` and ``*.jsonl.gz`` files of ``folder`` (not recursive).

    Errors: ``folder`` missing or not a directory, no shard in it, ``x.jsonl`` and ``x.jsonl.gz`` both
    present (which one is meant is ambiguous).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise JsonlError(f"{folder}: shard folder does not exist or is not a directory")
    shards: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.endswith((".jsonl", ".jsonl.gz")):
            continue
        name = shard_name(path.name)
        if name in shards:
            raise JsonlError(f"{folder}: both {shards[name].name} and {path.name} exist; keep one")
        shards[name] = path
    if not shards:
        raise JsonlError(f"{folder}: no *.jsonl or *.jsonl.gz shard in this folder")
    return dict(sorted(shards.items()))


def _load_ratio_object(source) -> Tuple[str, Mapping]:
    """The ratio mapping and a label naming where it came from (the file, or ``<ratios dict>``)."""
    if isinstance(source, Mapping):
        return "<ratios dict>", source
    label = str(source)
    try:
        with open(source, encoding="utf-8") as f:
            obj = json.load(f)
    except OSError as e:
        raise JsonlError(f"{label}: cannot read ratio file ({e})") from e
    except ValueError as e:
        raise JsonlError(f"{label}: ratio file is not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise JsonlError(f"{label}: ratio file must hold a JSON object {{shard: weight}}, "
                         f"not {type(obj).__name__}")
    return label, obj


def _check_weights(label: str, obj: Mapping) -> Dict[str, float]:
    """Ratio keys normalised by :func:`shard_name` → weight; each weight finite and ≥ 0."""
    weights: Dict[str, float] = {}
    for key, value in obj.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise JsonlError(f"{label}: weight of {key!r} must be a finite number, got {value!r}")
        if value < 0:
            raise JsonlError(f"{label}: weight of {key!r} is negative ({value})")
        name = shard_name(str(key))
        if name in weights:
            raise JsonlError(f"{label}: shard {name!r} is named twice")
        weights[name] = float(value)
    return weights


def read_ratios(source, shards: Mapping[str, Path]) -> Dict[str, float]:
    """Normalised weights ``w_i = r_i / Σ_j r_j`` over the shards present (names sorted).

    ``source``: a ratio JSON file ``{shard: weight}``, a mapping, or ``None`` (uniform, w_i = 1/K).
    Shards named but absent: one warning listing them with their share of the total weight; shards
    present but not named: warned and excluded; weight 0: excluded. Errors (naming the file):
    unreadable or not JSON, not an object, a weight not a finite number or negative, no named shard
    present, weights of the present shards summing to 0.
    """
    if source is None:
        return {name: 1.0 / len(shards) for name in sorted(shards)}
    label, obj = _load_ratio_object(source)
    weights = _check_weights(label, obj)
    total = sum(weights.values())
    absent = sorted(set(weights) - set(shards))
    if len(absent) == len(weights):
        raise JsonlError(f"{label}: names no shard present (shards found: {', '.join(sorted(shards))})")
    if absent:
        share = sum(weights[n] for n in absent) / total if total > 0 else 0.0
        logger.warning("%s: %d shard(s) absent, %.1f%% of the weight, the rest renormalised: %s", label,
                       len(absent), 100 * share, ", ".join(f"{n} ({weights[n]:g})" for n in absent))
    unnamed = sorted(set(shards) - set(weights))
    if unnamed:
        logger.warning("%s: shard(s) present but not in the ratios, excluded: %s", label, ", ".join(unnamed))
    present = {n: w for n, w in sorted(weights.items()) if n in shards and w > 0}
    if not present:
        raise JsonlError(f"{label}: the weights of the shards present sum to 0")
    return {n: w / sum(present.values()) for n, w in present.items()}


def _open(path: Path):
    """A binary reader over the (decompressed) bytes of ``path``."""
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as e:
        raise JsonlError(f"{path}: cannot open shard ({e})") from e


def _gzip_error(path: Path, error: Exception) -> JsonlError:
    return JsonlError(f"{path}: truncated or corrupt gzip file ({type(error).__name__}: {error})")


def _parse(raw: bytes, line: int) -> Tuple[Optional[Tuple[str, str]], Optional[str]]:
    """``((inputs, targets), None)`` for a valid line, ``(None, reason)`` for a bad one, ``(None, None)``
    for a blank one."""
    if not raw.strip():
        return None, None
    try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 ({e.reason} at byte {e.start})"
    try:
        obj = json.loads(text)
    except ValueError as e:
        return None, f"invalid JSON ({e})"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({type(obj).__name__})"
    for key in ("inputs", "targets"):
        if key not in obj:
            return None, f"{key!r} missing"
        if not isinstance(obj[key], str):
            return None, f"{key!r} is {type(obj[key]).__name__}, not a string"
    for key in ("inputs", "targets"):
        if not obj[key].strip():
            return None, f"empty {key!r}"
    return (obj["inputs"], obj["targets"]), None


def _first_valid(path: Path) -> None:
    """Raise :class:`JsonlError` unless ``path`` has a valid line (reads up to the first one, silently)."""
    first_reason, lines = None, 0
    with _open(path) as f:
        try:
            for lines, raw in enumerate(f, 1):
                pair, reason = _parse(raw, lines)
                if pair is not None:
                    return
                first_reason = first_reason or (reason and f"line {lines}: {reason}")
        except _GZIP_ERRORS as e:
            raise _gzip_error(path, e) from e
    detail = f"; first bad {first_reason}" if first_reason else ""
    raise JsonlError(f"{path}: no valid line in {lines} line(s){detail}")


class _Cursor:
    """An open shard file and the :class:`_State` its next read starts from."""

    def __init__(self, path: Path, state: _State):
        """Open ``path`` at ``state.offset``, which must follow a newline or be the end of the file."""
        self.path, self.state, self.file = path, state, _open(path)
        try:
            if state.offset > 0:
                self.file.seek(state.offset - 1)      # a .gz file decompresses up to there: O(offset)
                before = self.file.read(1)            # b"" when the offset is past the end of the file
                if not before or (before != b"\n" and self.file.peek(1)[:1] != b""):
                    raise JsonlError(f"{path}: stored position (byte {state.offset}, line {state.line}) "
                                     "is not at a line start; was the file changed?")
        except _GZIP_ERRORS as e:
            self.file.close()
            raise _gzip_error(path, e) from e
        except BaseException:
            self.file.close()
            raise

    def readline(self) -> bytes:
        """The next raw line (``b""`` at the end of the file); advances ``state``."""
        try:
            raw = self.file.readline()
        except _GZIP_ERRORS as e:
            raise _gzip_error(self.path, e) from e
        if raw:
            s = self.state
            self.state = _State(s.pass_, s.line + 1, s.offset + len(raw))
        return raw

    def rewind(self) -> None:
        """Start the next pass at line 1."""
        self.file.seek(0)
        self.state = _State(self.state.pass_ + 1, 0, 0)

    def close(self) -> None:
        self.file.close()


def _position_states(position: Mapping, names) -> Dict[str, _State]:
    """Parse a position object; shards it lacks start at the beginning, shards it names extra are ignored."""
    try:
        if position.get("version") != POSITION_VERSION:
            raise ValueError(f"version {position.get('version')!r}, expected {POSITION_VERSION}")
        stored = {n: _State(int(s["pass"]), int(s["line"]), int(s["offset"]))
                  for n, s in position["shards"].items()}
        if any(min(s) < 0 for s in stored.values()):
            raise ValueError("negative pass, line or offset")
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise JsonlError(f"position: not a position returned by JsonlMixture.take ({e!r})") from e
    extra = sorted(set(stored) - set(names))
    if extra:
        logger.warning("position: shard(s) not in the mixture, ignored: %s", ", ".join(extra))
    return {n: stored.get(n, _State(0, 0, 0)) for n in names}


class JsonlMixture:
    """Virtual epochs of n examples drawn from weighted jsonl shards (see the module docstring).

    ``folder``: the shard folder (:func:`find_shards`); ``ratios``: ratio file, mapping or ``None``
    (uniform; :func:`read_ratios`); ``seed``: seeds the per-epoch rounding and interleaving;
    ``rounding``: ``"largest_remainder"`` or ``"random"`` (:meth:`counts`). ``bad_lines`` counts the
    bad lines read per shard (cumulative; a line read again in a later pass counts again).
    """

    def __init__(self, folder, ratios=None, seed: int = 1, rounding: str = "largest_remainder"):
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.folder, self.seed, self.rounding = Path(folder), seed, rounding
        found = find_shards(self.folder)
        if ratios is None and (self.folder / "ratio.json").is_file():
            logger.warning("%s: ratio.json is present but no ratios were given; mixing uniformly",
                           self.folder)
        self.weights = read_ratios(ratios, found)
        self.files = {name: found[name] for name in self.weights}
        for path in self.files.values():
            _first_valid(path)
        self.bad_lines: Counter = Counter()
        self.bad_reasons: Counter = Counter()      # (shard, reason without detail) → count
        self._cursors: Dict[str, _Cursor] = {}
        logger.info("jsonl mixture over %d shard(s) in %s: %s", len(self.files), self.folder,
                    ", ".join(f"{n} {w:.4g}" for n, w in self.weights.items()))

    def initial_position(self) -> dict:
        """The position before the first epoch: every shard at line 0 of pass 0."""
        return _dump_position({n: _State(0, 0, 0) for n in self.files})

    def counts(self, n: int, epoch: int) -> Dict[str, int]:
        """Examples per shard in an epoch of ``n``: c_i ≈ n·w_i, Σ c_i = n (formulas: module docstring)."""
        n, epoch = _check_n_epoch(n, epoch)
        names = list(self.weights)
        exact = [Fraction(self.weights[k]) for k in names]
        quota = [n * w / sum(exact) for w in exact]            # exact n·w_i, Σ = n
        if self.rounding == "random":
            u = Fraction(np.random.default_rng([self.seed, epoch, 0]).random())
            cum, out = Fraction(0), {}
            for name, q in zip(names, quota):
                out[name] = math.floor(cum + q + u) - math.floor(cum + u)
                cum += q
            return out
        floors = {k: math.floor(q) for k, q in zip(names, quota)}
        by_remainder = sorted(zip(names, quota), key=lambda kq: (-(kq[1] - math.floor(kq[1])), kq[0]))
        for name, _ in by_remainder[:n - sum(floors.values())]:
            floors[name] += 1
        return floors

    def take(self, n: int, epoch: int, position: Mapping) -> Tuple[List[Example], dict]:
        """The ``n`` examples of virtual epoch ``epoch`` read from ``position``, and the position after them.

        Deterministic in (files, weights, seed, rounding, n, epoch, position); the interleaving is
        ``permutation_{(seed, epoch)}(n)`` applied to the examples concatenated in shard-name order.
        """
        n, epoch = _check_n_epoch(n, epoch)
        states = _position_states(position, list(self.files))
        examples: List[Example] = []
        for name, count in self.counts(n, epoch).items():
            if count:
                got, states[name] = self._read(name, count, states[name])
                examples.extend(got)
        order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(examples))
        return [examples[i] for i in order], _dump_position(states)

    def _read(self, name: str, count: int, state: _State) -> Tuple[List[Example], _State]:
        """Read ``count`` valid examples of shard ``name`` from ``state``, wrapping at the end of file;
        the file stays open for the next epoch, and is reused when asked for the state it stands at."""
        cursor = self._cursors.pop(name, None)
        if cursor is not None and cursor.state != state:
            cursor.close()
            cursor = None
        cursor = cursor or _Cursor(self.files[name], state)
        try:
            out = self._read_lines(name, count, cursor)
        except BaseException:                      # the cursor's state is unknown now: drop it
            cursor.close()
            raise
        self._cursors[name] = cursor
        return out

    def _read_lines(self, name: str, count: int, cursor: _Cursor) -> Tuple[List[Example], _State]:
        out: List[Example] = []
        valid_in_pass = 0 if cursor.state.line == 0 else None   # None: this pass began before us
        bad_before, wraps = self.bad_lines[name], 0
        while len(out) < count:
            raw = cursor.readline()
            if not raw:
                if valid_in_pass == 0:
                    raise JsonlError(f"{cursor.path}: no valid line in a whole pass; was the file changed?")
                cursor.rewind()
                valid_in_pass, wraps = 0, wraps + 1
                continue
            line = cursor.state.line
            pair, reason = _parse(raw, line)
            if pair is not None:
                out.append(Example(name, line, *pair))
                valid_in_pass = None if valid_in_pass is None else valid_in_pass + 1
            elif reason is not None:
                self._note_bad(name, cursor.path, line, reason)
        if wraps:
            logger.info("%s: end of file reached %d time(s) this epoch; now in pass %d",
                        cursor.path, wraps, cursor.state.pass_)
        skipped = self.bad_lines[name] - bad_before
        if skipped and self.bad_lines[name] > SHOW_BAD:
            logger.warning("%s: %d bad line(s) skipped this epoch, %d in total", cursor.path, skipped,
                           self.bad_lines[name])
        return out, cursor.state

    def _note_bad(self, name: str, path: Path, line: int, reason: str) -> None:
        """Count a bad line; log it while fewer than ``SHOW_BAD`` of this shard were logged."""
        self.bad_lines[name] += 1
        self.bad_reasons[name, reason.split(" (")[0]] += 1
        if self.bad_lines[name] <= SHOW_BAD:
            last = self.bad_lines[name] == SHOW_BAD
            more = "; further bad lines of this file are only counted" if last else ""
            logger.warning("%s:%d: %s; line skipped%s", path, line, reason, more)

    def summary(self) -> str:
        """One line: bad lines per shard so far, by reason, e.g.
        ``bad lines: a.jsonl 3 (invalid JSON 2, empty 'targets' 1)``."""
        if not self.bad_lines:
            return "bad lines: none"
        parts = []
        for name, total in sorted(self.bad_lines.items()):
            reasons = ", ".join(f"{r} {c}" for (n, r), c in sorted(self.bad_reasons.items()) if n == name)
            parts.append(f"{name} {total} ({reasons})")
        return "bad lines: " + "; ".join(parts)

    def close(self) -> None:
        """Close the files kept open between epochs."""
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cursors"] = {}                     # open files do not pickle; they reopen on demand
        return state


def _check_n_epoch(n: int, epoch: int) -> Tuple[int, int]:
    for label, value in (("n", n), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{label} must be a non-negative int, got {value!r}")
    return int(n), int(epoch)


def _dump_position(states: Mapping[str, _State]) -> dict:
    return {"version": POSITION_VERSION,
            "shards": {n: {"pass": s.pass_, "line": s.line, "offset": s.offset} for n, s in states.items()}}
