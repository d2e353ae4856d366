"""fairseq_dlm.data.templates and fairseq_dlm.data.text: the paper's prompt templates (SPEC §2.3) and
the text normalisation (SPEC §2.2), shared by tasks, data-preparation scripts and instruction data."""
import pytest

from fairseq_dlm.data.templates import (
    LANGUAGE_NAMES,
    SUMMARIZATION_TEMPLATE,
    TEMPLATES,
    TRANSLATION_TEMPLATE,
    TemplateError,
    fill_template,
    resolve_template,
)
from fairseq_dlm.data.text import is_blank, normalise


@pytest.mark.parametrize("name_or_text, src, tgt, expected", [
    (None, "de", "en", "Translate the German sentence to English. German: {src} English:"),  # paper footnote 2
    ("translation", "de", "en", "Translate the German sentence to English. German: {src} English:"),
    ("translation", "en", "de", "Translate the English sentence to German. English: {src} German:"),  # WMT14
    ("translation", "fr", "en", "Translate the French sentence to English. French: {src} English:"),
    ("translation", "cs", "en", "Translate the Czech sentence to English. Czech: {src} English:"),
    ("summarization", None, None, "Summarize the following article. Article: {src} Summary:"),
    (TRANSLATION_TEMPLATE, "ro", "en", "Translate the Romanian sentence to English. Romanian: {src} English:"),
    ("  Übersetze  {src_lang}→{tgt_lang}:\t{src}  ", "de", "en", "Übersetze German→English: {src}"),  # normalised
    ("Q: {src} A:", "xx", "yy", "Q: {src} A:"),  # no language placeholder: codes unused
    ('JSON {"a": {}} {0} {src}', None, None, 'JSON {"a": {}} {0} {src}'),  # not placeholders: plain text
])
def test_resolve_exact_strings(name_or_text, src, tgt, expected):
    assert resolve_template(name_or_text, src, tgt) == expected


def test_registry_and_languages():
    assert TEMPLATES == {"translation": TRANSLATION_TEMPLATE, "summarization": SUMMARIZATION_TEMPLATE}
    assert SUMMARIZATION_TEMPLATE == "Summarize the following article. Article: {src} Summary:"
    wmt_iwslt = ("ar cs de en es et fi fr gu ha he hi hr is it iu ja kk km ko lt lv nl pl ps pt ro ru sl ta th tr uk "
                 "vi zh")
    assert not set(wmt_iwslt.split()) - set(LANGUAGE_NAMES)
    assert (LANGUAGE_NAMES["de"], LANGUAGE_NAMES["en"], LANGUAGE_NAMES["fr"], LANGUAGE_NAMES["cs"]) == (
        "German", "English", "French", "Czech")


@pytest.mark.parametrize("src, tgt, line, expected", [
    ("de", "en", "der hund sieht einen ball",
     "Translate the German sentence to English. German: der hund sieht einen ball English:"),
    ("en", "de", "the dog sees a ball",
     "Translate the English sentence to German. English: the dog sees a ball German:"),
    ("fr", "en", "le chien voit une balle",
     "Translate the French sentence to English. French: le chien voit une balle English:"),
])
def test_fill_translation(src, tgt, line, expected):
    assert fill_template(resolve_template("translation", src, tgt), line) == expected


def test_fill_summarization_and_normalisation():
    template = resolve_template("summarization")
    assert fill_template(template, "a  short\tarticle") == (
        "Summarize the following article. Article: a short article Summary:")
    assert fill_template(template, "{src_lang} {src}") == (  # the source text is not searched for placeholders
        "Summarize the following article. Article: {src_lang} {src} Summary:")
    assert fill_template("{src}", "gru\u0308n\u200b ") == "gr\u00fcn\u200b"  # NFC; invisible inside text is kept


@pytest.mark.parametrize("name_or_text, src, tgt, needles", [
    ("Translate: English:", "de", "en", ["template 'Translate: English:' has no {src} placeholder", "add {src}"]),
    ("", "de", "en", ["has no {src} placeholder"]),
    ("{source} {src}", "de", "en", ["unknown placeholder(s) {source}", "{src}, {src_lang}, {tgt_lang}"]),
    ("{de}: {src} {en}:", "de", "en", ["unknown placeholder(s) {de}, {en}"]),
    ("translate", "de", "en", ["unknown template name 'translate'", "summarization, translation"]),
    ("translation", "de", "xh", ["no language name for code 'xh'", "known: ar cs", "Xhosa"]),
    ("translation", None, "en", ["no source language code was given"]),
    ("{src} {tgt_lang}:", "de", None, ["no target language code was given"]),
])
def test_resolve_errors(name_or_text, src, tgt, needles):
    with pytest.raises(TemplateError) as e:
        resolve_template(name_or_text, src, tgt)
    for needle in needles:
        assert needle in str(e.value), (needle, str(e.value))
    assert isinstance(e.value, ValueError)


def test_error_names_the_option():
    """The script passes its flag so that the message says what to change."""
    with pytest.raises(TemplateError, match=r"^--template 'Translate: English:' has no \{src\} placeholder; add"):
        resolve_template("Translate: English:", "de", "en", option="--template")
    with pytest.raises(TemplateError, match="pass --prompt-template with the names written out"):
        resolve_template(None, "de", "qq", option="--prompt-template")


@pytest.mark.parametrize("template, needle", [
    ("Translate: English:", "has no {src} placeholder"),
    (TRANSLATION_TEMPLATE, "unknown placeholder(s) {src_lang}, {tgt_lang}"),  # not resolved
    ("{src} {foo}", "unknown placeholder(s) {foo}"),
])
def test_fill_errors(template, needle):
    with pytest.raises(TemplateError) as e:
        fill_template(template, "x")
    assert needle in str(e.value) and "resolve_template" in str(e.value)


@pytest.mark.parametrize("line, expected", [
    ("gru\u0308n", "gr\u00fcn"),  # NFD → NFC
    ("Cafe\u0301", "Caf\u00e9"),
    ("  die   katze\tmag\n einen apfel  \r\n", "die katze mag einen apfel"),  # stripped, runs collapsed
    ("a\u00a0\u2003b\u2028c", "a b c"),  # unicode whitespace is whitespace
    ("", ""),
    ("   \t\n", ""),
    ("\u200b", ""),  # invisible only → empty
    ("\u200b\u2060 \ufeff", ""),
    ("\u200d\x07", ""),  # ZWJ + a control character
    ("\u00ad \u200e\u200f \U000e0041", ""),  # soft hyphen, bidi marks, a tag character
    ("vo\u200cgel", "vo\u200cgel"),  # ZWNJ inside a word is kept
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),  # Persian
    ("\u200bhallo ", "\u200bhallo"),  # visible text: its invisible characters are kept
    ("\ufffd", "\ufffd"),  # the replacement character is visible
])
def test_normalise(line, expected):
    assert normalise(line) == expected


def test_is_blank():
    assert is_blank("") and is_blank(" \u200b ") and is_blank("\x00\x1f\x7f\x9f")
    assert not is_blank("a") and not is_blank("\u00a0") and not is_blank("\u200ca")
