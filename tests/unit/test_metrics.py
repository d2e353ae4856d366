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


# --- the metric registry, BLEU and ROUGE scorers (SPEC §7.1, §7.2) ---------------------------

import math  # noqa: E402

from fairseq_dlm.metrics import available_metrics, get_metric, sum_stats  # noqa: E402
from fairseq_dlm.metrics.rouge import rouge_f, rouge_report  # noqa: E402


def test_bleu_hand_computed_cased_and_lowercased():
    # lower-cased: p1..p4 = 5/6, 3/5, 2/4, 1/3, BP = 1  ->  BLEU = (1/12)^(1/4)
    # cased ("The" != "the"): 5/6, 2/5, 1/4 and no 4-gram match -> exp smoothing 1/(2*3)
    hyps, refs = ["The cat sat on the mat"], ["the cat sat on a mat"]
    lc = get_metric("bleu_lc").score(hyps, refs)
    cased = get_metric("bleu").score(hyps, refs)
    assert lc.value == pytest.approx(100 * (1 / 12) ** 0.25)          # 53.73
    assert cased.value == pytest.approx(100 * (1 / 72) ** 0.25)       # 34.33
    assert lc.signature == "nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:" + sacrebleu.__version__
    assert "case:mixed" in cased.signature and lc.n == cased.n == 1


def test_bleu_stats_add_up_over_batches_to_corpus_bleu():
    hyps = ["The cat sat on the mat.", "A dog!", "Hello there", "", "Es ist diese Pyramide."]
    refs = ["the cat sat on a mat.", "The dog.", "hello there", "x", "es ist diese pyramide."]
    for tok in ("13a", "intl"):
        metric = get_metric("bleu", tokenize=tok)
        merged = metric.value(sum_stats([metric.stats(hyps[:2], refs[:2]), metric.stats(hyps[2:], refs[2:])]))
        assert merged == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tok).score)
        assert f"tok:{tok}" in metric.signature
    assert get_metric("bleu").score([], []).value == 0.0


def test_bleu_bad_tokenizer_and_unknown_metric_are_clear():
    with pytest.raises(ValueError, match="unknown sacrebleu tokenizer '14a'.*13a"):
        get_metric("bleu", tokenize="14a")
    with pytest.raises(KeyError, match="unknown metric 'blue'; known metrics: .*bleu, bleu_lc"):
        get_metric("blue")
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        get_metric("bleu").score(["a", "b"], ["a"])
    assert {"bleu", "bleu_lc", "rouge1", "rouge2", "rougeL", "exact_letter", "last_number",
            "squad_em", "squad_f1"} <= set(available_metrics())


ROUGE_CASES = [
    # (hyp, ref, rouge1 F, rouge2 F, rougeL F), computed by hand
    ("the cats ran", "cat running fast", 1 / 3, 0.0, 1 / 3),   # stems: cat=cat; ran != run
    ("a b c d", "a b d c", 1.0, 1 / 3, 0.75),                  # bigrams ab|bc,cd vs ab|bd,dc; LCS 3
    ("the cat", "the cat sat down", 2 / 3, 0.5, 2 / 3),        # P=1, R=1/2; bigram P=1, R=1/3
    ("", "a headline", 0.0, 0.0, 0.0),                         # empty hypothesis
]


def test_rouge_per_example_hand_computed():
    per = rouge_f([c[0] for c in ROUGE_CASES], [c[1] for c in ROUGE_CASES])
    for i, (_, _, r1, r2, rl) in enumerate(ROUGE_CASES):
        assert per["rouge1"][i] == pytest.approx(r1)
        assert per["rouge2"][i] == pytest.approx(r2)
        assert per["rougeL"][i] == pytest.approx(rl)


def test_rouge_corpus_is_mean_f_times_100_and_stats_merge():
    hyps, refs = [c[0] for c in ROUGE_CASES], [c[1] for c in ROUGE_CASES]
    expected = {t: 100 * sum(c[k] for c in ROUGE_CASES) / 4 for t, k in (("rouge1", 2), ("rouge2", 3), ("rougeL", 4))}
    for name, value in expected.items():
        metric = get_metric(name)
        assert metric.score(hyps, refs).value == pytest.approx(value)
        merged = metric.value(sum_stats([metric.stats(hyps[:1], refs[:1]), metric.stats(hyps[1:], refs[1:])]))
        assert merged == pytest.approx(value)
    assert expected["rouge1"] == pytest.approx(100 * (1 / 3 + 1 + 2 / 3) / 4)  # 50.0
    report = rouge_report(hyps, refs)
    assert report == {"rouge1": 50.0, "rouge2": round(100 * (1 / 3 + 0.5) / 4, 2),
                      "rougeL": round(100 * (1 / 3 + 0.75 + 2 / 3) / 4, 2), "n": 4}


def test_rouge_stemmer_and_english_only_tokenizer():
    per = rouge_f(["police killed the gunman", "東京都", "Müller kam"], ["police kill the gunman", "東京都", "müller kam"])
    assert per["rouge1"][0] == 1.0                    # Porter stemmer: killed -> kill
    assert per["rouge1"][1] == 0.0                    # non-Latin text has no tokens at all
    assert per["rouge1"][2] == 1.0                    # lower-cased; "ü" splits the word on both sides
    no_stem = get_metric("rouge1", use_stemmer=False).score(["police killed the gunman"], ["police kill the gunman"])
    assert no_stem.value == pytest.approx(75.0) and not math.isnan(no_stem.value)
