"""The offline instruction mixture behind ``scripts/build_instruct_mixture.py`` (see its docstring
for the shards and their formats): sources, example makers, shards, and the leak check against the
evaluation prompts.  Standard library only."""
import gzip
import hashlib
import json
import logging
import random
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import UserError
from .instruct_templates import (
    CHOICE_STYLES, CHOICE_TRANSLATION_QUESTIONS, FS_TRANSLATION_HEADERS, GSM8K_QUESTION, LETTERS, TRANSLATION_TEMPLATES,
    choice_block, choice_prompt, gsm8k_target, lang_name, numeric_distractors, translation_fs, translation_zs,
)
from .text import normalise

logger = logging.getLogger(__name__)

DEFAULT_RATIOS = {"translation_zs": 0.30, "translation_fs": 0.15, "gsm8k_zs": 0.15, "gsm8k_fs": 0.10,
                  "choice_zs": 0.20, "choice_fs": 0.10}
FAMILIES = tuple(DEFAULT_RATIOS)
EVAL_NGRAM = 13


class BuildError(UserError, RuntimeError):
    """Input or output that cannot be used; the message names the path and the fix."""


class LeakError(UserError, RuntimeError):
    """A training/valid example whose inputs equal an evaluation prompt."""


# ---------------------------------------------------------------------------------------------
# sources


