"""The bodies of the collective-action kinds (docs/protocol.md, "Collective action").

Reports, letters, pledges and translations carry a few named values and a free text.  Their
body is a **field block** and, after one empty line, the text::

    company: Example Tech
    practice: unpaid_overtime
    city: Hangzhou

    We were told to stay until ten every night without pay ...

* A field line is ``NAME: VALUE``: NAME matches ``[a-z][a-z0-9_]{0,31}``, then a colon and one
  space, then VALUE: 1 to ``max_field_chars`` characters, no tab, no leading or trailing white
  space.  No NAME appears twice; at most ``max_object_fields`` lines.
* The block has at least one line and ends at the first empty line, or at the end of the body
  when there is no text.  When there is a text, it follows exactly one empty line and is not
  empty.  So each set of fields and text has exactly one body.
* The whole body also follows the text-body rule of posts (size, no control characters).
* Names a kind does not define are allowed and ignored (a later revision may add fields), but
  count against ``max_object_fields``.

The kinds whose body is short (corroboration, signature, pin) are checked here too.  This
module is below ``posts.py`` (which calls it while checking a post) and knows nothing of posts.
"""

from __future__ import annotations

import datetime
import re

from . import limits
from .errors import BodyError

__all__ = [
    "PRACTICES",
    "parse_field_block",
    "field_block",
    "check_report_body",
    "check_letter_body",
    "check_pledge_body",
    "check_translation_body",
    "check_corroboration_body",
    "check_signature_body",
    "check_pin_body",
    "parse_period",
    "parse_pledge_date",
    "is_known_practice",
    "is_field_name",
    "check_text_chars",
]

_NAME = re.compile("[a-z][a-z0-9_]{0,31}")
_CODE = re.compile("[a-z][a-z0-9_]{0,31}")
_FIELD = re.compile("([a-z][a-z0-9_]{0,31}): (.*)", re.DOTALL)
# One month, or an inclusive range of months: 2026-03 or 2026-01..2026-06.
_PERIOD = re.compile("([0-9]{4})-(0[1-9]|1[0-2])(?:\\.\\.([0-9]{4})-(0[1-9]|1[0-2]))?")
_DATE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
_THRESHOLD = re.compile("[1-9][0-9]{0,6}")
# A language tag in the shape of BCP 47: a primary language of 2 or 3 letters and subtags.
_LANG = re.compile("[a-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}")
# Unicode category Cc is exactly U+0000..U+001F and U+007F..U+009F, fixed forever by the
# Unicode stability policy; tab and line feed are allowed in a text.  One regular-expression
# search is much faster than asking unicodedata about every character.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C0_BYTES = bytes(b for b in range(0x20) if b not in b"\n\t") + b"\x7f"

#: The practices a node knows by name.  Any code matching ``[a-z][a-z0-9_]{0,31}`` is valid; an
#: unknown one is shown as the code itself.
PRACTICES = (
    "hours_996",          # 9 a.m. to 9 p.m., six days a week
    "unpaid_overtime",
    "forced_overtime",
    "illegal_dismissal",
    "wage_arrears",       # wages paid late or not at all
    "no_contract",
    "no_social_insurance",
    "non_compete_abuse",
    "discrimination",
    "other",
)


def check_text_chars(body: str) -> bytes:
    """The size and character part of the text-body rule: a ``str`` of at most
    ``max_body_bytes`` UTF-8 bytes with no control character but tab and line feed.  Returns
    the UTF-8 bytes; raises BodyError.  (``posts.check_text_body`` adds "not only white space".)
    """
    if type(body) is not str:
        raise BodyError("body: expected a string")
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("body is not valid Unicode text") from None
    if len(data) > limits.MAX_BODY_BYTES:
        raise BodyError(f"body is {len(data)} bytes, the limit is {limits.MAX_BODY_BYTES}")
    # Fast path on the UTF-8 bytes (this is on the hot path of ingest): C0 controls and DEL are
    # single bytes, and the C1 controls U+0080..U+009F all start with the byte 0xC2.  Only text
    # that may hold one is searched.
    if len(data.translate(None, _C0_BYTES)) != len(data) or b"\xc2" in data:
        bad = _CONTROL.search(body)
        if bad is not None:
            raise BodyError(f"body contains control character U+{ord(bad.group()):04X}")
    return data


def _check_value(name: str, value: str) -> str:
    if not value or value != value.strip():
        raise BodyError(f"field {name!r}: the value is empty or has white space at an end")
    if len(value) > limits.MAX_FIELD_CHARS:
        raise BodyError(f"field {name!r}: {len(value)} characters, the limit is {limits.MAX_FIELD_CHARS}")
    if "\t" in value:
        raise BodyError(f"field {name!r}: a value holds no tab")
    return value


