"""Posts that arrived while a page was open, for the UI's optional live updates.

The node calls :meth:`LiveFeed.on_new_posts` with every batch it stores (from peers, imports,
the command line or the UI itself).  Each post gets the next number of this process; a page
remembers the cursor it was rendered at (``EPOCH.NUMBER``) and asks for what came after it.
The epoch changes when the node restarts, and only the latest posts are kept, so a cursor
that is too old or from another run answers "reload the page" instead of a partial list.
"""

from __future__ import annotations

import collections
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from dazibao.protocol.posts import Post

__all__ = ["LiveFeed", "Since"]

KEEP = 2_000


@dataclass(frozen=True, slots=True)
class Since:
    posts: list[Post]
    cursor: str
    complete: bool  # False: posts were missed (too old a cursor, or a restarted node)


class LiveFeed:
    def __init__(self, keep: int = KEEP) -> None:
        self.epoch = secrets.token_hex(4)
        self._items: collections.deque[tuple[int, Post]] = collections.deque(maxlen=keep)
        self._last = 0

    @property
    def cursor(self) -> str:
        return f"{self.epoch}.{self._last}"

    def on_new_posts(self, new: Iterable[Post], source: str | None = None) -> None:
        for post in new:
            self._last += 1
            self._items.append((self._last, post))

    def since(self, cursor: str, limit: int = 100) -> Since:
        """Posts after ``cursor`` (at most ``limit``), oldest first."""
        epoch, _, number = cursor.partition(".")
        if epoch != self.epoch or not number.isdigit() or int(number) > self._last:
            return Since([], self.cursor, False)
        after = int(number)
        oldest = self._items[0][0] if self._items else self._last + 1
        if after + 1 < oldest:
            return Since([], self.cursor, False)
        fresh = [(n, post) for n, post in self._items if n > after][:limit]
        if not fresh:
            return Since([], self.cursor, True)
        return Since([post for _, post in fresh], f"{self.epoch}.{fresh[-1][0]}", True)