def read_lines(path: Path) -> List[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [normalise(line) for line in f]


def find_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise BuildError(f"{folder / (stem + '.gz')}: not found (--data-dir must hold multi30k/ and gsm8k/)")


def read_multi30k(data_dir: Path, split: str, languages: Sequence[str]) -> Dict[str, List[str]]:
    """Line-aligned ``{lang: lines}`` for ``en`` and ``languages``; lines with an empty side are
    blanked in every language (dropped later)."""
    folder = data_dir / "multi30k"
    columns = {lang: read_lines(find_file(folder, f"{split}.{lang}")) for lang in ("en", *languages)}
    sizes = {lang: len(lines) for lang, lines in columns.items()}
    if len(set(sizes.values())) != 1:
        raise BuildError(f"{folder}: {split} files are not line-aligned ({sizes})")
    return columns


def clean_gsm8k_answer(answer: str) -> Tuple[str, str]:
    """(worked solution without ``<<…>>`` annotations on one line, final answer) from a GSM8K answer."""
    if "####" not in answer:
        raise ValueError("no '#### <answer>' line")
    work, final = answer.rsplit("####", 1)
    final = normalise(final)
    if not re.search(r"\d", final):
        raise ValueError(f"final answer {final!r} has no number")
    steps = [normalise(line) for line in re.sub(r"<<[^>]*>>", "", work).splitlines()]
    # one step per line, often without a full stop: end each with one so the steps stay sentences
    work = " ".join(step if step[-1] in ".!?:;," else step + "." for step in steps if step)
    return work, final


def read_gsm8k(data_dir: Path, split: str = "train") -> List[Tuple[str, str, str]]:
    """``(question, worked solution, final answer)`` of GSM8K ``split`` (train, test), in file order;
    a row that cannot be read is skipped with a warning naming its line."""
    path = find_file(data_dir / "gsm8k", f"{split}.jsonl")
    problems = []
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                work, final = clean_gsm8k_answer(obj["answer"])
                question = normalise(obj["question"])
            except (ValueError, KeyError, TypeError) as e:
                logger.warning("%s:%d: skipped (%s)", path, n, e)
                continue
            problems.append((question, work, final))
    if not problems:
        raise BuildError(f"{path}: no usable problem")
    return problems


# ---------------------------------------------------------------------------------------------
# example makers


class Sources:
    """The loaded data: Multi30k columns and GSM8K problems for one split."""

    def __init__(self, m30k: Dict[str, List[str]], gsm: List[Tuple[str, str, str]], languages: Sequence[str]):
        self.m30k, self.gsm, self.languages = m30k, gsm, list(languages)
        n = len(m30k["en"])
        self.lines = [i for i in range(n) if all(m30k[lang][i] for lang in m30k)]
        self.position = {i: k for k, i in enumerate(self.lines)}
        self.gsm_answers = [final for _, _, final in gsm]

    def pair(self, i: int, lang: str, to_en: bool) -> Tuple[str, str, str, str]:
        """(source, target, source code, target code) of Multi30k line ``i``."""
        if to_en:
            return self.m30k[lang][i], self.m30k["en"][i], lang, "en"
        return self.m30k["en"][i], self.m30k[lang][i], "en", lang


class Builder:
    """Makes the examples of each family for one split."""

    def __init__(self, src: Sources, shots: int, max_chars: int, n_options: Sequence[int]):
        self.src, self.shots, self.max_chars, self.n_options = src, shots, max_chars, list(n_options)
        self.dropped: Dict[str, int] = {}

    # -- job lists (small tuples; the examples are made one at a time when written)
    def jobs(self, family: str, rng: random.Random) -> List[tuple]:
        lines, langs = self.src.lines, self.src.languages
        if family == "translation_zs":
            jobs = [(i, lang, to_en) for i in lines for lang in langs for to_en in (True, False)]
        elif family == "translation_fs":
            jobs = [(i, rng.choice(langs), rng.random() < 0.5) for i in lines]
        elif family in ("choice_zs", "choice_fs"):
            jobs = [("m30k", i, rng.choice(langs), rng.random() < 0.5) for i in lines]
            jobs += [("gsm8k", g) for g in range(len(self.src.gsm))]
        elif family in ("gsm8k_zs", "gsm8k_fs"):
            jobs = [(g,) for g in range(len(self.src.gsm))]
        else:
            raise ValueError(family)
        rng.shuffle(jobs)
        return jobs

    def fits(self, inputs: str, targets: str) -> bool:
        return len(inputs) + len(targets) + 1 <= self.max_chars

    def demo_indices(self, rng: random.Random, n: int, exclude: int, size: Callable[[int], int], budget: int) -> List[int]:
        """Up to ``shots`` distinct indices ≠ ``exclude`` whose sizes fit in ``budget`` (a few tries each)."""
        chosen: List[int] = []
        for _ in range(self.shots):
            for _try in range(8):
                d = rng.randrange(n)
                if d == exclude or d in chosen:
                    continue
                if size(d) <= budget:
                    chosen.append(d)
                    budget -= size(d)
                    break
        return chosen

    def make(self, family: str, job: tuple, rng: random.Random) -> Optional[dict]:
        src = self.src
        if family == "translation_zs":
            i, lang, to_en = job
            s, t, sl, tl = src.pair(i, lang, to_en)
            k = rng.randrange(len(TRANSLATION_TEMPLATES))
            inputs, targets = translation_zs(s, t, sl, tl, k)
            rec = {"task": f"translation.{sl}-{tl}", "template": k}
        elif family == "translation_fs":
            i, lang, to_en = job
            s, t, sl, tl = src.pair(i, lang, to_en)
            h = rng.randrange(len(FS_TRANSLATION_HEADERS))
            extra = len(lang_name(sl)) + len(lang_name(tl)) + 6
            budget = self.max_chars - len(s) - len(t) - 80
            picks = self.demo_indices(rng, len(src.lines), src.position[i],
                                      lambda d: sum(map(len, src.pair(src.lines[d], lang, to_en)[:2])) + extra, budget)
            demos = [src.pair(src.lines[d], lang, to_en)[:2] for d in picks]
            inputs, targets = translation_fs(demos, s, t, sl, tl, h)
            rec = {"task": f"translation.{sl}-{tl}", "template": h, "shots": len(demos)}
        elif family in ("gsm8k_zs", "gsm8k_fs"):
            (g,) = job
            q, work, final = src.gsm[g]
            query = GSM8K_QUESTION.format(q=q)
            targets = gsm8k_target(work, final)
            demos: List[str] = []
            if family == "gsm8k_fs":
                def demo_text(d: int) -> str:
                    dq, dw, df = src.gsm[d]
                    return GSM8K_QUESTION.format(q=dq) + " " + gsm8k_target(dw, df, demo=True)
                budget = self.max_chars - len(query) - len(targets) - 2
                picks = self.demo_indices(rng, len(src.gsm), g, lambda d: len(demo_text(d)) + 1, budget)
                demos = [demo_text(d) for d in picks]
            inputs = normalise(" ".join(demos + [query]))
            rec = {"task": "gsm8k", "template": 0}
            if family == "gsm8k_fs":
                rec["shots"] = len(demos)
        elif family in ("choice_zs", "choice_fs"):
            style = CHOICE_STYLES[rng.randrange(len(CHOICE_STYLES))]
            block, answer, task, subject, answer_text = self.choice_item(job, rng, style, with_answer=False)
            if "(B) " not in block:                  # too few distinct options in a tiny corpus
                self.dropped[family] = self.dropped.get(family, 0) + 1
                return None
            blocks = [block]
            if family == "choice_fs":
                budget = self.max_chars - len(block) - 120
                demos: List[str] = []
                for _ in range(self.shots):
                    for _try in range(8):
                        other = self.random_choice_job(job, rng)
                        if other is None:
                            break
                        demo = self.choice_item(other, rng, style, with_answer=True)[0]
                        if len(demo) + 3 <= budget:
                            demos.append(demo)
                            budget -= len(demo) + 3
                            break
                blocks = demos + [block]
            inputs = choice_prompt(blocks, style, subject)
            targets = answer
            rec = {"task": task, "template": style}
            if family == "choice_fs":
                rec["shots"] = len(blocks) - 1
            rec["answer"] = answer_text
        else:
            raise ValueError(family)
        if not inputs or not targets or not self.fits(inputs, targets):
            self.dropped[family] = self.dropped.get(family, 0) + 1
            return None
        return {"inputs": inputs, "targets": targets, **rec}

    def random_choice_job(self, job: tuple, rng: random.Random) -> Optional[tuple]:
        """A demonstration of the same kind (translation: same language pair; or GSM8K), other item."""
        src = self.src
        if job[0] == "m30k":
            if len(src.lines) < 2:
                return None
            i = job[1]
            while True:
                d = src.lines[rng.randrange(len(src.lines))]
                if d != i:
                    return ("m30k", d, job[2], job[3])
        if len(src.gsm) < 2:
            return None
        while True:
            d = rng.randrange(len(src.gsm))
            if d != job[1]:
                return ("gsm8k", d)

    def choice_item(self, job: tuple, rng: random.Random, style: str, with_answer: bool) -> Tuple[str, str, str, str, str]:
        """(question block, answer letter, task, subject, text of the right option)."""
        src = self.src
        n_opt = rng.choice(self.n_options)
        if job[0] == "m30k":
            _, i, lang, to_en = job
            s, t, sl, tl = src.pair(i, lang, to_en)
            column = src.m30k[tl]
            distractors: List[str] = []
            seen = {t.casefold()}
            for _try in range(20 * n_opt):
                if len(distractors) >= n_opt - 1:
                    break
                cand = column[src.lines[rng.randrange(len(src.lines))]]
                if cand and cand.casefold() not in seen:
                    seen.add(cand.casefold())
                    distractors.append(cand)
            q = CHOICE_TRANSLATION_QUESTIONS[rng.randrange(len(CHOICE_TRANSLATION_QUESTIONS))]
            question = q.format(src=s, src_lang=lang_name(sl), tgt_lang=lang_name(tl))
            right, task, subject = t, f"choice.translation.{sl}-{tl}", "translation"
        else:
            _, g = job
            q, _work, final = src.gsm[g]
            distractors = numeric_distractors(final, src.gsm_answers, rng, n_opt - 1)
            question, right, task, subject = q, final, "choice.gsm8k", "grade school math"
        options = distractors + [right]
        rng.shuffle(options)
        letter = LETTERS[options.index(right)]
        return choice_block(question, options, letter if with_answer else None, style), letter, task, subject, right


# ---------------------------------------------------------------------------------------------
# writing


def open_shard(path: Path):
    """A text writer for a deterministic gzip file (no name, mtime 0 in the header)."""
    raw = open(path, "wb")
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)

    class _Writer:
        def write(self, s: str) -> None:
            gz.write(s.encode("utf-8"))

        def close(self) -> None:
            gz.close()
            raw.close()
    return _Writer()


