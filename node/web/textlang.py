"""What the pages say about text and numbers beyond the words: the language of a post's body
(the ``lang`` attribute), numbers with separators, and times with their zone.

Screen readers pick their voice, and browsers their fonts and line breaking, from ``lang``.
A post does not declare its language, so the body's script decides: text that is mostly Han
characters is marked ``zh`` and anything else is left unmarked (it inherits nothing wrong,
because post bodies sit in elements with ``lang=""`` cleared by :func:`lang_attr`), rather than
guessing among the languages written in Latin script.  Used by the member UI, the public view
and the static copy (node/publish.py).
"""

from __future__ import annotations

import datetime
import re
import time

from markupsafe import Markup

__all__ = ["body_lang", "lang_attr", "number", "when_zoned", "iso_utc"]

_SAMPLE_CHARS = 400  # code points of a body looked at: enough to tell its script


# Han ideographs: the CJK Unified Ideographs block, its extension A, the supplementary planes'
# extensions and the compatibility ideographs.  One regular-expression pass over a body costs
# microseconds, where asking unicodedata about each character cost milliseconds a page.
_HAN = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002fa1f]")
# A letter of any script: a word character that is not a digit or an underscore.
_LETTER = re.compile(r"[^\W\d_]")


def body_lang(text: str) -> str:
    """``"zh"`` when most letters of ``text`` are Han characters, else ``""`` (unknown)."""
    sample = text[:_SAMPLE_CHARS]
    letters = len(_LETTER.findall(sample))
    han = len(_HAN.findall(sample))
    return "zh" if letters and han * 2 >= letters else ""


def lang_attr(text: str) -> Markup:
    """A ` lang="…"` attribute for an element holding ``text``.

    Chinese text gets ``lang="zh"``; other text gets ``lang=""`` (unknown), so that it does
    not inherit the page's language, which is the member's and not the author's.
    """
    return Markup(' lang="{}"').format(body_lang(text))


def number(value: int, lang: str = "en") -> str:
    """``value`` with thousands separators, as both English and Chinese write them (12,345)."""
    del lang  # both UI languages group digits by three with a comma
    return f"{value:,}"


# Times inside these bounds (the years 5 to 9987) are formatted from the C library's struct tm,
# three times faster than through datetime (a thread page shows 200 times); outside them,
# where the two could differ at the edges of datetime's years 1 to 9999, datetime decides.
# tests/web/test_render_cache.py holds both paths to the same text in several zones.
_FAST_MS = range(-62_000_000_000_000, 253_000_000_000_000)


def when_zoned(ms: int) -> str:
    """A post time in the node's local zone, to the minute, with the zone's offset from UTC
    (``2024-03-08 20:13 UTC+08:00``): a member reading from another zone can tell."""
    if ms in _FAST_MS:
        local_tm = time.localtime(ms / 1000)
        minutes = local_tm.tm_gmtoff // 60
        sign = "-" if minutes < 0 else "+"
        hours, mins = divmod(abs(minutes), 60)
        return time.strftime("%Y-%m-%d %H:%M", local_tm) + f" UTC{sign}{hours:02d}:{mins:02d}"
    return _when_zoned_datetime(ms)


def _when_zoned_datetime(ms: int) -> str:
    try:
        local = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).astimezone()
    except (OverflowError, OSError, ValueError):
        return "?"
    offset = local.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return local.strftime("%Y-%m-%d %H:%M") + f" UTC{sign}{hours:02d}:{mins:02d}"


def iso_utc(ms: int) -> str:
    """A post time as ISO 8601 in UTC to the second (``2024-03-08T12:13:20Z``), for ``datetime``
    attributes; "" for a time no calendar date holds."""
    if ms in _FAST_MS:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
    return _iso_utc_datetime(ms)


def _iso_utc_datetime(ms: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return ""
