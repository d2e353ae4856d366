"""The translation data preparation engine behind ``scripts/prepare_translation.py`` (SPEC §2, §9.2).

raw parallel text (plain or .gz) → normalisation (NFC, whitespace stripped and collapsed; pairs
with an empty or invisible-only side are dropped and counted) → the prompt template on the source
side (SPEC §2.3) → pieces of the backbone's subword model (SentencePiece, or an HF tokenizer.json) →
``fairseq-preprocess --joined-dictionary`` (pruned dictionary, or ``--srcdict`` with ``--full-dict`` or,
for a tokenizer.json, its whole vocabulary) → an output folder
holding ``dict.{src,tgt}.txt`` (identical), ``{split}.{src}-{tgt}.{src|tgt}.{bin,idx}``, a README.md
recording the command, counts and template, and (unless ``keep_intermediate`` is off) the
normalised text in ``text/`` and its pieces in ``spm/``.

Standard library only at import (SentencePiece is loaded when used; fairseq-preprocess runs as a
subprocess), so the preparation scripts start without torch or fairseq.
"""
import argparse
import contextlib
import gzip
import hashlib
import importlib.util
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import PrepareError
from . import templates as _templates
from .download import fetch
from .text import normalise
from .templates import fill_template

logger = logging.getLogger(__name__)

MULTI30K_SPLITS = ("train=train", "valid=val", "test=test_2016_flickr")
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
README_MARKER = "written by scripts/prepare_translation.py"
SPLIT_NAME = re.compile(r"^(train|valid|test)(\d*)$")
SUMMARY_LINE = re.compile(r"\[(\S+)\] spm/(\S+)\.\1: (\d+) sents, (\d+) tokens(?:, ([0-9.eE+-]+)% replaced)?")
VOCABULARY_DICT = "dict.vocabulary.txt"  # an HF tokenizer.json's whole vocabulary, the --srcdict of its data
CHUNK = 10000  # pairs encoded per SentencePiece call
MAX_LISTED_DROPS = 5


@dataclass
class TranslationPrep:
    """What to prepare (the flags of ``scripts/prepare_translation.py``, which takes its defaults here)."""

    spm_model: Optional[str] = field(default=None, metadata={"help": "the backbone's subword model: SentencePiece "
                                                                     "(*.model) or an HF tokenizer.json"})
    raw_dir: Optional[str] = field(default=None, metadata={"help": "folder with <prefix>.<lang>[.gz] files"})
    src: str = field(default="de", metadata={"help": "source language code (file suffix)"})
    tgt: str = field(default="en", metadata={"help": "target language code (file suffix)"})
    name: str = field(default="multi30k", metadata={"help": "data set name, first part of the output folder name"})
    splits: List[str] = field(default_factory=lambda: list(MULTI30K_SPLITS),
                              metadata={"help": "SPLIT=PREFIX entries (fairseq split -> raw file prefix)"})
    full_dict: Optional[str] = field(default=None, metadata={"help": "keep this full fairseq dictionary"})
    template: Optional[str] = field(default=None, metadata={"help": "source prompt with {src}"})
    max_train: Optional[int] = field(default=None, metadata={"help": "only the first N training pairs"})
    workers: int = field(default=1, metadata={"help": "fairseq-preprocess workers and SentencePiece threads"})
    dest_root: str = field(default="data-bin", metadata={"help": "parent of the default output folder"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "output folder"})
    overwrite: bool = field(default=False, metadata={"help": "replace an output folder this tool wrote"})
    keep_intermediate: bool = field(default=True, metadata={"help": "keep text/ and spm/ in the output"})
    download: bool = field(default=False, metadata={"help": "download missing Multi30k raw files"})
    cache_dir: str = field(default=os.path.join("data-raw", "multi30k"),
                           metadata={"help": "where --download puts raw files without --raw-dir"})
    download_url: str = field(default=MULTI30K_URL, metadata={"help": "base URL of --download"})


