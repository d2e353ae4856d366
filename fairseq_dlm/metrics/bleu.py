"""BLEU of a ``fairseq-generate`` output file, as the project reports it (SPEC §7.1).

Two labelled scores: standard cased sacrebleu BLEU with its signature, and the paper's
lower-cased "parity" BLEU with an honest ``case:lc`` signature.  Hypotheses are the detokenized
``D-`` lines and references the ``T-`` lines (decoded with ``--post-process``).
"""
import re
from pathlib import Path
from typing import Dict


def read_generate_output(path) -> Dict[str, Dict[int, str]]:
    """``{"hyp": {id: D-line text}, "ref": {id: T-line text}}`` from a generate-*.txt file."""
    text = Path(path).read_text(encoding="utf-8")
    hyps = {int(i): h for i, h in re.findall(r"^D-(\d+)\t\S+\t(.*)$", text, re.M)}
    refs = {int(i): r for i, r in re.findall(r"^T-(\d+)\t(.*)$", text, re.M)}
    return {"hyp": hyps, "ref": refs}


def bleu_report(path, tokenize: str = "13a", examples: int = 5) -> dict:
    """Cased and lower-cased corpus BLEU of a generate output file, with signatures and examples."""
    import sacrebleu

    out = read_generate_output(path)
    ids = sorted(out["hyp"])
    missing = [i for i in ids if i not in out["ref"]]
    if missing:
        raise ValueError(f"{path}: hypotheses without references (ids {missing[:5]}); was the data decoded with targets?")
    hyps, refs = [out["hyp"][i] for i in ids], [[out["ref"][i] for i in ids]]
    cased = sacrebleu.metrics.BLEU(tokenize=tokenize)
    lower = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=True)
    return {
        "bleu": round(cased.corpus_score(hyps, refs).score, 2),
        "signature": str(cased.get_signature()),
        "bleu_lc": round(lower.corpus_score(hyps, refs).score, 2),
        "signature_lc": str(lower.get_signature()),
        "sentences": len(ids),
        "examples": [(out["ref"][i], out["hyp"][i]) for i in ids[:examples]],
    }