def parse_field_block(body: str) -> tuple[dict[str, str], str]:
    """``(fields, text)`` of a body with a field block; raises BodyError outside the grammar."""
    check_text_chars(body)
    if "\t" in body.split("\n\n", 1)[0]:
        raise BodyError("a field line holds no tab")
    head, sep, text = body.partition("\n\n")
    if sep and not text.strip():
        raise BodyError("the text after the fields is empty: end the body after the last field instead")
    if sep and text.startswith("\n"):
        raise BodyError("the fields and the text are parted by exactly one empty line")
    fields: dict[str, str] = {}
    for line in head.split("\n"):
        match = _FIELD.fullmatch(line)
        if match is None:
            raise BodyError("a field line is 'name: value' (name: lowercase letters, digits, '_')")
        name, value = match.groups()
        if name in fields:
            raise BodyError(f"field {name!r} appears twice")
        fields[name] = _check_value(name, value)
    if len(fields) > limits.MAX_OBJECT_FIELDS:
        raise BodyError(f"{len(fields)} fields, the limit is {limits.MAX_OBJECT_FIELDS}")
    return fields, text


def field_block(fields: dict[str, str], text: str = "") -> str:
    """The body for ``fields`` (in the order given) and ``text``; checked by the kind's rule, not here."""
    head = "\n".join(f"{name}: {value}" for name, value in fields.items())
    return f"{head}\n\n{text}" if text else head


def _require(fields: dict[str, str], kind: str, *names: str) -> None:
    for name in names:
        if name not in fields:
            raise BodyError(f"a {kind} needs the field {name!r}")


def _code(fields: dict[str, str], name: str) -> str:
    value = fields[name]
    if _CODE.fullmatch(value) is None:
        raise BodyError(f"field {name!r} is a code: lowercase letters, digits and '_', at most 32")
    return value


def parse_period(value: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((year, month), (year, month))`` of a period (one month or ``FROM..TO``); raises BodyError."""
    match = _PERIOD.fullmatch(value)
    if match is None:
        raise BodyError("a period is YYYY-MM or YYYY-MM..YYYY-MM")
    y1, m1, y2, m2 = match.groups()
    start = (int(y1), int(m1))
    end = start if y2 is None else (int(y2), int(m2))
    if end < start:
        raise BodyError("a period ends after it starts")
    return start, end


def parse_pledge_date(value: str) -> datetime.date:
    """The calendar date of a pledge (``YYYY-MM-DD``); raises BodyError."""
    if _DATE.fullmatch(value) is None:
        raise BodyError("a pledge's date is YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise BodyError(f"{value!r} is not a date of the calendar") from None


def check_report_body(body: str) -> tuple[dict[str, str], str]:
    """A company report: fields ``company`` and ``practice`` (a code), optional ``city`` and
    ``period``, optional text.  Raises BodyError."""
    fields, text = parse_field_block(body)
    _require(fields, "report", "company", "practice")
    _code(fields, "practice")
    if "period" in fields:
        parse_period(fields["period"])
    return fields, text


def check_letter_body(body: str) -> tuple[dict[str, str], str]:
    """A sign-on letter: field ``title`` and the letter's text (required).  Raises BodyError."""
    fields, text = parse_field_block(body)
    _require(fields, "letter", "title")
    if not text:
        raise BodyError("a letter needs its text after the fields")
    return fields, text


def check_pledge_body(body: str) -> tuple[dict[str, str], str]:
    """A threshold pledge: fields ``action``, ``date`` (YYYY-MM-DD) and ``threshold`` (1 to
    ``max_pledge_threshold``, no leading zero), optional text.  Raises BodyError."""
    fields, text = parse_field_block(body)
    _require(fields, "pledge", "action", "date", "threshold")
    parse_pledge_date(fields["date"])
    if _THRESHOLD.fullmatch(fields["threshold"]) is None or int(fields["threshold"]) > limits.MAX_PLEDGE_THRESHOLD:
        raise BodyError(f"a pledge's threshold is a whole number from 1 to {limits.MAX_PLEDGE_THRESHOLD}")
    return fields, text


def check_translation_body(body: str) -> tuple[dict[str, str], str]:
    """A translation: field ``lang`` (a language tag such as ``zh-Hans`` or ``en``) and the
    translated text (required).  Raises BodyError."""
    fields, text = parse_field_block(body)
    _require(fields, "translation", "lang")
    if _LANG.fullmatch(fields["lang"]) is None:
        raise BodyError("a translation's lang is a language tag such as 'en', 'zh-Hans' or 'zh-Hant-TW'")
    if not text:
        raise BodyError("a translation needs its text after the fields")
    return fields, text


def check_corroboration_body(body: str) -> str:
    """A corroboration: empty, or a free text under the text-body rule.  Raises BodyError."""
    check_text_chars(body)
    if body and not body.strip():
        raise BodyError("a corroboration's text is empty or holds more than white space")
    return body


def check_signature_body(body: str) -> str:
    """A signature: empty, or one public line (e.g. "engineer, Seattle") of 1 to
    ``max_field_chars`` characters without line breaks or white space at an end.  Raises BodyError."""
    check_text_chars(body)
    if body == "":
        return body
    if "\n" in body:
        raise BodyError("a signature's public line is one line")
    return _check_value("line", body)


def check_pin_body(body: str) -> str:
    """A pin: the body is empty.  Raises BodyError."""
    if body != "":
        raise BodyError("a pin has an empty body")
    return body


def is_known_practice(code: str) -> bool:
    """Whether ``code`` is one of :data:`PRACTICES`."""
    return code in PRACTICES


def is_field_name(name: str) -> bool:
    """Whether ``name`` may name a field."""
    return _NAME.fullmatch(name) is not None