@dataclass
class SplitStats:
    """Counts for one fairseq split (``train``, ``valid``, ``test1``, ...)."""

    split: str
    prefix: str
    src_file: Optional[Path] = None
    tgt_file: Optional[Path] = None
    raw: int = 0  # aligned pairs in the raw files
    used: int = 0  # pairs read (raw, or the first --max-train)
    dropped_empty: int = 0  # a side empty after normalisation
    dropped_spm: int = 0  # a side without SentencePiece pieces
    kept: int = 0
    dropped_lines: List[str] = field(default_factory=list)  # first few, e.g. "3 (en)"
    replaced: Dict[str, str] = field(default_factory=dict)  # lang -> % of tokens replaced by <unk>

    @property
    def dropped(self) -> int:
        return self.dropped_empty + self.dropped_spm


# ------------------------------------------------------------------------------ prompts
def resolve_template(template: Optional[str], src: str, tgt: str) -> str:
    """``--template`` (``None``: the paper's ``Translate the German sentence to English. German: {src}
    English:`` for de→en) resolved by ``fairseq_dlm.data.templates``; its errors become PrepareError."""
    try:
        return _templates.resolve_template(template, src, tgt, option="--template")
    except _templates.TemplateError as e:
        raise PrepareError(str(e)) from e


# ------------------------------------------------------------------------------ splits and raw files
def parse_splits(items: List[str]) -> Dict[str, str]:
    """``["train=train", "valid=val", "test=test_2016_flickr", "test1=..."]`` → ordered dict.

    fairseq-preprocess names the k-th ``--validpref``/``--testpref`` entry ``valid``, ``valid1``, ...,
    so extra sets must be numbered contiguously from 1.
    """
    mapping: Dict[str, str] = {}
    for item in items:
        split, sep, prefix = item.partition("=")
        if not sep or not prefix or not SPLIT_NAME.match(split):
            raise PrepareError(f"--splits entry {item!r}: expected SPLIT=PREFIX, SPLIT one of train, valid[N], test[N]")
        if split in mapping:
            raise PrepareError(f"--splits names {split!r} twice")
        kind, number = SPLIT_NAME.match(split).groups()
        if number and (kind == "train" or number.startswith("0")):
            raise PrepareError(f"--splits entry {item!r}: fairseq's split names are train, valid, valid1, "
                               "..., test, test1, ...")
        mapping[split] = prefix
    for kind in ("valid", "test"):
        numbers = sorted(int(s[len(kind):] or 0) for s in mapping if SPLIT_NAME.match(s).group(1) == kind)
        if numbers != list(range(len(numbers))):
            raise PrepareError(f"--splits: {kind} sets must be named {kind}, {kind}1, {kind}2, ... without gaps "
                               f"(got {', '.join(s for s in mapping if s.startswith(kind))})")
    order = {"train": 0, "valid": 1, "test": 2}
    return dict(sorted(mapping.items(), key=lambda kv: (order[SPLIT_NAME.match(kv[0]).group(1)],
                                                        int(SPLIT_NAME.match(kv[0]).group(2) or 0))))


def raw_candidates(raw_dir: Path, prefix: str, lang: str) -> List[Path]:
    """Where a raw file may be: ``<raw_dir>/<prefix>.<lang>.gz``, then the plain file."""
    base = raw_dir / f"{prefix}.{lang}"
    return [base.with_name(base.name + ".gz"), base]


def find_raw_file(raw_dir: Path, prefix: str, lang: str, split: str) -> Path:
    """The raw file of one side of a split (``.gz`` preferred), or a PrepareError listing the paths tried."""
    candidates = raw_candidates(raw_dir, prefix, lang)
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise PrepareError(f"missing raw file for split {split!r} ({lang}): looked for "
                           f"{' and '.join(str(p) for p in candidates)}; pass --raw-dir with the folder holding "
                           f"them, or map the split to another file prefix with --splits {split}=PREFIX")
    if len(found) == 2:
        logger.warning("both %s and %s exist; using %s", found[0], found[1], found[0])
    return found[0]