def shard_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) & 0xFFFFFFFF


def write_shard(path: Path, builder: Builder, family: str, seed: int, limit: Optional[int]) -> int:
    rng = random.Random(shard_seed(seed, path.name))
    jobs = builder.jobs(family, rng)
    count = 0
    w = open_shard(path)
    try:
        for job in jobs:
            if limit is not None and count >= limit:
                break
            rec = builder.make(family, job, rng)
            if rec is None:
                continue
            w.write(json.dumps(rec, ensure_ascii=False) + "\n")
            count += 1
    finally:
        w.close()
    if count == 0:
        path.unlink()
    return count


# ---------------------------------------------------------------------------------------------
# leak check


def _key(text: str) -> bytes:
    return hashlib.blake2b(normalise(text).casefold().encode("utf-8"), digest_size=12).digest()


def _iter_jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                if isinstance(obj, dict):
                    yield obj


def _words(text: str) -> List[str]:
    return re.findall(r"\w+", normalise(text).casefold())


def _ngrams(words: Sequence[str], n: int) -> Iterator[int]:
    for k in range(len(words) - n + 1):
        yield hash(" ".join(words[k:k + n]))


def eval_files(eval_dir: Path) -> List[Path]:
    return sorted(p for p in eval_dir.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))


def leak_check(out_dir: Path, eval_dir: Path, ngram: int = EVAL_NGRAM) -> dict:
    """Compare every ``inputs`` written under ``out_dir`` (shards and ``valid/``) with the evaluation
    prompts of ``eval_dir`` (all ``*.jsonl[.gz]`` below it).

    Raises :class:`LeakError` naming the first few examples whose inputs equal an evaluation input
    (normalised, case-folded). Also counts examples sharing a ``ngram``-word span with a 0-shot
    evaluation prompt (warned, not fatal: common phrases may repeat). Returns the statistics.
    """
    files = eval_files(eval_dir)
    if not files:
        raise LeakError(f"{eval_dir}: no evaluation *.jsonl[.gz] file to check against")
    keys = set()
    grams = set()
    for path in files:
        zero_shot = "0-shot" in path.parts
        for obj in _iter_jsonl(path):
            text = obj.get("inputs")
            if isinstance(text, str):
                keys.add(_key(text))
                if zero_shot:
                    grams.update(_ngrams(_words(text), ngram))
    shards = sorted(p for p in out_dir.rglob("*.jsonl*") if p.is_file())
    leaks: List[str] = []
    overlap = 0
    checked = 0
    for path in shards:
        for n, obj in enumerate(_iter_jsonl(path), 1):
            checked += 1
            text = obj.get("inputs", "")
            if _key(text) in keys:
                leaks.append(f"{path}:{n}: {text[:120]!r}")
            if any(g in grams for g in _ngrams(_words(text), ngram)):
                overlap += 1
    stats = {"eval_files": len(files), "eval_inputs": len(keys), "checked": checked, "exact_matches": len(leaks),
             f"{ngram}gram_overlaps": overlap}
    if leaks:
        raise LeakError(f"{len(leaks)} written example(s) have the inputs of an evaluation prompt in {eval_dir}: "
                        + "; ".join(leaks[:5]))
    if overlap:
        logger.warning("leak check: %d of %d written examples share a %d-word span with a 0-shot evaluation "
                       "prompt (not an exact match; check if this is a real overlap)", overlap, checked, ngram)
    logger.info("leak check passed: %d examples vs %d evaluation prompts in %d files", checked, len(keys), len(files))
    return stats


