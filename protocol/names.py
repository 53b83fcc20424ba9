"""The rule for names shown to people: board names and display names (docs/protocol.md,
"Board-name rule" and "Display-name rule").

A name may hold only the code points of :data:`names_table.ALLOWED`: those assigned in Unicode
14.0.0 that are not controls, format characters (bidirectional overrides, zero-width
characters), surrogates, private-use characters, line or paragraph separators, space separators
other than U+0020, or invisible (default-ignorable code points and U+2800 BRAILLE PATTERN
BLANK).  Bidirectional overrides and invisible characters are how one name is made to look like
another, so they are refused outright.

The table is generated once from Python 3.11's Unicode tables and shipped, so that every
runtime gives the same verdict: reading the categories from the running Python would let two
nodes on different Unicode versions disagree about a name that holds a code point assigned in
one version and not the other.  Because a name holds only code points assigned in Unicode
14.0.0, its normalization form C is the same under every later Unicode version (Unicode's
normalization stability policy), so the NFC check may use the runtime's tables.
"""

from __future__ import annotations

import re
import unicodedata

from .names_table import ALLOWED, UNICODE_VERSION

__all__ = ["NAME_UNICODE_VERSION", "check_visible_text", "allowed_in_name"]

#: The Unicode version whose assigned code points and categories the name rule uses.
NAME_UNICODE_VERSION = UNICODE_VERSION


#: Printable ASCII is all allowed (the first range of the table); most names are made of it,
#: and one search in C answers for them.
_NOT_PRINTABLE_ASCII = re.compile("[^\x20-\x7e]")
assert ALLOWED[0] == (0x20, 0x7E)


def _flags() -> bytes:
    # One byte per code point up to the last allowed one (about 200 KiB; nothing past plane 3
    # is allowed): indexing it is several times faster than bisecting the ranges, and it is
    # built from the table in a millisecond.
    flags = bytearray(ALLOWED[-1][1] + 1)
    for lo, hi in ALLOWED:
        flags[lo : hi + 1] = b"\x01" * (hi + 1 - lo)
    return bytes(flags)


_FLAGS = _flags()


def allowed_in_name(ch: str) -> bool:
    """Whether the one-character string ``ch`` may occur in a name."""
    cp = ord(ch)
    return cp < len(_FLAGS) and _FLAGS[cp] == 1


def _first_refused(text: str) -> str | None:
    if _NOT_PRINTABLE_ASCII.search(text) is None:
        return None
    flags, end = _FLAGS, len(_FLAGS)
    for ch in text:
        cp = ord(ch)
        if cp >= end or not flags[cp]:
            return ch
    return None


def check_visible_text(text: str, what: str, *, error: type[Exception]) -> None:
    """The shared rule for names shown to people (board names, display names).

    Every code point allowed by the table (see the module docstring), no leading or trailing
    U+0020 (the only white space the table allows), and NFC.  The caller checks the lengths.
    Raises ``error`` (a message naming ``what``) when the rule is broken.
    """
    bad = _first_refused(text)
    if bad is not None:
        raise error(
            f"{what}: character U+{ord(bad):04X} is not allowed (unassigned in Unicode "
            f"{UNICODE_VERSION}, or a control, format, private-use, separator or invisible character)"
        )
    if text[:1] == " " or text[-1:] == " ":
        raise error(f"{what}: must not begin or end with white space")
    # Checked after the table on purpose: NFC agrees across Unicode versions only for code
    # points assigned in all of them.
    if not unicodedata.is_normalized("NFC", text):
        raise error(f"{what}: must be in Unicode normalization form C")