def download_multi30k(raw_dir: Path, prefixes: List[str], langs: Tuple[str, str], base_url: str) -> None:
    """Fetch ``<prefix>.<lang>.gz`` for every prefix and language that ``raw_dir`` lacks."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for prefix in prefixes:
        for lang in langs:
            if any(p.is_file() for p in raw_candidates(raw_dir, prefix, lang)):
                continue
            if "/" in prefix or os.sep in prefix:
                raise PrepareError(f"--download can only fetch bare Multi30k names, not {prefix!r}; "
                                   "place that file under --raw-dir yourself")
            fetch(f"{base_url.rstrip('/')}/{prefix}.{lang}.gz", raw_dir / f"{prefix}.{lang}.gz",
                  "pass --raw-dir with Multi30k's raw files instead, e.g. --raw-dir ../shared/data/multi30k")


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (gzipped when the name ends in .gz): split at ``\\n`` only, ends
    kept, a leading BOM dropped. PrepareError on bad gzip/UTF-8 naming the 1-based line.

    Each line is decoded on its own: a text-mode reader decodes 8 KB blocks ahead of the lines it has
    returned, so its UnicodeDecodeError cannot say which line holds the bad byte.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                line = raw.decode("utf-8")
                yield line[1:] if n == 1 and line.startswith("\ufeff") else line
    except UnicodeDecodeError as e:
        raise PrepareError(f"{path}: line {n} is not valid UTF-8 (byte {e.object[e.start]:#04x} at position "
                           f"{e.start + 1}); convert the file to UTF-8, e.g. iconv -f LATIN1 -t UTF-8") from e
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        raise PrepareError(f"cannot read {path} after line {n} ({e}); it must be UTF-8 text, optionally gzipped") from e


def count_lines(path: Path) -> int:
    """Number of lines (a last line without ``\\n`` counts); PrepareError on bad gzip/UTF-8."""
    return sum(1 for _ in read_lines(path))


def check_pair_counts(stats: SplitStats) -> None:
    """Both sides must have the same, non-zero number of lines."""
    n_src, n_tgt = count_lines(stats.src_file), count_lines(stats.tgt_file)
    if n_src != n_tgt:
        raise PrepareError(f"split {stats.split!r}: source and target line counts differ: {stats.src_file} has "
                           f"{n_src} lines, {stats.tgt_file} has {n_tgt}; the files must be line-aligned translations")
    if n_src == 0:
        raise PrepareError(f"split {stats.split!r} is empty: {stats.src_file} and {stats.tgt_file} have no lines; "
                           "remove the split from --splits or point it at non-empty files")
    stats.raw = n_src


def iter_pairs(src_file: Path, tgt_file: Path, limit: int) -> Iterator[Tuple[int, str, str]]:
    """``(line number, source, target)`` for the first ``limit`` pairs."""
    fs, ft = read_lines(src_file), read_lines(tgt_file)
    with contextlib.closing(fs), contextlib.closing(ft):
        for i, (s, t) in enumerate(zip(fs, ft), 1):
            if i > limit:
                return
            yield i, s, t


# ------------------------------------------------------------------------------ SentencePiece
def load_spm(path: str):
    """The backbone's subword model (:mod:`.subword`: XLM-R's ``sentencepiece.bpe.model``, or an HF
    ``tokenizer.json`` such as Qwen2's byte-level BPE)."""
    if not path or not Path(path).is_file():
        raise PrepareError(f"subword model not found: {path}; pass --spm-model with the backbone's model, "
                           "e.g. XLMR_DIR/sentencepiece.bpe.model or QWEN_DIR/tokenizer.json")
    from .subword import SubwordError, load_subword

    try:
        return load_subword(str(path))
    except SubwordError as e:
        raise PrepareError(str(e)) from None


def subword_file_name(path: str) -> str:
    """The name the output folder keeps the subword model under (where inference looks for it)."""
    from .subword import SPM_FILE, TOKENIZER_JSON, is_tokenizer_json

    return TOKENIZER_JSON if is_tokenizer_json(path) else SPM_FILE


def encode_chunk(sp, pairs, stats, out_files, workers: int) -> None:
    """Encode ``[(line, prompted src, tgt)]``; write text and pieces; drop pairs without pieces."""
    pieces_src = sp.pieces_batch([s for _, s, _ in pairs], workers)
    pieces_tgt = sp.pieces_batch([t for _, _, t in pairs], workers)
    text_src, text_tgt, spm_src, spm_tgt = out_files
    for (line, s, t), ps, pt in zip(pairs, pieces_src, pieces_tgt):
        if not ps or not pt:
            stats.dropped_spm += 1
            note_drop(stats, line, side(not ps, not pt), "no SentencePiece pieces")
            continue
        text_src.write(s + "\n")
        text_tgt.write(t + "\n")
        spm_src.write(" ".join(ps) + "\n")
        spm_tgt.write(" ".join(pt) + "\n")
        stats.kept += 1


