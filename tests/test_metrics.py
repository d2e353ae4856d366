"""BLEU reporting from fairseq-generate output files."""
import pytest
import sacrebleu

from fairseq_dlm.metrics.bleu import bleu_report

GEN = """S-1\tsource one
T-1\tThe Dog runs .
H-1\t-0.1\tthe dog runs .
D-1\t-0.1\tthe dog runs .
S-0\tsource zero
T-0\tA man sees a red ball.
H-0\t-0.2\tA man sees a ball.
D-0\t-0.2\tA man sees a ball.
Generate test with beam=5: BLEU = 1.0
"""


def test_bleu_report_cased_and_lowercased(tmp_path):
    path = tmp_path / "generate-test.txt"
    path.write_text(GEN, encoding="utf-8")
    r = bleu_report(path)
    hyps, refs = ["A man sees a ball.", "the dog runs ."], [["A man sees a red ball.", "The Dog runs ."]]
    assert r["bleu"] == round(sacrebleu.corpus_bleu(hyps, refs).score, 2)
    assert r["bleu_lc"] == round(sacrebleu.corpus_bleu(hyps, refs, lowercase=True).score, 2)
    assert r["bleu_lc"] > r["bleu"]
    assert "case:lc" in r["signature_lc"] and "case:mixed" in r["signature"]
    assert r["sentences"] == 2 and r["examples"][0] == ("A man sees a red ball.", "A man sees a ball.")


def test_bleu_report_needs_references(tmp_path):
    path = tmp_path / "generate-test.txt"
    path.write_text("D-3\t-0.1\tfoo\n", encoding="utf-8")
    with pytest.raises(ValueError, match="without references"):
        bleu_report(path)
