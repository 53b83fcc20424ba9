"""Who wrote what, as the member UI shows it: display names from profile posts, fingerprints,
and the node's list of hidden authors.

An author is a public key.  Its display name is the body of its latest ``profile`` post
(docs/protocol.md, "Posts"), on any board; an author without one is shown by fingerprint
alone.  A name proves nothing -- anyone can sign a profile post with any name -- so the UI
shows the fingerprint beside every name, and marks a name that more than one key uses.

The names are kept in memory: read from the store once, then updated from every new post the
node stores (``NodeCore.on_new_posts``); a retraction (which may remove a profile post) makes
the next use read them again.  One key may sign any number of profiles, so adding one costs
O(log n) comparisons (no re-sort, no scan of the key's history), and a full read is built on
the store's thread and swapped in, never on the event loop.

Hidden authors are the member's local choice, kept in the store's meta table under
:data:`HIDDEN_META` as a JSON list of hex public keys.  Their posts are not shown; nothing
is deleted.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dazibao.protocol import identity
from dazibao.protocol.posts import KIND_PROFILE, KIND_RETRACT, Post

from ..service import StoreThread
from ..store import PostRow, Store

__all__ = ["HIDDEN_META", "Profile", "AuthorView", "AuthorBook", "fingerprint", "read_author_views"]

HIDDEN_META = "web.hidden_authors"
_PAGE = 1_000
MAX_HIDDEN = 10_000


@functools.lru_cache(maxsize=4096)
def fingerprint(public_key: bytes) -> str:
    return identity.fingerprint(public_key)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    board: str
    created_at_ms: int
    post_id: bytes


@dataclass(frozen=True, slots=True)
class AuthorView:
    """An author as a page shows it."""

    public_key: bytes
    name: str | None
    shared_name: bool  # another key uses the same display name
    local: bool  # one of this machine's pseudonyms
    hidden: bool

    @property
    def hex(self) -> str:
        return self.public_key.hex()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def _order(profile: Profile) -> tuple[int, bytes]:
    return profile.created_at_ms, profile.post_id


class _Names:
    """Every profile known, by author: what :class:`AuthorBook` answers from."""

    __slots__ = ("latest", "history", "boards", "by_name", "ids")

    def __init__(self) -> None:
        self.latest: dict[bytes, Profile] = {}
        self.history: dict[bytes, list[Profile]] = {}  # oldest first
        self.boards: set[tuple[bytes, str]] = set()
        self.by_name: dict[str, set[bytes]] = {}
        self.ids: set[bytes] = set()

    def add(self, author: bytes, profile: Profile) -> None:
        if profile.post_id in self.ids:
            return
        self.ids.add(profile.post_id)
        self.boards.add((author, profile.board))
        history = self.history.setdefault(author, [])
        bisect.insort(history, profile, key=_order)
        latest = history[-1]
        previous = self.latest.get(author)
        if previous is not None and previous.name != latest.name:
            self.by_name.get(previous.name, set()).discard(author)
        self.latest[author] = latest
        self.by_name.setdefault(latest.name, set()).add(author)


def _read_names(store: Store) -> _Names:
    names = _Names()
    for row in reversed(_all_profiles(store)):  # oldest first: appending is the common case
        names.add(row.author, Profile(row.body, row.board, row.created_at_ms, row.id))
    return names


def _all_profiles(store: Store) -> list[PostRow]:
    rows: list[PostRow] = []
    before = None
    while True:
        page = store.list_posts(None, _PAGE, before, kinds=[KIND_PROFILE])
        rows.extend(page)
        if len(page) < _PAGE:
            return rows
        before = (page[-1].created_at_ms, page[-1].id)


def _load_hidden(value: str | None) -> frozenset[bytes]:
    if not value:
        return frozenset()
    try:
        items = json.loads(value)
    except ValueError:
        return frozenset()
    out = set()
    for item in items if isinstance(items, list) else []:
        try:
            key = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            continue
        if len(key) == identity.PUBLIC_KEY_BYTES:
            out.add(key)
    return frozenset(out)


class AuthorBook:
    """Display names and hidden authors of one node."""

    def __init__(self, db: StoreThread) -> None:
        self._db = db
        self._names = _Names()
        # Profiles stored while a full read runs on the store's thread, added to its result.
        self._arriving: list[tuple[bytes, Profile]] | None = None
        self._stale = True
        self.hidden: frozenset[bytes] = frozenset()

    async def load(self) -> None:
        """Read the profiles and the hidden list from the store."""
        self.hidden = _load_hidden(await self._db.call(Store.get_meta, HIDDEN_META))
        await self._load_profiles()

    async def refresh(self) -> None:
        """Read the profiles again if a retraction may have removed one."""
        if self._stale:
            await self._load_profiles()

    async def _load_profiles(self) -> None:
        self._stale = False
        arriving: list[tuple[bytes, Profile]] = []
        self._arriving = arriving
        try:
            names = await self._db.call(_read_names)
        finally:
            if self._arriving is arriving:
                self._arriving = None
        for author, profile in arriving:  # stored after the read may have looked (added twice is harmless)
            names.add(author, profile)
        self._names = names

    def _add(self, author: bytes, profile: Profile) -> None:
        self._names.add(author, profile)
        if self._arriving is not None:
            self._arriving.append((author, profile))

    def on_new_posts(self, new: Iterable[Post], source: str | None = None) -> None:
        """Keep up with the node: called with every batch of newly stored posts."""
        for post in new:
            if post.kind == KIND_PROFILE:
                self._add(post.author, Profile(post.body, post.board, post.created_at_ms, post.id))
            elif post.kind == KIND_RETRACT:
                self._stale = True

    def name(self, author: bytes) -> str | None:
        profile = self._names.latest.get(author)
        return profile.name if profile else None

    def history(self, author: bytes) -> list[Profile]:
        """Every profile post of ``author`` known here, newest first."""
        return list(reversed(self._names.history.get(author, [])))

    def has_profile_on(self, author: bytes, board: str) -> bool:
        return (author, board) in self._names.boards

    def view(self, author: bytes, local_names: dict[str, set[bytes]] | None = None) -> AuthorView:
        """How to show ``author``; ``local_names`` maps this machine's pseudonym names to keys."""
        name = self.name(author)
        shared = False
        if name is not None:
            users = set(self._names.by_name.get(name, ()))
            users |= (local_names or {}).get(name, set())
            shared = bool(users - {author})
        local = any(author in keys for keys in (local_names or {}).values())
        return AuthorView(author, name, shared, local, author in self.hidden)

    async def set_hidden(self, author: bytes, hidden: bool) -> bool:
        """Hide or show an author's posts on this node.  False if nothing changed."""
        current = set(self.hidden)
        if hidden == (author in current) or (hidden and len(current) >= MAX_HIDDEN):
            return False
        if hidden:
            current.add(author)
        else:
            current.discard(author)
        value = json.dumps(sorted(key.hex() for key in current))
        await self._db.call(Store.set_meta, HIDDEN_META, value)
        self.hidden = frozenset(current)
        return True


def read_author_views(store: Store) -> Callable[[bytes], AuthorView]:
    """How the public view shows each author, from one read of ``store``'s profiles.

    For a reader with no session and no local pseudonyms (the static copy, node/publish.py):
    the latest published name, marked when another key uses it too; nobody is hidden.
    """
    names = _read_names(store)

    def view(author: bytes) -> AuthorView:
        profile = names.latest.get(author)
        name = profile.name if profile else None
        shared = name is not None and bool(names.by_name.get(name, set()) - {author})
        return AuthorView(author, name, shared, False, False)

    return view