def side(src_empty: bool, tgt_empty: bool) -> str:
    """Which side of a dropped pair was empty."""
    return "source and target" if src_empty and tgt_empty else "source" if src_empty else "target"


def note_drop(stats: SplitStats, line: int, side: str, why: str) -> None:
    """Remember the first few dropped line numbers for the log and README."""
    if len(stats.dropped_lines) < MAX_LISTED_DROPS:
        stats.dropped_lines.append(f"{line} ({side}: {why})")


def prepare_split(stats: SplitStats, sp, template: str, work: Path, src: str, tgt: str,
                  limit: Optional[int], workers: int) -> None:
    """Normalise, prompt and encode one split into ``work/text/`` and ``work/spm/``."""
    stats.used = stats.raw if limit is None else min(limit, stats.raw)
    if stats.used < stats.raw:
        logger.info("%s: using the first %d of %d pairs (--max-train)", stats.split, stats.used, stats.raw)
    names = [work / "text" / f"{stats.split}.{src}", work / "text" / f"{stats.split}.{tgt}",
             work / "spm" / f"{stats.split}.{src}", work / "spm" / f"{stats.split}.{tgt}"]
    files = [open(p, "w", encoding="utf-8", newline="\n") for p in names]
    try:
        chunk = []
        for line, s, t in iter_pairs(stats.src_file, stats.tgt_file, stats.used):
            s, t = normalise(s), normalise(t)
            if not s or not t:
                stats.dropped_empty += 1
                note_drop(stats, line, side(not s, not t), "empty")
                continue
            chunk.append((line, fill_template(template, s), t))
            if len(chunk) == CHUNK:
                encode_chunk(sp, chunk, stats, files, workers)
                chunk = []
        encode_chunk(sp, chunk, stats, files, workers)
    finally:
        for f in files:
            f.close()
    log = logger.warning if stats.dropped else logger.info
    log("%s: %d pairs read, %d dropped (%d empty after normalisation, %d without pieces)%s, %d kept",
        stats.split, stats.used, stats.dropped, stats.dropped_empty, stats.dropped_spm,
        f" at lines {', '.join(stats.dropped_lines)}" if stats.dropped else "", stats.kept)
    if stats.kept == 0:
        raise PrepareError(f"split {stats.split!r} ({stats.src_file}, {stats.tgt_file}) has no pairs left after "
                           "dropping empty lines; check the files")


# ------------------------------------------------------------------------------ fairseq-preprocess
def preprocess_command(splits: List[str], src: str, tgt: str, full_dict: Optional[str], workers: int) -> List[str]:
    """The fairseq-preprocess arguments, relative to the output folder (run there)."""
    args = ["--source-lang", src, "--target-lang", tgt, "--destdir", ".", "--joined-dictionary",
            "--workers", str(workers)]
    if full_dict:
        args += ["--srcdict", os.path.abspath(full_dict)]
    for kind in ("train", "valid", "test"):
        prefixes = [f"spm/{s}" for s in splits if SPLIT_NAME.match(s).group(1) == kind]
        if prefixes:
            args += [f"--{kind}pref", ",".join(prefixes)]
    return args


def preprocess_executable() -> List[str]:
    """``python -m fairseq_cli.preprocess`` of this interpreter, else ``fairseq-preprocess`` on PATH."""
    if importlib.util.find_spec("fairseq_cli") is not None:
        return [sys.executable, "-m", "fairseq_cli.preprocess"]
    exe = shutil.which("fairseq-preprocess")
    if exe is None:
        raise PrepareError("fairseq-preprocess not found: run this script with the project's venv python "
                           "(.venv/bin/python, or scripts/prepare_translation.sh) or install fairseq")
    return [exe]


