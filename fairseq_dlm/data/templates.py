"""The paper's prompt templates (SPEC §2.3), written once for every task, data-preparation script and
the instruction data builder.

A template is text with placeholders in braces:

* ``{src}`` (required): where the source text goes;
* ``{src_lang}``, ``{tgt_lang}`` (optional): the English names of the source and target languages
  (``LANGUAGE_NAMES``), filled from language codes by :func:`resolve_template`.

Registered templates (``TEMPLATES``), selected by name:

* ``translation``: ``Translate the {src_lang} sentence to {tgt_lang}. {src_lang}: {src} {tgt_lang}:``
  (paper footnote 2, ``Translate the German sentence to English. German: {src} English:`` for de→en;
  the languages swap for WMT14 en→de);
* ``summarization``: ``Summarize the following article. Article: {src} Summary:`` (Gigaword, the
  project's default; [unverified] in the paper).

Two steps: :func:`resolve_template` (once per run) turns a name or a template text into a resolved
template that keeps only ``{src}``; :func:`fill_template` (once per line) puts the source text in.
Both return :func:`fairseq_dlm.data.text.normalise`-d text. Errors are :class:`TemplateError`
(a ``ValueError``) with a message that names the fix.

This module imports only the standard library and ``text``: scripts load both by path without
importing ``fairseq_dlm`` (which imports fairseq and torch).
"""
import functools
import logging
import re
from typing import Dict, Optional

from ..errors import UserError
from .text import normalise

logger = logging.getLogger(__name__)

# English names of language codes: the paper's languages, WMT (news/general, 2014-2023) and IWSLT.
LANGUAGE_NAMES: Dict[str, str] = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French", "gu": "Gujarati", "ha": "Hausa",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "is": "Icelandic", "it": "Italian", "iu": "Inuktitut",
    "ja": "Japanese", "kk": "Kazakh", "km": "Khmer", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian",
    "nl": "Dutch", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sl": "Slovenian", "sv": "Swedish", "ta": "Tamil", "th": "Thai", "tr": "Turkish", "uk": "Ukrainian",
    "vi": "Vietnamese", "zh": "Chinese",
}

SRC = "{src}"
LANGUAGE_PLACEHOLDERS = (("src_lang", "source"), ("tgt_lang", "target"))  # (placeholder, which language)
PLACEHOLDERS = ("src",) + tuple(name for name, _ in LANGUAGE_PLACEHOLDERS)
PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")  # other braces ("{}", "{0}", "{ x }") are plain text
TEMPLATE_NAME = re.compile(r"[A-Za-z][\w.-]*")  # what a name looks like; a template text has {src}

TRANSLATION_TEMPLATE = "Translate the {src_lang} sentence to {tgt_lang}. {src_lang}: {src} {tgt_lang}:"
SUMMARIZATION_TEMPLATE = "Summarize the following article. Article: {src} Summary:"
TEMPLATES: Dict[str, str] = {"translation": TRANSLATION_TEMPLATE, "summarization": SUMMARIZATION_TEMPLATE}
DEFAULT_TEMPLATE_NAME = "translation"  # what ``resolve_template(None, ...)`` selects

__all__ = ["DEFAULT_TEMPLATE_NAME", "LANGUAGE_NAMES", "SUMMARIZATION_TEMPLATE", "TEMPLATES", "TRANSLATION_TEMPLATE",
           "TemplateError", "fill_template", "language_name", "resolve_template", "template_text"]


class TemplateError(UserError, ValueError):
    """A template that cannot be used; the message says what to change."""


def template_text(name_or_text: Optional[str], option: str = "template") -> str:
    """The template text for a registered name (``TEMPLATES``), ``None`` (``DEFAULT_TEMPLATE_NAME``) or
    a template text itself (returned unchanged). ``option`` names the setting in error messages."""
    if name_or_text is None:
        return TEMPLATES[DEFAULT_TEMPLATE_NAME]
    if name_or_text in TEMPLATES:
        return TEMPLATES[name_or_text]
    if SRC not in name_or_text and TEMPLATE_NAME.fullmatch(name_or_text):
        raise TemplateError(f"unknown {option} name {name_or_text!r} (registered: {', '.join(sorted(TEMPLATES))}); "
                            "or give the template text with {src} where the source goes")
    return name_or_text


def check_placeholders(template: str, allowed, option: str = "template") -> None:
    """``template`` has ``{src}`` and no placeholder outside ``allowed``; else a TemplateError."""
    if SRC not in template:
        raise TemplateError(f"{option} {template!r} has no {{src}} placeholder; add {{src}} where the source "
                            "sentence goes, e.g. 'Translate the German sentence to English. German: {src} English:'")
    unknown = sorted({name for name in PLACEHOLDER.findall(template) if name not in allowed})
    if unknown:
        raise TemplateError(f"{option} {template!r} has unknown placeholder(s) "
                            f"{', '.join('{' + n + '}' for n in unknown)}; a template may use "
                            f"{', '.join('{' + n + '}' for n in allowed)} ({{src}} required)")


def language_name(code: Optional[str], which: str = "source", option: str = "template") -> str:
    """The English name of a language code (``LANGUAGE_NAMES``), e.g. ``de`` → ``German``."""
    if code is None:
        raise TemplateError(f"the {option} names the {which} language but no {which} language code was given")
    if code not in LANGUAGE_NAMES:
        raise TemplateError(f"no language name for code {code!r} (known: {' '.join(sorted(LANGUAGE_NAMES))}); "
                            f"pass {option} with the names written out, e.g. '... Xhosa: {{src}} English:'")
    return LANGUAGE_NAMES[code]


def resolve_template(name_or_text: Optional[str], src_lang: Optional[str] = None, tgt_lang: Optional[str] = None,
                     option: str = "template") -> str:
    """A registered name, ``None`` (the translation template) or a template text → the normalised
    template with ``{src_lang}``/``{tgt_lang}`` filled with language names; it keeps only ``{src}``.

    ``resolve_template(None, "de", "en")`` is ``Translate the German sentence to English. German: {src}
    English:``. The language codes are needed only when the template names the languages.
    ``option`` names the setting in error messages (e.g. ``--template``). TemplateError when the
    template has no ``{src}``, has an unknown placeholder or the name is not registered, or a
    language code has no name.
    """
    template = template_text(name_or_text, option)
    check_placeholders(template, PLACEHOLDERS, option)
    codes = {"src_lang": src_lang, "tgt_lang": tgt_lang}
    for placeholder, which in LANGUAGE_PLACEHOLDERS:
        key = "{" + placeholder + "}"
        if key in template:
            template = template.replace(key, language_name(codes[placeholder], which, option))
    resolved = normalise(template)
    logger.debug("prompt template %r (%s→%s): %r", name_or_text, src_lang, tgt_lang, resolved)
    return resolved


@functools.lru_cache(maxsize=64)
def check_resolved(template: str) -> None:
    """``template`` keeps ``{src}`` and no other placeholder (checked once per distinct template)."""
    try:
        check_placeholders(template, ("src",))
    except TemplateError as e:
        raise TemplateError(f"{e}; fill_template needs a template from resolve_template") from None


def fill_template(template: str, src: str) -> str:
    """The prompted source text: ``src`` in place of ``{src}`` (``str.replace``), normalised.

    ``template`` comes from :func:`resolve_template`; TemplateError when it has no ``{src}`` or still
    has another placeholder (e.g. an unresolved ``{src_lang}``).
    """
    check_resolved(template)
    return normalise(template.replace(SRC, src))
