"""The public view's rendered pages, kept for a moment so that many readers of the same page
cost one rendering, and their ``ETag`` for conditional requests (node/web/public.py).

The public view shows every visitor the same thing: it has no session, no form token, no
unread mark and does not apply the member's hidden-authors list.  What a page shows depends
only on its address, the language chosen from the request (``Accept-Language``) and the store;
so a page is kept under ``(language, path and query)``, and given back only while

* **no post was stored since it was rendered**: the node calls :meth:`PageCache.on_new_posts`
  with every stored batch (from peers, the member UI, another process on the same store;
  retractions and moderation statements are posts too), which drops every kept page at once.
  A rendering that began before such a drop is not kept (its reads may predate the post);
* and it is younger than ``public_page_cache_s`` (protocol/limits.py), which bounds how long a
  change that stores no post takes to show: a purge by retention, a moderator followed or left,
  a hide that expires.

The member UI never uses it: its pages carry a session's form tokens, unread marks and
pseudonyms, and are rendered for each request.

The cache is bounded in pages and in bytes (``public_page_cache_pages``,
``public_page_cache_bytes``), the least recently served page going first.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dazibao.protocol import limits

__all__ = ["KeptPage", "PageCache", "etag_of", "etag_matches"]


@dataclass(frozen=True, slots=True)
class KeptPage:
    body: bytes
    etag: str
    at: float  # the clock's reading when it was rendered


def etag_of(body: bytes) -> str:
    """A strong entity tag for ``body``: a digest of its bytes, so equal pages get equal tags."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value names ``etag`` (or is ``*``).

    Weak tags (``W/"..."``) compare equal to the strong tag they name, as RFC 9110 asks of
    ``If-None-Match``.
    """
    if not if_none_match:
        return False
    for item in if_none_match.split(","):
        tag = item.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class PageCache:
    """Rendered pages by key, within ``max_pages`` pages, ``max_bytes`` bytes and ``max_age_s``."""

    def __init__(self, max_pages: int = limits.PUBLIC_PAGE_CACHE_PAGES,
                 max_bytes: int = limits.PUBLIC_PAGE_CACHE_BYTES,
                 max_age_s: float = limits.PUBLIC_PAGE_CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        #: Bumped whenever the kept pages are dropped; a rendering started under an older
        #: generation is not kept.
        self.generation = 0
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._pages: collections.OrderedDict[Any, KeptPage] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: Any) -> KeptPage | None:
        """The page kept under ``key``, if it is young enough."""
        page = self._pages.get(key)
        if page is not None and self.clock() - page.at < self.max_age_s:
            self._pages.move_to_end(key)
            self.hits += 1
            return page
        if page is not None:
            self._drop(key)
        self.misses += 1
        return None

    def put(self, key: Any, body: bytes, generation: int) -> KeptPage:
        """Keep ``body`` under ``key`` if nothing was stored since ``generation`` was read (the
        value of :attr:`generation` when its rendering began); the page with its tag either way."""
        page = KeptPage(body, etag_of(body), self.clock())
        if generation != self.generation or self.max_pages <= 0 or len(body) > self.max_bytes:
            return page
        if key in self._pages:
            self._drop(key)
        self._pages[key] = page
        self.bytes += len(body)
        while len(self._pages) > self.max_pages or self.bytes > self.max_bytes:
            self._drop(next(iter(self._pages)))
        return page

    def clear(self) -> None:
        """Drop every kept page, and keep none whose rendering began before."""
        self.generation += 1
        self._pages.clear()
        self.bytes = 0

    def on_new_posts(self, new: Iterable[Any], source: str | None = None) -> None:
        """Called with every batch the node stores: any post may change any page (a reply
        count, an author's name, a retraction, a hide), so every page is dropped."""
        self.clear()

    def _drop(self, key: Any) -> None:
        page = self._pages.pop(key)
        self.bytes -= len(page.body)
