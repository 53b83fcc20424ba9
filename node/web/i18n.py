"""The member UI's languages: one gettext catalog, English and Simplified Chinese.

English is the source language: every message is written in English in the code and the
templates (``_()`` and ``{% trans %}`` in templates, :func:`N_` in Python), and
``locale/zh_Hans/LC_MESSAGES/messages.po`` translates it.  ``locale/messages.pot`` is the
template extracted from the sources; a test checks that the template, the sources and the
Chinese catalog hold exactly the same messages.  To add or change a message::

    pybabel extract -F node/web/babel.cfg -o node/web/locale/messages.pot --no-location \
        --omit-header --sort-output node/web
    pybabel update -i node/web/locale/messages.pot -d node/web/locale -D messages -l zh_Hans

then translate the new entries.  The catalog is compiled in memory when the UI starts, so no
compiled ``.mo`` file is kept in the repository.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

__all__ = ["LANGUAGES", "DEFAULT_LANGUAGE", "N_", "Msg", "load_translations", "negotiate", "parse_language"]

#: The UI's languages as BCP 47 tags (the ``lang`` attribute, the ``ui_language`` setting and
#: the language cookie use these), with the gettext locale that holds each one's catalog.
LANGUAGES: dict[str, str | None] = {"en": None, "zh-Hans": "zh_Hans"}
DEFAULT_LANGUAGE = "en"
DOMAIN = "messages"
_MAX_ACCEPT_LANGUAGE = 2_000  # characters of the header looked at


def N_(message: str) -> str:
    """Mark ``message`` for translation without translating it (it is translated when shown)."""
    return message


@dataclass(frozen=True, slots=True)
class Msg:
    """A message for the member, translated when a page is rendered.

    ``text`` is the English source (marked with :func:`N_` where it is written); ``params``
    fill its ``%(name)s`` placeholders after translation.
    """

    text: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def translate(self, translations: gettext.NullTranslations) -> str:
        translated = translations.gettext(self.text)
        return translated % dict(self.params) if self.params else translated


def load_translations() -> dict[str, gettext.NullTranslations]:
    """The translations of every language, by tag.  English needs none: it is the source."""
    out: dict[str, gettext.NullTranslations] = {}
    root = resources.files(__package__) / "locale"
    for tag, locale in LANGUAGES.items():
        if locale is None:
            out[tag] = gettext.NullTranslations()
            continue
        with (root / locale / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as fh:
            catalog = read_po(fh, locale=locale, domain=DOMAIN)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)  # fuzzy (unchecked) translations are left out
        compiled.seek(0)
        out[tag] = Translations(compiled, domain=DOMAIN)
    return out


def parse_language(value: str | None) -> str | None:
    """The UI language named by a cookie or setting value, or None if it names none."""
    if not value:
        return None
    for tag in LANGUAGES:
        if value.lower() == tag.lower():
            return tag
    return None


def _from_tag(tag: str) -> str | None:
    tag = tag.strip().lower().replace("_", "-")
    if tag == "zh" or tag.startswith("zh-"):
        # Simplified Chinese is the only Chinese catalog; a reader who asks for Traditional
        # Chinese (zh-TW, zh-Hant) reads it far more easily than English.
        return "zh-Hans"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def negotiate(accept_language: str | None, cookie: str | None = None, setting: str = "") -> str:
    """The language of a page: the member's choice in the UI (cookie), else the ``ui_language``
    setting, else the browser's Accept-Language (RFC 9110, section 12.5.4), else English."""
    chosen = parse_language(cookie) or parse_language(setting)
    if chosen:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "")[:_MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = item.partition(";")
        quality = 1.0
        params = params.strip()
        if params:
            name, _, value = params.partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                quality = float(value)
            except ValueError:
                continue
        if not 0 < quality <= 1:  # also refuses nan
            continue
        ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        language = _from_tag(tag)
        if language:
            return language
    return DEFAULT_LANGUAGE
