"""The store's moderation room: followed moderators, statements, trust views, stranger quotas,
and what a change of trust does to stored posts and refusals (docs/moderation.md).

What a node *believes* is decided by :mod:`dazibao.protocol.trust` from what this room keeps:

* ``moderators``: whom this node follows on each board (its local pseudonyms, the
  ``identities`` table, are followed on every board without a row);
* ``statements``: one row per stored post of kind ``moderation`` (written by ingest, deleted with
  the post by a trigger), read to build each board's :class:`TrustView`, which is cached and
  rebuilt when a followed moderator's statement, a moderator or a pseudonym changes -- in this
  process or another one on the same file (``trust_epoch`` in ``meta``) -- or when one of its
  statements expires;
* ``refusals`` (kept by :mod:`.refusals`): ids refused by policy, so that the same post is
  refused again without a signature check.  When trust changes (a block arrives or is
  undone, a moderator is followed or dropped, a statement expires, an author is vouched for),
  :meth:`ModerationRoom._retrust` moves the stored posts that are now blocked into refusals and
  forgets the refusals that no longer hold, so that the next sync fetches those posts again;
* ``quota_usage``: what each stranger stored per board and UTC day of this node's clock.

**The reconciliation set** of a node is its stored posts *plus* the keys of refusals and purged
tombstones marked ``carried`` (:mod:`.refusals`).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dazibao.protocol import limits
from dazibao.protocol.errors import BLOCKED, QUOTA_BYTES, QUOTA_POSTS, DazibaoError
from dazibao.protocol.moderation import (
    KIND_CHARTER,
    KIND_MODERATION,
    Charter,
    Statement,
    parse_charter,
    parse_statement,
)
from dazibao.protocol.posts import KIND_POST, Post, check_board
from dazibao.protocol.trust import Quota, TrustView

from .connection import guarded
from .refusals import POLICY_CODES, QUOTA_CODES, RefusalRoom
from .rows import ModeratorRow, PostRow
from .schema import POST_COLUMNS

__all__ = [
    "ModerationRoom", "MODERATOR_SOURCES", "POLICY_CODES", "QUOTA_CODES", "DAY_MS", "TRUST_EPOCH_META",
    "statement_of_row", "key_parts",
]

#: Where a followed moderator came from.
MODERATOR_SOURCES = ("config", "cli", "ui", "charter")
DAY_MS = 86_400_000
TRUST_EPOCH_META = "trust_epoch"
_EXPIRY_META = "statements_checked_ms"
_STATEMENT_COLUMNS = "id, board, moderator, created_at_ms, action, subject, target, reason, expires_at_ms"
# Cascades of removals a change of trust may start (a followed moderator blocked by another).
_MAX_RETRUST_ROUNDS = 8


def statement_of_row(row: Sequence[Any]) -> Statement:
    """A :class:`Statement` from a row of ``_STATEMENT_COLUMNS``."""
    sid, board, moderator, created, action, subject, target, reason, expires = row
    return Statement(id=sid, board=board, moderator=moderator, created_at_ms=created, action=action,
                     subject=subject, target=target, reason=reason, expires_at_ms=expires)


def key_parts(key: bytes) -> tuple[str, int, bytes]:
    """``(board, created_at_ms, id)`` of a reconciliation key."""
    return key[:-41].decode("utf-8"), int.from_bytes(key[-40:-32], "big"), key[-32:]


class _CachedView:
    __slots__ = ("view", "lo", "hi")

    def __init__(self, view: TrustView, lo: float, hi: float) -> None:
        # The view holds for any time in [lo, hi): no statement of it expires in between.
        self.view, self.lo, self.hi = view, lo, hi


class ModerationRoom(RefusalRoom):
    """Moderators, statements, trust views, refusals, quotas and the carried keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before the connection opens: StoreBase may roll back a migration, which clears them.
        self._views: dict[str, _CachedView] = {}
        self._local_keys: frozenset[bytes] | None = None
        self._trust_epoch: int | None = None
        #: The stranger quota: the node's settings (``configure_policy``), else the limits.
        self.stranger_posts_per_day = limits.STRANGER_POSTS_PER_DAY
        self.stranger_bytes_per_day = limits.STRANGER_BYTES_PER_DAY
        self.require_pow: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    # --- policy ------------------------------------------------------------------------------

    @guarded
    def configure_policy(self, *, stranger_posts_per_day: int | None = None,
                         stranger_bytes_per_day: int | None = None,
                         require_pow: Mapping[str, int] | None = None) -> None:
        """Set the stranger quota (None: keep) and the work each board asks of strangers."""
        if stranger_posts_per_day is not None:
            self.stranger_posts_per_day = int(stranger_posts_per_day)
        if stranger_bytes_per_day is not None:
            self.stranger_bytes_per_day = int(stranger_bytes_per_day)
        if require_pow is not None:
            self.require_pow = dict(require_pow)

    def quota(self, board: str) -> Quota:
        """The stranger quota of ``board``."""
        return Quota(self.stranger_posts_per_day, self.stranger_bytes_per_day, self.require_pow.get(board))

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One consistent read: the caller's transaction if one is open (``Store.snapshot``)."""
        if self._conn.in_transaction:
            yield self._conn
        else:
            with self._snapshot() as conn:
                yield conn

    # --- caches --------------------------------------------------------------------------------

    def _forget_caches(self) -> None:
        self._views.clear()
        self._local_keys = None
        self._trust_epoch = None

    def _check_epoch(self, conn: sqlite3.Connection) -> None:
        """Drop the cached views if trust changed since they were built (in any process)."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (TRUST_EPOCH_META,)).fetchone()
        epoch = int(row[0]) if row is not None else 0
        if epoch != self._trust_epoch:
            self._views.clear()
            self._local_keys = None
            self._trust_epoch = epoch

    def _bump_epoch(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, 1)"
            " ON CONFLICT (key) DO UPDATE SET value = coalesce(value, 0) + 1", (TRUST_EPOCH_META,))
        self._views.clear()
        self._local_keys = None
        self._trust_epoch = int(conn.execute("SELECT value FROM meta WHERE key = ?", (TRUST_EPOCH_META,))
                                .fetchone()[0])

    def _locals(self, conn: sqlite3.Connection) -> frozenset[bytes]:
        if self._local_keys is None:
            self._local_keys = frozenset(r[0] for r in conn.execute("SELECT public_key FROM identities"))
        return self._local_keys

    def _followed(self, conn: sqlite3.Connection, board: str) -> frozenset[bytes]:
        rows = conn.execute("SELECT key FROM moderators WHERE board = ?", (board,))
        return frozenset(r[0] for r in rows) | self._locals(conn)

    def _view(self, conn: sqlite3.Connection, board: str, now_ms: int) -> TrustView:
        """The trust view of ``board`` at ``now_ms`` (cached; call ``_check_epoch`` first)."""
        cached = self._views.get(board)
        if cached is not None and cached.lo <= now_ms < cached.hi:
            return cached.view
        followed = self._followed(conn, board)
        statements: list[Statement] = []
        if followed:
            keys = sorted(followed)
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                sql = (f"SELECT {_STATEMENT_COLUMNS} FROM statements WHERE board = ?"
                       f" AND moderator IN ({','.join('?' * len(part))})")
                statements.extend(statement_of_row(r) for r in conn.execute(sql, (board, *part)))
        view = TrustView.build(board, followed, statements, now_ms)
        expiries = [s.expires_at_ms for s in statements if s.expires_at_ms is not None]
        lo = max((e for e in expiries if e <= now_ms), default=-math.inf)
        hi = min((e for e in expiries if e > now_ms), default=math.inf)
        self._views[board] = _CachedView(view, lo, hi)
        return view

    # --- moderators ----------------------------------------------------------------------------

    @guarded
    def moderators(self, board: str | None = None) -> list[ModeratorRow]:
        """The moderators this node follows (on ``board``), by board then key."""
        sql = "SELECT board, key, source, added_at_ms FROM moderators"
        params: tuple[Any, ...] = ()
        if board is not None:
            sql += " WHERE board = ?"
            params = (board,)
        return [ModeratorRow(*r) for r in self._conn.execute(sql + " ORDER BY board, key", params)]

    @guarded
    def add_moderator(self, board: str, key: bytes, *, source: str, now_ms: int) -> None:
        """Follow ``key`` as a moderator of ``board`` (adding one already followed does nothing).

        Its blocks apply at once: the stored posts they name are removed into refusals; its
        vouches and its own statements make the node forget the quota refusals they lift.
        Raises ValueError for a bad board, key or source, or past ``max_moderators_per_board``.
        """
        self._add_moderators(board, [key], source=source, now_ms=now_ms)

    @guarded
    def add_moderators(self, board: str, keys: Sequence[bytes], *, source: str, now_ms: int) -> list[bytes]:
        """Follow each of ``keys`` on ``board`` in one transaction; the keys that were new.

        All or none: raises ValueError (nothing added) when the board would pass
        ``max_moderators_per_board``, or for a bad board, key or source.
        """
        return self._add_moderators(board, keys, source=source, now_ms=now_ms)

    def _add_moderators(self, board: str, keys: Sequence[bytes], *, source: str, now_ms: int) -> list[bytes]:
        _check_moderator_args(board, keys, source)
        with self._write() as conn:
            known = {r[0] for r in conn.execute("SELECT key FROM moderators WHERE board = ?", (board,))}
            new = list(dict.fromkeys(k for k in keys if k not in known))
            if not new:
                return []
            if len(known) + len(new) > limits.MAX_MODERATORS_PER_BOARD:
                raise ValueError(f"a node follows at most {limits.MAX_MODERATORS_PER_BOARD} moderators on a board "
                                 f"({len(known)} on {board!r} already)")
            conn.executemany("INSERT INTO moderators (board, key, source, added_at_ms) VALUES (?, ?, ?, ?)",
                             [(board, k, source, now_ms) for k in new])
            self._bump_epoch(conn)
            self._retrust(conn, board, self._targets_of(conn, board, new), now_ms)
            return new

    @guarded
    def remove_moderator(self, board: str, key: bytes, *, now_ms: int) -> bool:
        """Stop following ``key`` on ``board``; False if it was not followed.

        The refusals its statements caused are forgotten (the posts come back at the next sync),
        unless another followed moderator still blocks them.
        """
        with self._write() as conn:
            if conn.execute("DELETE FROM moderators WHERE board = ? AND key = ?", (board, key)).rowcount == 0:
                return False
            self._bump_epoch(conn)
            self._retrust(conn, board, self._targets_of(conn, board, [key]), now_ms)
            return True

    @guarded
    def sync_moderators(self, wanted: Mapping[str, Sequence[bytes]], *, source: str, now_ms: int) -> None:
        """Make the moderators of ``source`` (the config file's) exactly ``wanted``: add the
        missing, drop those of that source no longer named.  Raises ValueError like
        :meth:`add_moderators`."""
        for board, keys in wanted.items():
            _check_moderator_args(board, keys, source)
        current: dict[str, set[bytes]] = {}
        for board, key in self._conn.execute("SELECT board, key FROM moderators WHERE source = ?", (source,)):
            current.setdefault(board, set()).add(key)
        for board, had in current.items():
            for key in had - set(wanted.get(board, ())):
                self.remove_moderator(board, key, now_ms=now_ms)
        for board, keys in wanted.items():
            if set(keys) - current.get(board, set()):
                self._add_moderators(board, list(keys), source=source, now_ms=now_ms)

    def _targets_of(self, conn: sqlite3.Connection, board: str, moderators: Iterable[bytes]) -> set[tuple[str, bytes]]:
        """What a change of these moderators may change: their statements' targets, and themselves
        as authors (a followed moderator is never held to the stranger quota)."""
        targets: set[tuple[str, bytes]] = set()
        for key in moderators:
            targets.add(("author", key))
            targets.update(conn.execute(
                "SELECT subject, target FROM statements WHERE board = ? AND moderator = ?", (board, key)))
        return targets

    # --- identities (local pseudonyms, followed on every board) --------------------------------

    @guarded
    def sync_identities(self, pseudonyms: Iterable[tuple[str, bytes]], *, now_ms: int) -> bool:
        """Make the ``identities`` table the local pseudonyms ``(name, public_key)`` (from the key
        folder); True if it changed.  They are followed on every board, and never held to the
        stranger quota."""
        wanted = dict((key, name) for name, key in pseudonyms)
        have = dict((r[1], r[0]) for r in self._conn.execute("SELECT name, public_key FROM identities"))
        if have == wanted:
            return False
        with self._write(durable=True) as conn:
            have = dict((r[1], r[0]) for r in conn.execute("SELECT name, public_key FROM identities"))
            if have == wanted:
                return False
            conn.execute("DELETE FROM identities")
            names: set[str] = set()
            for key, name in sorted(wanted.items()):
                unique = name
                n = 2
                while unique in names:  # two key files with one name: keep both keys
                    unique, n = f"{name} ({n})", n + 1
                names.add(unique)
                conn.execute("INSERT INTO identities (name, public_key, created_at_ms) VALUES (?, ?, ?)",
                             (unique, key, now_ms))
            self._bump_epoch(conn)
            changed = set(have) ^ set(wanted)
            boards = {r[0] for r in conn.execute("SELECT DISTINCT board FROM statements")}
            for author in changed:  # a pseudonym's posts refused while it was not known as one
                boards.update(r[0] for r in conn.execute("SELECT DISTINCT board FROM refusals WHERE author = ?",
                                                         (author,)))
            for board in sorted(boards):
                targets = self._targets_of(conn, board, changed)
                self._retrust(conn, board, targets, now_ms)
            return True

    # --- reads for the UI and the command line ------------------------------------------------

    @guarded
    def trust_view(self, board: str, *, now_ms: int) -> TrustView:
        """What this node believes on ``board`` at ``now_ms``: followed = its moderators there
        and its local pseudonyms."""
        with self._reading() as conn:
            self._check_epoch(conn)
            return self._view(conn, board, now_ms)

    @guarded
    def statements_about(self, board: str, target: bytes) -> list[Statement]:
        """Every stored statement on ``board`` naming ``target`` (by any moderator), newest first."""
        sql = (f"SELECT {_STATEMENT_COLUMNS} FROM statements WHERE target = ? AND board = ?"
               " ORDER BY created_at_ms DESC, id DESC")
        return [statement_of_row(r) for r in self._conn.execute(sql, (target, board))]

    @guarded
    def author_moderation(self, author: bytes, *, now_ms: int) -> list[tuple[str, Statement]]:
        """``(board, statement)`` for every statement about ``author`` in force here: by a
        followed moderator, the newest of its kind, not expired.  By board."""
        with self._reading() as conn:
            self._check_epoch(conn)
            boards = [r[0] for r in conn.execute(
                "SELECT DISTINCT board FROM statements WHERE target = ? AND subject = 'author' ORDER BY board",
                (author,))]
            return [(board, s) for board in boards for s in self._view(conn, board, now_ms).about_author(author)]

    @guarded
    def charter(self, board: str) -> Charter | None:
        """The board's charter in effect here: the newest charter by the board's opener (the
        author of its oldest stored post of kind ``post``), or None."""
        conn = self._conn
        opener = conn.execute(
            "SELECT author FROM posts WHERE board = ? AND kind = ? ORDER BY created_at_ms, id LIMIT 1",
            (board, KIND_POST)).fetchone()
        if opener is None:
            return None
        rows = conn.execute(
            f"SELECT {POST_COLUMNS} FROM posts WHERE kind = ? AND board = ? AND author = ?"
            " ORDER BY created_at_ms DESC, id DESC LIMIT 16", (KIND_CHARTER, board, opener[0]))
        for row in rows:
            try:
                return parse_charter(PostRow(*row).to_post())
            except DazibaoError:  # stored by an older version that did not check charters
                continue
        return None

    # --- the cheap path: before a signature is verified ----------------------------------------

    @guarded
    def prescreen(self, heads: Sequence[tuple[bytes, str, bytes, int]], *, now_ms: int,
                  remember: bool = False) -> dict[bytes, str]:
        """Of ``(id, board, author, created_at_ms)`` of decoded posts not yet verified, those to
        refuse without verifying them: ids remembered as refused (their code again), posts
        a followed moderator blocks (``blocked``), and a stranger's posts beyond what today's
        quota still allows, counting this batch in order (``quota_posts``/``quota_bytes``; on a
        board without required work, so the code is the one a verified post would get).
        Forged posts cannot spend a quota: it counts verified posts only.  Writes nothing
        unless ``remember``: then the ids refused here are remembered as refused, for posts
        this node asked a peer for, whose ids it chose (a forged post with such an id claims
        the same author, board and time, so it gets the same verdict).  A pushed post is never
        remembered unverified: a forged post let through in place of a real one then delays
        the real one to a later copy (a sync) at most."""
        return self.prescreen_each([heads], now_ms=now_ms, remember=remember)[0]

    @guarded
    def prescreen_each(self, groups: Sequence[Sequence[tuple[bytes, str, bytes, int]]], *, now_ms: int,
                       remember: bool = False) -> list[dict[bytes, str]]:
        """:meth:`prescreen` of each group (the pushes of one coalesced batch), each against the
        store as it is, as separate calls would judge them, in one read: the refusals of all
        of them are looked up at once, and each stranger's use of today's quota is read once.
        ``remember`` writes the refusals of every group after all of them were screened."""
        if not any(groups):
            return [{} for _ in groups]
        out: list[dict[bytes, str]] = []
        remembered = []
        with self._reading() as conn:
            known: dict[bytes, str] = dict(self._select_in(
                "SELECT id, code FROM refusals WHERE id IN ({marks})", [h[0] for heads in groups for h in heads]))
            self._check_epoch(conn)
            # (board, author) -> (code once spent, posts still allowed today; None: no limit
            # here), as the store says before any group; each group counts from there.
            stored_left: dict[tuple[str, bytes], tuple[str, int | None]] = {}
            for heads in groups:
                found = {h[0]: known[h[0]] for h in heads if h[0] in known}
                left: dict[tuple[str, bytes], tuple[str, int | None]] = {}
                passed: set[bytes] = set()      # ids let through: a copy of one spends no more quota
                for pid, board, author, created in heads:
                    if pid in found or pid in passed:
                        continue
                    view = self._view(conn, board, now_ms)
                    if view.blocks(pid, author) is not None:
                        found[pid] = BLOCKED
                        remembered.append((pid, board, created, author, BLOCKED))
                        continue
                    who = (board, author)
                    if who not in left:
                        if who not in stored_left:
                            stored_left[who] = self._quota_left(conn, view, board, author, now_ms)
                        left[who] = stored_left[who]
                    code, room = left[who]
                    if room is None:
                        continue
                    if room <= 0:
                        found[pid] = code
                        remembered.append((pid, board, created, author, code))
                    else:
                        left[who] = (code, room - 1)
                        passed.add(pid)
                out.append(found)
        if remember and remembered:
            with self._write() as conn:
                self._remember(conn, remembered, now_ms)
        return out

    def _quota_left(self, conn: sqlite3.Connection, view: TrustView, board: str, author: bytes,
                    now_ms: int) -> tuple[str, int | None]:
        """How many more posts ``author``, a stranger on ``board``, may store today, and the
        code for those beyond (``quota_bytes`` once the bytes are spent, else ``quota_posts``);
        ``None`` posts for an author not held to the quota here, or a board requiring work
        (its verdict, ``pow_required`` first, is the verified path's)."""
        quota = self.quota(board)
        if quota.pow_bits is not None:
            return QUOTA_POSTS, None
        if author in view.followed or author in self._locals(conn) or view.vouched(author):
            return QUOTA_POSTS, None
        row = conn.execute("SELECT posts, bytes FROM quota_usage WHERE board = ? AND author = ? AND day = ?",
                           (board, author, now_ms // DAY_MS)).fetchone()
        posts_today, bytes_today = row if row is not None else (0, 0)
        if bytes_today >= quota.bytes_per_day and posts_today < quota.posts_per_day:
            return QUOTA_BYTES, 0
        return QUOTA_POSTS, quota.posts_per_day - posts_today

    # --- expiry and the sync's carried marks ---------------------------------------------------

    @guarded
    def expire_statements(self, *, now_ms: int) -> list[bytes]:
        """Apply the statements that expired since the last call (a block that ends lets its
        posts come back).  Returns the keys that left the reconciliation set."""
        last = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_EXPIRY_META,)).fetchone()
        since = int(last[0]) if last is not None else 0
        due = self._conn.execute(
            "SELECT count(*) FROM statements WHERE expires_at_ms > ? AND expires_at_ms <= ?", (since, now_ms)
        ).fetchone()[0]
        if not due and last is not None:
            return []
        with self._write() as conn:
            expired: dict[str, set[tuple[str, bytes]]] = {}
            for board, subject, target in conn.execute(
                    "SELECT board, subject, target FROM statements WHERE expires_at_ms > ? AND expires_at_ms <= ?",
                    (since, now_ms)):
                expired.setdefault(board, set()).add((subject, target))
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (_EXPIRY_META, now_ms))
            # Old quota rows are of no use any more.
            conn.execute("DELETE FROM quota_usage WHERE day < ?", (now_ms // DAY_MS - 1,))
            if not expired:
                return []
            self._check_epoch(conn)
            removed: list[bytes] = []
            for board, targets in sorted(expired.items()):
                self._views.pop(board, None)
                removed += self._retrust(conn, board, targets, now_ms)
            return removed

    # --- the work of a change of trust (inside a write transaction) ----------------------------

    def _retrust(self, conn: sqlite3.Connection, board: str, targets: Collection[tuple[str, bytes]],
                 now_ms: int) -> list[bytes]:
        """Bring the stored posts and the refusals of ``board`` in line with its trust view for
        these ``(subject, target)`` pairs: posts now blocked are removed into refusals, refusals
        that no longer hold are forgotten.  Returns the keys that left the reconciliation set
        (removed posts, forgotten carried refusals)."""
        out: list[bytes] = []
        pending = set(targets)
        for _ in range(_MAX_RETRUST_ROUNDS):
            if not pending:
                break
            view = self._view(conn, board, now_ms)
            followed = view.followed
            blocked_rows: list[tuple[Any, ...]] = []
            forget: list[tuple[Any, ...]] = []
            for subject, target in sorted(pending):
                if subject == "post":
                    row = conn.execute("SELECT seq, id, board, created_at_ms, author, kind FROM posts"
                                       " WHERE id = ? AND board = ?", (target, board)).fetchone()
                    if row is not None and view.blocks(row[1], row[4]) is not None:
                        blocked_rows.append(row)
                    ref = conn.execute("SELECT seq, id, board, created_at_ms, author, code, carried FROM refusals"
                                       " WHERE id = ? AND board = ? AND code = ?", (target, board, BLOCKED)).fetchone()
                    if ref is not None and view.blocks(ref[1], ref[4]) is None:
                        forget.append(ref)
                else:
                    if view.author_block(target) is not None:
                        blocked_rows += conn.execute(
                            "SELECT seq, id, board, created_at_ms, author, kind FROM posts"
                            " WHERE board = ? AND author = ?", (board, target)).fetchall()
                    trusted = view.vouched(target) or target in followed
                    for ref in conn.execute("SELECT seq, id, board, created_at_ms, author, code, carried"
                                            " FROM refusals WHERE board = ? AND author = ?", (board, target)):
                        if ref[5] == BLOCKED:
                            if view.blocks(ref[1], ref[4]) is None:
                                forget.append(ref)
                        elif trusted and ref[5] in QUOTA_CODES:
                            forget.append(ref)
            pending = set()
            if forget:
                out += self._forget_refusals(conn, forget)
            if blocked_rows:
                gone = self._statement_targets_of_posts(conn, [r[0] for r in blocked_rows], followed)
                out += self._refuse_stored(conn, blocked_rows, BLOCKED, now_ms)
                if gone:
                    # A followed moderator's own statements were blocked: the view changed again.
                    self._bump_epoch(conn)
                    pending = gone
        return out

    @staticmethod
    def _statement_targets_of_posts(conn: sqlite3.Connection, seqs: list[int],
                                    followed: Collection[bytes]) -> set[tuple[str, bytes]]:
        out: set[tuple[str, bytes]] = set()
        for start in range(0, len(seqs), 500):
            part = seqs[start : start + 500]
            sql = ("SELECT s.moderator, s.subject, s.target FROM statements AS s JOIN posts AS p ON p.id = s.id"
                   f" WHERE p.seq IN ({','.join('?' * len(part))})")
            out.update((subject, target) for moderator, subject, target in conn.execute(sql, part)
                       if moderator in followed)
        return out

    # --- statements as posts come and go --------------------------------------------------------

    def _statements_added(self, conn: sqlite3.Connection, stored: Iterable[Post]) -> dict[str, set[tuple[str, bytes]]]:
        """Insert the statement rows of newly stored moderation posts; the targets, by board, of
        those by followed moderators (whose views changed)."""
        changed: dict[str, set[tuple[str, bytes]]] = {}
        rows = []
        for post in stored:
            if post.kind != KIND_MODERATION:
                continue
            try:
                s = parse_statement(post)
            except DazibaoError:
                continue  # decode_post checks the grammar; a post built by hand may not pass
            rows.append((s.id, s.board, s.moderator, s.action, s.subject, s.target, s.reason, s.expires_at_ms,
                         s.created_at_ms))
            if s.moderator in self._followed(conn, s.board):
                changed.setdefault(s.board, set()).add((s.subject, s.target))
        if rows:
            conn.executemany(
                "INSERT OR IGNORE INTO statements (id, board, moderator, action, subject, target, reason,"
                " expires_at_ms, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return changed

    def _statements_leaving(self, conn: sqlite3.Connection, ids: Sequence[bytes]) -> dict[str, set[tuple[str, bytes]]]:
        """Before posts with these ids are deleted: the targets, by board, of the followed
        moderators' statements among them."""
        changed: dict[str, set[tuple[str, bytes]]] = {}
        for board, moderator, subject, target in self._select_in(
                "SELECT board, moderator, subject, target FROM statements WHERE id IN ({marks})", list(ids)):
            if moderator in self._followed(conn, board):
                changed.setdefault(board, set()).add((subject, target))
        return changed

    def _apply_trust_changes(self, conn: sqlite3.Connection, changed: Mapping[str, Collection[tuple[str, bytes]]],
                             now_ms: int) -> list[bytes]:
        """After statements of followed moderators came or went: rebuild those views and retrust."""
        if not changed:
            return []
        self._bump_epoch(conn)
        out: list[bytes] = []
        for board, targets in sorted(changed.items()):
            out += self._retrust(conn, board, targets, now_ms)
        return out


def _check_moderator_args(board: str, keys: Iterable[bytes], source: str) -> None:
    if source not in MODERATOR_SOURCES:
        raise ValueError(f"moderator source must be one of {MODERATOR_SOURCES}, not {source!r}")
    try:
        check_board(board)
    except DazibaoError as exc:
        raise ValueError(f"board {board!r}: {exc}") from None
    for key in keys:
        if type(key) is not bytes or len(key) != 32:
            raise ValueError("a moderator is a 32-byte public key")
