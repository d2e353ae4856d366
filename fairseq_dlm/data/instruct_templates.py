"""The instruction templates of the offline instruction mixture (``fairseq_dlm.data.instruct_mixture``):
translation (zero- and few-shot), GSM8K step-by-step answers, and multiple choice in the MMLU and BBH
layouts of the paper's evaluation prompts.  Standard library only."""
import random
import re
from typing import List, Optional, Sequence, Tuple

from . import templates
from .text import normalise

# Translation templates ({src_lang}, {tgt_lang}, {src}); the target language's name ends each one
# when it is a "Language:" field, so the answer follows as in the evaluation prompts.
TRANSLATION_TEMPLATES: Tuple[str, ...] = (
    templates.TRANSLATION_TEMPLATE,                                            # SPEC §2.3
    "Translate the sentences into {tgt_lang}. {src_lang}: {src} {tgt_lang}:",  # IWSLT14 eval wording
    "Translate to {tgt_lang}: {src}",
    "{src} Translate this sentence from {src_lang} to {tgt_lang}.",
    "How do you say \"{src}\" in {tgt_lang}?",
    "{src_lang}: {src} {tgt_lang}:",
)
# few-shot: an instruction once, then "Src: x Tgt: y" pairs (IWSLT14 1-shot layout)
FS_TRANSLATION_HEADERS: Tuple[str, ...] = (
    "Translate the sentences into {tgt_lang}.",
    "Translate the {src_lang} sentences to {tgt_lang}.",
    "",
)
GSM8K_QUESTION = "Question: {q} Step-by-Step Answer:"  # MGSM en (0/1/3-shot files)
MMLU_HEADER = "The following are multiple choice questions (with answers) about {subject}."
CHOICE_TRANSLATION_QUESTIONS: Tuple[str, ...] = (
    "Which is the {tgt_lang} translation of \"{src}\"?",
    "Which of the following is the {tgt_lang} translation of this {src_lang} sentence: \"{src}\"?",
    "What does \"{src}\" mean in {tgt_lang}?",
)
LETTERS = "ABCDEFGHIJ"
CHOICE_STYLES = ("mmlu", "bbh")
def lang_name(code: str) -> str:
    return templates.language_name(code, option="--languages")


def gsm8k_target(work: str, final: str, demo: bool = False) -> str:
    """Worked solution then ``The answer is N`` (``.`` after N in demonstrations, as in MGSM)."""
    return normalise(f"{work} The answer is {final}{'.' if demo else ''}")


def translation_zs(src: str, tgt: str, sl: str, tl: str, t: int) -> Tuple[str, str]:
    template = templates.resolve_template(TRANSLATION_TEMPLATES[t], sl, tl)
    return templates.fill_template(template, src), tgt


def translation_fs(demos: Sequence[Tuple[str, str]], src: str, tgt: str, sl: str, tl: str, h: int) -> Tuple[str, str]:
    header = FS_TRANSLATION_HEADERS[h].format(src_lang=lang_name(sl), tgt_lang=lang_name(tl))
    s, t = lang_name(sl), lang_name(tl)
    parts = [header] + [f"{s}: {ds} {t}: {dt}" for ds, dt in demos] + [f"{s}: {src} {t}:"]
    return normalise(" ".join(parts)), tgt


def choice_block(question: str, options: Sequence[str], answer: Optional[str], style: str) -> str:
    """One multiple-choice question: ``Q: … (A) … (B) … A:[ X]`` (BBH puts ``A:`` before the options)."""
    opts = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    middle = f"Q: {question} {opts} A:" if style == "mmlu" else f"Q: {question} A: {opts} A:"
    return middle + (f" {answer}" if answer else "")


def choice_prompt(blocks: Sequence[str], style: str, subject: str) -> str:
    text = " | ".join(blocks)
    if style == "mmlu":
        text = MMLU_HEADER.format(subject=subject) + " " + text
    return normalise(text)


def numeric_distractors(final: str, pool: Sequence[str], rng: random.Random, k: int) -> List[str]:
    """``k`` distinct wrong numbers near the answer (or from other problems' answers)."""
    value = int(final.replace(",", "")) if re.fullmatch(r"-?\d+(,\d{3})*", final) else None
    out: List[str] = []
    seen = {final.replace(",", "")}
    tries = 0
    while len(out) < k and tries < 200:
        tries += 1
        if value is not None and rng.random() < 0.75:
            op = rng.randrange(4)
            cand = (value + rng.choice([-1, 1]) * rng.randint(1, max(2, abs(value) // 5 + 1)) if op < 2
                    else value * 2 if op == 2 else value // 2)
            cand = f"{cand:,}" if "," in final else str(cand)
        else:
            cand = rng.choice(pool)
        key = cand.replace(",", "")
        if key not in seen and cand:
            seen.add(key)
            out.append(cand)
    return out