# ---------------------------------------------------------------------------------------------
# building


def parse_ratios(items: Sequence[str]) -> Dict[str, float]:
    ratios = dict(DEFAULT_RATIOS)
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        for suffix in ("_train.jsonl.gz", "_train.jsonl", "_train"):
            name = name[: -len(suffix)] if name.endswith(suffix) else name
        if not sep or name not in ratios:
            raise BuildError(f"--ratio {item!r}: expected FAMILY=WEIGHT with FAMILY one of {', '.join(FAMILIES)}")
        try:
            w = float(value)
        except ValueError:
            raise BuildError(f"--ratio {item!r}: weight is not a number") from None
        if not w >= 0 or w == float("inf"):
            raise BuildError(f"--ratio {item!r}: weight must be a finite number >= 0")
        ratios[name] = w
    if sum(ratios.values()) <= 0:
        raise BuildError("--ratio: the weights sum to 0")
    return ratios


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise BuildError(f"--out {out}: exists and is not empty; pass --overwrite to replace its shards "
                             "or choose another folder")
        for folder in (out, out / "valid"):
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.is_file() and (p.name.endswith((".jsonl", ".jsonl.gz")) or p.name in ("ratio.json", "README.md")):
                        p.unlink()
    (out / "valid").mkdir(parents=True, exist_ok=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass
class MixtureOptions:
    """What to build (the flags of ``scripts/build_instruct_mixture.py``, which takes its defaults here)."""

    out: Path = field(metadata={"help": "output folder (refused if non-empty without overwrite)"})
    data_dir: Path = field(metadata={"help": "folder with multi30k/ and gsm8k/ (the shared data folder)"})
    eval_dir: Optional[Path] = field(default=None, metadata={"help": "evaluation prompts for the leak check "
                                                                     "(default: DATA_DIR/paper-eval)"})
    require_leak_check: bool = field(default=False, metadata={"help": "fail when the evaluation folder is absent"})
    languages: str = field(default="de,fr,cs", metadata={"help": "comma-separated Multi30k languages (↔ English)"})
    shots: int = field(default=3, metadata={"help": "demonstrations per few-shot prompt (K)"})
    max_chars: int = field(default=1600, metadata={"help": "cap on len(inputs)+len(targets) in characters"})
    options: str = field(default="2,3,4,4,4,5", metadata={"help": "numbers of options for multiple choice"})
    max_examples_per_shard: Optional[int] = field(default=None, metadata={"help": "cap per training shard"})
    max_valid_per_shard: int = field(default=500, metadata={"help": "cap per valid shard"})
    gsm8k_heldout: int = field(default=200, metadata={"help": "last N GSM8K train problems held out for valid/"})
    ratio: List[str] = field(default_factory=list, metadata={"help": "FAMILY=WEIGHT overrides of ratio.json"})
    seed: int = field(default=1, metadata={"help": "seed of every shard's generator"})
    overwrite: bool = field(default=False, metadata={"help": "replace the shards of an existing out folder"})


def build(args: MixtureOptions, command: str) -> dict:
    """Write the shards, ratio.json files and README.md of ``args.out``; returns the summary
    (``command``: the command line recorded in the README)."""
    t0 = time.time()
    data_dir: Path = args.data_dir
    if not data_dir.is_dir():
        raise BuildError(f"--data-dir {data_dir}: not found; it must hold multi30k/ and gsm8k/ "
                         "(the shared data folder, e.g. ../shared/data next to the repository)")
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    if not languages or "en" in languages:
        raise BuildError(f"--languages {args.languages!r}: give non-English Multi30k languages, e.g. de,fr,cs")
    for lang in languages:
        lang_name(lang)
    if args.shots < 1:
        raise BuildError("--shots must be >= 1")
    n_options = [int(x) for x in args.options.split(",")]
    if not n_options or min(n_options) < 2 or max(n_options) > len(LETTERS):
        raise BuildError(f"--options {args.options!r}: numbers between 2 and {len(LETTERS)}")
    ratios = parse_ratios(args.ratio)
    eval_dir = args.eval_dir or data_dir / "paper-eval"
    if not eval_dir.is_dir() and (args.require_leak_check or args.eval_dir is not None):
        raise BuildError(f"--eval-dir {eval_dir}: not found; the leak check needs the evaluation prompts")
    # read everything before touching --out
    train_m30k = read_multi30k(data_dir, "train", languages)
    valid_m30k = read_multi30k(data_dir, "val", languages)
    gsm = read_gsm8k(data_dir)
    held = max(0, min(args.gsm8k_heldout, len(gsm) - 2))
    gsm_train, gsm_valid = gsm[: len(gsm) - held], gsm[len(gsm) - held:]
    out: Path = args.out
    prepare_out(out, args.overwrite)

    counts: Dict[str, int] = {}
    dropped: Dict[str, int] = {}
    for split, m30k, problems, limit, folder in (
            ("train", train_m30k, gsm_train, args.max_examples_per_shard, out),
            ("valid", valid_m30k, gsm_valid, args.max_valid_per_shard, out / "valid")):
        builder = Builder(Sources(m30k, problems, languages), args.shots, args.max_chars, n_options)
        for family in FAMILIES:
            if family.startswith("gsm8k") and len(problems) < 2:
                continue
            name = f"{family}_{split}.jsonl.gz"
            counts[f"{'' if split == 'train' else 'valid/'}{name}"] = write_shard(
                folder / name, builder, family, args.seed, limit)
            logger.info("%s: %d examples", folder / name, counts[f"{'' if split == 'train' else 'valid/'}{name}"])
        for k, v in builder.dropped.items():
            dropped[f"{k}_{split}"] = v
        written = {f"{f}_{split}.jsonl": ratios[f] for f in FAMILIES
                   if (folder / f"{f}_{split}.jsonl.gz").exists() and ratios[f] > 0}
        with open(folder / "ratio.json", "w", encoding="utf-8") as f:
            json.dump(written, f, indent=1)
            f.write("\n")

    if eval_dir.is_dir():
        leak = leak_check(out, eval_dir)
    else:
        logger.warning("leak check skipped: %s not found (pass --eval-dir)", eval_dir)
        leak = {"skipped": f"{eval_dir} not found"}
    seconds = time.time() - t0
    sources = {str(p): sha256(p) for p in (
        *(find_file(data_dir / "multi30k", f"{s}.{lang}") for s in ("train", "val") for lang in ("en", *languages)),
        find_file(data_dir / "gsm8k", "train.jsonl"))}
    summary = {"counts": counts, "dropped_over_length": dropped, "leak_check": leak, "seconds": round(seconds, 1),
               "bytes": sum(p.stat().st_size for p in out.rglob("*.jsonl.gz")), "ratios": ratios}
    write_readme(out, args, command, summary, sources, len(gsm_train), held)
    return summary


def write_readme(out: Path, args: MixtureOptions, command: str, summary: dict, sources: Dict[str, str], n_gsm: int,
                 held: int) -> None:
    lines = [
        "# Instruction mixture built offline",
        "",
        "Written by `scripts/build_instruct_mixture.py` (see its docstring for the formats).",
        "",
        "Command:",
        "",
        f"    {command}",
        "",
        f"Seed {args.seed}, languages {args.languages} (each ↔ English), {args.shots}-shot few-shot prompts, "
        f"max {args.max_chars} characters per example, GSM8K train: {n_gsm} problems for training, the last "
        f"{held} held out for `valid/`.",
        "",
        "| shard | examples | weight |",
        "|---|---|---|",
    ]
    for name, n in summary["counts"].items():
        family = name.split("/")[-1].rsplit("_", 1)[0]
        lines.append(f"| `{name}` | {n} | {summary['ratios'].get(family, 0):g} |")
    lines += ["", f"Dropped as over-long: {json.dumps(summary['dropped_over_length'])}",
              f"Leak check against the evaluation prompts: {json.dumps(summary['leak_check'])}",
              f"Total {summary['bytes']} bytes of shards, built in {summary['seconds']} s.", "",
              "Sources (sha256, first 16 hex digits); no evaluation file (paper-eval, GSM8K test) is used:", ""]
    lines += [f"- `{p}` {h}" for p, h in sources.items()]
    lines += ["", "Licences: Multi30k research use (Flickr30k captions); GSM8K MIT (OpenAI). Not for redistribution "
              "beyond those terms.", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
