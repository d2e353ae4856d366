"""``fairseq-generate --scoring rouge``: ROUGE-1/2/L F of this package's metrics as a fairseq scorer.

fairseq ships BLEU scorers (``bleu``, ``sacrebleu``) but none for summarisation; the paper's
Gigaword evaluation reports ROUGE-1/2/L F (SPEC §7.2).  fairseq-generate calls ``add_string(ref,
hyp)`` with the post-processed (``--post-process sentencepiece``) strings and prints
``result_string()`` on its ``Generate <subset> ...`` line; ``score()`` is ROUGE-L.
"""
from dataclasses import dataclass, field

from fairseq.dataclass import FairseqDataclass
from fairseq.scoring import BaseScorer, register_scorer

from .rouge import ROUGE_TYPES, rouge_report


@dataclass
class RougeScorerConfig(FairseqDataclass):
    rouge_no_stemmer: bool = field(
        default=False, metadata={"help": "ROUGE without the Porter stemmer (the paper's rouge-score uses it)"}
    )


@register_scorer("rouge", dataclass=RougeScorerConfig)
class RougeScorer(BaseScorer):
    """Mean ROUGE-1/2/L F × 100 over the examples added (rouge-score, SPEC §7.2)."""

    def add_string(self, ref: str, pred: str) -> None:
        self.ref.append(ref)
        self.pred.append(pred)

    def _report(self) -> dict:
        return rouge_report(self.pred, self.ref, use_stemmer=not self.cfg.rouge_no_stemmer)

    def score(self) -> float:
        return self._report()["rougeL"]

    def result_string(self) -> str:
        report = self._report()
        scores = ", ".join(f"{name} = {report[name]:.2f}" for name in ROUGE_TYPES)
        stem = "no" if self.cfg.rouge_no_stemmer else "yes"
        return f"ROUGE F: {scores} (rouge-score, stemmer: {stem}, mean over {report['n']} examples)"
