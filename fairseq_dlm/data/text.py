"""Text normalisation shared by the data-preparation scripts, the tasks and the instruction data
builder (SPEC §2.2): one implementation, so that training text, prompts and interactive input are
normalised alike.

``normalise(line)``: NFC unicode normalisation, then whitespace stripped and collapsed to single
spaces (``" ".join(s.split())``); no lowercasing, no tokenisation. A line that holds only invisible
characters (``INVISIBLE``: controls and Unicode's Default_Ignorable_Code_Point, e.g. a lone zero-width
space) becomes ``""``, so callers can drop it as empty. Inside real text such characters are kept:
ZWNJ/ZWJ are spelling in Persian and Indic scripts.

This module imports only the standard library: scripts load it by path without importing
``fairseq_dlm`` (which imports fairseq and torch).
"""
import re
import unicodedata

# Characters that render as nothing: C0/C1 controls and Unicode's Default_Ignorable_Code_Point
# (DerivedCoreProperties.txt) -- soft hyphen, zero-width space, ZWNJ/ZWJ, bidi marks, word joiner, BOM,
# variation selectors, Hangul fillers, tags. str.split() keeps them, so a side made only of these (and
# spaces) would pass as text and, on the source side, get the prompt's pieces; it counts as empty
# (``normalise``). Inside real text they are kept: ZWNJ/ZWJ are spelling in Persian and Indic scripts.
INVISIBLE = ((0x0000, 0x001F), (0x007F, 0x009F),  # controls (Cc)
             (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
             (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
             (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
             (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
BLANK = re.compile("[ " + "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in INVISIBLE) + "]*")

__all__ = ["BLANK", "INVISIBLE", "collapse_whitespace", "is_blank", "normalise"]


def collapse_whitespace(text: str) -> str:
    """Strip ``text`` and collapse every whitespace run (``str.split``'s notion) to one space."""
    return " ".join(text.split())


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing but spaces and invisible characters (``INVISIBLE``); ``""`` is blank.

    Expects whitespace already collapsed to spaces (as :func:`normalise` does): whitespace that is
    neither a space nor a control character (e.g. U+00A0, U+2028) counts as visible here.
    """
    return BLANK.fullmatch(text) is not None


def normalise(line: str) -> str:
    """NFC unicode normalisation, then strip and collapse whitespace (``" ".join(s.split())``); a line
    of invisible characters only (``BLANK``, e.g. a lone zero-width space) becomes ``""``."""
    text = collapse_whitespace(unicodedata.normalize("NFC", line))
    return "" if is_blank(text) else text
