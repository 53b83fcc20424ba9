"""The rendered HTML of post bodies, kept by post id so that showing a page again does not run
the Markdown parser, the sanitizer and the language detection of every body again.

A post's id is the hash of its signed bytes, body included, so the HTML and the ``lang``
attribute of a body are a pure function of the id: an entry can never become wrong, only
unneeded.  An entry is only ever read for a row the store has just returned to a page, so a
retracted or purged post, which the store no longer returns, is never shown from here;
:meth:`BodyCache.forget` also drops the entries of retracted posts as soon as the retraction
is stored (node/web/base.py, :func:`~.base.following_posts`), so that their text does not stay
in memory until it is crowded out.

The cache is bounded twice (protocol/limits.py): in entries and in characters of HTML, the
least recently shown body going first, so that neither many small bodies nor a few bodies of
the largest size can make it grow past a known amount of memory.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup

from dazibao.protocol import limits

from .render import render_body_uncached
from .textlang import lang_attr

__all__ = ["RenderedBody", "BodyCache", "BODIES"]


@dataclass(frozen=True, slots=True)
class RenderedBody:
    """A body as the pages show it: its sanitized HTML and its ` lang="…"` attribute."""

    html: Markup
    lang: Markup

    @property
    def chars(self) -> int:
        return len(self.html) + len(self.lang)


class BodyCache:
    """Rendered bodies by post id, least recently used first out, within ``max_entries``
    entries and ``max_chars`` characters of HTML.  A body larger than ``max_chars`` alone is
    rendered every time and not kept."""

    def __init__(self, max_entries: int = limits.UI_BODY_CACHE_POSTS,
                 max_chars: int = limits.UI_BODY_CACHE_CHARS) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.chars = 0
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict[bytes, RenderedBody] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, post_id: bytes) -> bool:
        return post_id in self._items

    def get(self, post_id: bytes, body: str) -> RenderedBody:
        """The rendered ``body`` of the post ``post_id`` (``body`` must be that post's body).
        Never raises for any text."""
        found = self._items.get(post_id)
        if found is not None:
            self._items.move_to_end(post_id)
            self.hits += 1
            return found
        self.misses += 1
        rendered = RenderedBody(render_body_uncached(body), lang_attr(body))
        if self.max_entries > 0 and rendered.chars <= self.max_chars:
            self._items[post_id] = rendered
            self.chars += rendered.chars
            while len(self._items) > self.max_entries or self.chars > self.max_chars:
                _, dropped = self._items.popitem(last=False)
                self.chars -= dropped.chars
        return rendered

    def forget(self, post_ids: Iterable[bytes]) -> None:
        """Drop the entries of ``post_ids`` (those not kept are ignored)."""
        for post_id in post_ids:
            dropped = self._items.pop(post_id, None)
            if dropped is not None:
                self.chars -= dropped.chars

    def clear(self) -> None:
        self._items.clear()
        self.chars = 0


#: The one cache of the process: the member UI and the public view show the same bodies.
BODIES = BodyCache()