def run_preprocess(args: List[str], cwd: Path) -> str:
    """Run fairseq-preprocess in ``cwd``; return its output, or raise with its tail."""
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    proc = subprocess.run(preprocess_executable() + args, cwd=cwd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise PrepareError(f"fairseq-preprocess failed (exit {proc.returncode}):\n{output[-3000:]}")
    return output


def check_binarized(output: str, stats: Dict[str, SplitStats], src: str, tgt: str, full_dict: bool) -> None:
    """Cross-check fairseq's ``N sents`` per split and side; keep its <unk> replacement rates."""
    seen = set()
    for lang, split, sents, _tokens, replaced in SUMMARY_LINE.findall(output):
        if split not in stats:
            continue
        if int(sents) != stats[split].kept:
            raise PrepareError(f"fairseq-preprocess binarized {sents} {lang} sentences of {split!r}, expected "
                               f"{stats[split].kept}; inspect spm/{split}.{lang}")
        stats[split].replaced[lang] = replaced or "0"
        seen.add((split, lang))
        if replaced and float(replaced) > 1.0:
            why = ("does --full-dict match --spm-model?" if full_dict else
                   "pieces unseen in the training text (the dictionary is pruned to them)")
            logger.warning("%s.%s: %s%% of tokens replaced by <unk>: %s", split, lang, replaced, why)
    missing = [f"{s}.{lang}" for s in stats for lang in (src, tgt) if (s, lang) not in seen]
    if missing:
        logger.warning("no fairseq-preprocess summary found for %s", ", ".join(missing))


def dictionary_size(path: Path) -> int:
    """Symbols of a fairseq dictionary file, including the 4 specials it does not list."""
    with open(path, encoding="utf-8") as f:
        return 4 + sum(1 for line in f if line.strip())


# ------------------------------------------------------------------------------ README and output
def sha256(path: str) -> str:
    """Hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_readme(work: Path, a, command: str, template: str, stats: Dict[str, SplitStats],
                 preprocess_args: List[str], dict_size: int) -> None:
    """Record how the folder was made: command, normalisation, template, counts, dictionary."""
    dictionary = (f"full dictionary `{a.full_dict}` (`--srcdict`, ids unchanged)" if a.full_dict else
                  f"the whole vocabulary of the tokenizer (`{VOCABULARY_DICT}`, `--srcdict`)"
                  if (work / VOCABULARY_DICT).is_file() else
                  "pruned: the pieces of the training text (`--joined-dictionary`; padded to a multiple of 8 "
                  "with `madeupword*` symbols)")
    rows = "\n".join(
        f"| {s.split} | `{s.src_file}`, `{s.tgt_file}` | {s.raw} | {s.used} | {s.dropped_empty} | {s.dropped_spm} "
        f"| {s.kept} | {s.replaced.get(a.src, '?')} / {s.replaced.get(a.tgt, '?')} |" for s in stats.values())
    drops = "\n".join(f"* {s.split}: lines {', '.join(s.dropped_lines)}{' …' if s.dropped > MAX_LISTED_DROPS else ''}"
                      for s in stats.values() if s.dropped)
    intermediate = ("* `text/{split}.{src,tgt}`: the normalised text, prompted source (the references for cased BLEU)\n"
                    "* `spm/{split}.{src,tgt}`: its SentencePiece pieces, the input of fairseq-preprocess"
                    if a.keep_intermediate else "* intermediate text and pieces removed (--no-keep-intermediate)")
    text = f"""# {a.name} {a.src}→{a.tgt}, prompted, SentencePiece pieces ({README_MARKER})

Command:

    {command}

## Normalisation

Each raw line (split on `\\n` only; a UTF-8 BOM is dropped) is NFC-normalised
(`unicodedata.normalize("NFC", line)`), then stripped with whitespace runs collapsed to one space
(`" ".join(line.split())`). No lowercasing, no Moses tokenisation. A pair whose source or target
is empty after this (or holds only invisible characters such as U+200B, or has no SentencePiece
pieces) is dropped, keeping the sides aligned; invisible characters inside text are kept.
{f"Only the first {a.max_train} training pairs are used (`--max-train`)." if a.max_train else ""}

## Prompt template (source side)

    {template}

Pass the same string to `fairseq-interactive --prompt-template`. Targets are the plain sentences.

## Counts

| split | raw files | raw pairs | read | dropped: empty | dropped: no pieces | pairs | % <unk> ({a.src} / {a.tgt}) |
|---|---|---|---|---|---|---|---|
{rows}

Dropped pairs (first {MAX_LISTED_DROPS} per split, 1-based raw line numbers):
{drops or "* none"}

## Subword model and dictionary

* model: `{a.spm_model}` (sha256 `{sha256(a.spm_model)}`), pieces written as text
* dictionary: {dictionary}; {dict_size} symbols with `<s> <pad> </s> <unk>`; `dict.{a.src}.txt` = `dict.{a.tgt}.txt`
* binarized in this folder with:

      fairseq-preprocess {shlex.join(preprocess_args)}

## Files

* `dict.{a.src}.txt`, `dict.{a.tgt}.txt`; `{{split}}.{a.src}-{a.tgt}.{{{a.src},{a.tgt}}}.{{bin,idx}}`; `preprocess.log`;
  `{subword_file_name(a.spm_model)}` (a copy of the model above, to encode prompts at inference)
{intermediate}
"""
    (work / "README.md").write_text(text, encoding="utf-8")


def output_dir(a) -> Path:
    """``--out-dir``, else ``<dest-root>/<name>.<src>-<tgt>.prompted.xlm-r-dict.bin``."""
    if a.out_dir:
        return Path(a.out_dir)
    return Path(a.dest_root) / f"{a.name}.{a.src}-{a.tgt}.prompted.xlm-r-dict.bin"


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to clobber a non-empty folder unless --overwrite and this script made it."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    readme = out / "README.md"
    ours = readme.is_file() and README_MARKER in readme.read_text(encoding="utf-8", errors="replace")[:400]
    if not overwrite:
        hint = "" if ours else " (only possible for a folder this script wrote)"
        raise PrepareError(f"output folder {out} exists and is not empty; pass --overwrite to replace it{hint} "
                           "or choose --out-dir")
    if not ours:
        raise PrepareError(f"refusing to replace {out}: it has no README.md {README_MARKER!r}; remove it yourself")


def finalize_output(work: Path, out: Path, keep_intermediate: bool) -> None:
    """Move the finished staging folder into place (the previous output, if any, is removed)."""
    if not keep_intermediate:
        shutil.rmtree(work / "spm")
        shutil.rmtree(work / "text")
    if out.exists():
        shutil.rmtree(out)
    work.replace(out)


# ------------------------------------------------------------------------------ driver
def locate_raw_files(a, splits: Dict[str, str]) -> Dict[str, SplitStats]:
    """Resolve raw files per split, downloading Multi30k first when asked."""
    if a.raw_dir is None and not a.download:
        raise PrepareError("no raw data: pass --raw-dir DIR (e.g. --raw-dir ../shared/data/multi30k) or --download")
    raw_dir = Path(a.raw_dir if a.raw_dir is not None else a.cache_dir)
    if a.download:
        download_multi30k(raw_dir, list(splits.values()), (a.src, a.tgt), a.download_url)
    stats = {}
    for split, prefix in splits.items():
        s = SplitStats(split, prefix)
        s.src_file = find_raw_file(raw_dir, prefix, a.src, split)
        s.tgt_file = find_raw_file(raw_dir, prefix, a.tgt, split)
        stats[split] = s
    return stats


def validate_args(a, splits: Dict[str, str]) -> None:
    """Argument checks that need no files."""
    if a.src == a.tgt:
        raise PrepareError(f"--src and --tgt are both {a.src!r}")
    if a.max_train is not None and a.max_train <= 0:
        raise PrepareError(f"--max-train must be positive, got {a.max_train}")
    if "train" not in splits and not a.full_dict:
        raise PrepareError("--splits has no train split: the pruned dictionary is built from it (or pass --full-dict)")
    if a.full_dict and not Path(a.full_dict).is_file():
        raise PrepareError(f"dictionary not found: {a.full_dict}; pass --full-dict with a fairseq dict.txt "
                           "(e.g. XLM-R's, see ../shared/docs/DATA.md §3) or leave it out for a pruned dictionary")
    if a.download and a.name != "multi30k":
        raise PrepareError(f"--download only knows Multi30k, not --name {a.name!r}; pass --raw-dir instead")


def prepare(a: TranslationPrep, command: str) -> Tuple[Path, Dict[str, SplitStats], int]:
    """Run the whole pipeline; returns (output folder, per-split stats, dictionary size)."""
    splits = parse_splits(a.splits)
    validate_args(a, splits)
    template = resolve_template(a.template, a.src, a.tgt)
    sp = load_spm(a.spm_model)
    out = output_dir(a)
    check_output_dir(out, a.overwrite)
    stats = locate_raw_files(a, splits)
    for s in stats.values():  # every file is checked before any work is done
        check_pair_counts(s)
    logger.info("template: %s", template)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it private; the final folder should not be
    try:
        (work / "text").mkdir()
        (work / "spm").mkdir()
        for s in stats.values():
            prepare_split(s, sp, template, work, a.src, a.tgt, a.max_train if s.split == "train" else None, a.workers)
        full_dict = a.full_dict
        if full_dict is None and sp.kind == "hf_tokenizer":
            # BPE segments through intermediate tokens the text never shows: a pruned dictionary would break
            # the exported tokenizer (convert/export_hf.py), so the whole vocabulary is the dictionary
            (work / VOCABULARY_DICT).write_text("".join(f"{t} 1\n" for t in sp.vocabulary()), encoding="utf-8")
            full_dict = str(work / VOCABULARY_DICT)
        args = preprocess_command(list(stats), a.src, a.tgt, full_dict, a.workers)
        logger.info("running fairseq-preprocess %s (in the output folder)", shlex.join(args))
        output = run_preprocess(args, work)
        check_binarized(output, stats, a.src, a.tgt, bool(full_dict))
        dict_size = dictionary_size(work / f"dict.{a.src}.txt")
        # the model that encoded the pieces, where DiffusionLM and fairseq-dlm-demo look for it at inference
        shutil.copyfile(a.spm_model, work / subword_file_name(a.spm_model))
        write_readme(work, a, command, template, stats, args, dict_size)
        finalize_output(work, out, a.keep_intermediate)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return out, stats, dict_size


def summary(out: Path, stats: Dict[str, SplitStats], dict_size: int, full_dict: Optional[str]) -> str:
    """Pairs per split, dictionary size and output folder: the table the script prints."""
    rows = [f"{'split':<8} {'raw':>8} {'read':>8} {'dropped':>8} {'pairs':>8}"]
    rows += [f"{s.split:<8} {s.raw:>8} {s.used:>8} {s.dropped:>8} {s.kept:>8}" for s in stats.values()]
    kind = (f"full, {full_dict}" if full_dict else
            "the tokenizer's whole vocabulary" if (out / VOCABULARY_DICT).is_file() else
            "joined, pruned to the training pieces")
    return "\n".join(rows + [f"dictionary: {dict_size} symbols ({kind})", f"output: {out}"])


def add_corpus_arguments(p: argparse.ArgumentParser, default_out: str) -> None:
    """The options that the corpus scripts (prepare_iwslt14/wmt14/gigaword.py) pass on to :func:`main`."""
    p.add_argument("--spm-model", required=True,
                   help="the backbone's subword model: sentencepiece.bpe.model, or an HF tokenizer.json")
    p.add_argument("--full-dict", help="the backbone's dict.txt (XLM-R's full dictionary); default: pruned")
    p.add_argument("--out-dir", default=default_out, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers and SentencePiece threads")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder this script wrote before")


def prepare_extracted(text_dir: Path, a, src: str, tgt: str, name: str, template: str, command: str) -> str:
    """:func:`prepare` of ``text_dir/{train,valid,test}.{src,tgt}`` with the options of
    :func:`add_corpus_arguments` (``a``); the intermediate text is not kept.  Returns the summary."""
    prep = TranslationPrep(raw_dir=str(text_dir), src=src, tgt=tgt, name=name,
                           splits=["train=train", "valid=valid", "test=test"], template=template,
                           spm_model=a.spm_model, out_dir=a.out_dir, workers=a.workers, keep_intermediate=False,
                           full_dict=a.full_dict, overwrite=a.overwrite)
    out, stats, dict_size = prepare(prep, command)
    return summary(out, stats, dict_size, prep.full_dict)
