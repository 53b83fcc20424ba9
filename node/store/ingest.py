"""The store's ingest room: storing batches of posts, retraction bookkeeping, local deletion.

* **Ingest is idempotent and all-or-nothing.**  :meth:`IngestRoom.ingest` takes a batch of
  posts the caller has already decoded and signature-checked and stores it in one transaction:
  a post already stored is a duplicate, a tombstoned id is refused, and an exception leaves
  nothing of the batch behind.
* **Retractions are permanent and order-independent.**  *Whether* a retraction applies is
  decided by :func:`dazibao.protocol.retraction.judge`, from what is known of the retraction
  and its target; this room only keeps the books the decision needs: tombstones that remember
  the author and board of every removed id, and the retractions still waiting for their
  target (``pending_retractions``).  The final state is
  :func:`dazibao.protocol.retraction.settle` of everything received, whatever the order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from dazibao.protocol import limits
from dazibao.protocol.errors import BLOCKED, POW_REQUIRED, QUOTA_BYTES, QUOTA_POSTS
from dazibao.protocol.moderation import KIND_MODERATION
from dazibao.protocol.posts import KIND_POST, KIND_REPLY, KIND_RETRACT, Post, post_key
from dazibao.protocol.retraction import TOMBSTONE_REJECTED, TOMBSTONE_RETRACTED, Known, Verdict, judge
from dazibao.protocol.trust import Quota, admit

from .connection import guarded
from .moderation import DAY_MS, ModerationRoom
from .rows import IngestResult, PostRow
from .schema import INSERT_POST, INSERT_TOMBSTONE, POST_COLUMNS
from .search import SearchRoom

__all__ = [
    "IngestRoom", "REJECT_TOMBSTONED", "REJECT_NOT_CARRIED", "REJECT_RETRACTED", "REJECT_NOT_AUTHOR",
    "REJECT_BLOCKED", "REJECT_QUOTA_POSTS", "REJECT_QUOTA_BYTES", "REJECT_POW_REQUIRED",
]

# Codes of IngestResult.rejected.  None of them means the sender misbehaved: a peer may hold
# a post we deleted, a board we do not carry, or a retraction it has not been able to check.
REJECT_TOMBSTONED = "tombstoned"  # the id is tombstoned here (retracted, deleted or purged)
REJECT_NOT_CARRIED = "not_carried"  # the post's board is not one this node carries
REJECT_RETRACTED = "retracted"  # a same-author retraction of this post is known
REJECT_NOT_AUTHOR = Verdict.NOT_AUTHOR.value  # "retract_not_author": names another author's post
# Policy refusals (docs/moderation.md): remembered in ``refusals``, refused again without a
# signature check.  They do not mean the sender misbehaved either.
REJECT_BLOCKED = BLOCKED  # a moderator this node follows blocks the post or its author on the board
REJECT_QUOTA_POSTS = QUOTA_POSTS  # a stranger over its posts of the day on the board
REJECT_QUOTA_BYTES = QUOTA_BYTES  # a stranger over its bytes of the day on the board
REJECT_POW_REQUIRED = POW_REQUIRED  # the board asks strangers for work this post does not commit to


def stored_source(source: str | None) -> str | None:
    """What the store keeps of where a post came from: 'local', 'import', or 'peer' for any
    peer, never its address.  Sync needs no more once the post is stored, and a seized database
    must not map which node gave this one which post (docs/privacy.md)."""
    if source is None or source in ("local", "import"):
        return source
    return "peer"


class IngestRoom(ModerationRoom, SearchRoom):
    """Ingest, and the local removals (deletion, retention) that write tombstones."""

    @guarded
    def ingest(
        self,
        posts: Sequence[Post],
        *,
        source: str | None,
        now_ms: int,
        boards: Collection[str] | None = None,
    ) -> IngestResult:
        """Store a batch of decoded, signature-checked posts in one transaction.

        A post already stored (or repeated in the batch) is a duplicate.  Refused, with a
        code: a tombstoned id (``tombstoned``), a board not in ``boards`` when it is given
        (``not_carried``), a retraction naming another author's post (``retract_not_author``)
        or on another board than its target (``retract_wrong_board``), a post a same-author
        retraction is known for (``retracted``).

        Policy (docs/moderation.md), each post judged by :func:`dazibao.protocol.trust.admit`
        in batch order: ``blocked`` (a followed moderator blocks it or its author on its
        board), ``quota_posts`` / ``quota_bytes`` (a stranger past the day's quota on the board,
        counted per UTC day of ``now_ms``; also a stranger's statement past
        ``max_statements_per_board``), ``pow_required``.  Those ids are remembered in
        ``refusals`` and refused again with the same code.  A followed moderator's statement
        that arrives applies at once: stored posts it blocks are removed into refusals, and the
        refusals it lifts are forgotten (their keys, if carried, are in ``removed_keys``).

        Retractions (docs/protocol.md, "Retraction"), whatever order the posts arrive in,
        within a batch or across batches, each decided by
        :func:`dazibao.protocol.retraction.judge`:

        * a post is stored only if no retraction of it by its own author, on its board, is
          known; when one is, the post is removed (or never stored) and its id tombstoned as
          'retracted';
        * a retraction is stored unless its target, stored or tombstoned, is known to be by
          another author or on another board (then it is refused and its id tombstoned as
          'rejected', a final verdict); when the target is unknown it is stored and remembered
          as pending, and if the target later turns out to be one it may not retract, the
          retraction is removed and tombstoned the same way;
        * a retraction of a retraction, or of a post already tombstoned, is stored but removes
          nothing: a retraction, once known, stays in force, so its target cannot come back
          on nodes that have not yet seen it.

        ``source`` (a peer URL, 'local', 'import') says where the batch came from; the store
        keeps only :func:`stored_source` of it with each post.  'local' posts
        are synced to disk before this returns, since no peer has them yet.  If anything
        raises, nothing of the batch is stored.
        """
        carried = None if boards is None else frozenset(boards)
        with self._write(durable=source == "local") as conn:
            self._check_epoch(conn)
            result = _Batch(self, conn, source, now_ms, carried).run(posts)
            if result.added:
                self._index_inline(conn)
            return result

    @guarded
    def ingest_many(
        self,
        groups: Sequence[tuple[Sequence[Post], str | None]],
        *,
        now_ms: int,
        boards: Collection[str] | None = None,
    ) -> list[IngestResult]:
        """Store several batches, each ``(posts, source)``, in one write transaction.

        Each batch is judged exactly as :meth:`ingest` would judge it, in the order given, and
        sees what the batches before it stored: the results are those of one :meth:`ingest`
        call per batch made one after the other.  Only the cost is shared: one transaction, one
        commit; plain posts of batches that share no id are judged as one batch (the same
        outcome, see ``_mergeable``).  That is how the node stores the posts of many concurrent
        single-post pushes.  The inline search-index step of :meth:`ingest` is taken for a
        single batch only.  If anything raises, nothing of any batch is stored.
        """
        carried = None if boards is None else frozenset(boards)
        results: list[IngestResult] = []
        with self._write(durable=any(source == "local" for _, source in groups)) as conn:
            if _mergeable(groups):
                self._check_epoch(conn)
                results = _run_merged(_Batch(self, conn, None, now_ms, carried), groups)
            else:
                for posts, source in groups:
                    # Per batch, as separate calls would: a statement stored by one batch
                    # changes the trust views the next is judged by.
                    self._check_epoch(conn)
                    results.append(_Batch(self, conn, source, now_ms, carried).run(posts))
            # Several pushes in one transaction mean a busy node (they came within a few
            # milliseconds), not the trickle the inline search-index step is for: the full-text
            # index then waits for a quiet moment, like after a bulk sync (search scans the posts
            # not yet indexed meanwhile).  The step cost a third of the store's work per post.
            if len(groups) == 1 and results[0].added:
                self._index_inline(conn)
        return results

    @guarded
    def delete(self, ids: Iterable[bytes], reason: str = "deleted", *, now_ms: int) -> list[bytes]:
        """Delete stored posts and tombstone them, so gossip never brings them back.

        For a member hiding content locally (``reason`` 'deleted') or a mirror dropping it
        ('purged').  Ids that are not stored are ignored; an empty ``ids`` deletes nothing.
        Returns the reconciliation keys removed.
        """
        if reason not in ("deleted", "purged"):
            raise ValueError(f"delete reason must be 'deleted' or 'purged', not {reason!r}")
        ids = list(set(ids))
        if not ids:
            return []
        with self._write(durable=True) as conn:
            self._check_epoch(conn)
            rows = list(
                self._select_in("SELECT seq, id, board, created_at_ms, author FROM posts WHERE id IN ({marks})", ids)
            )
            changed = self._statements_leaving(conn, [r[1] for r in rows])
            removed = self._remove_rows(conn, rows, reason, now_ms)
            return removed + self._apply_trust_changes(conn, changed, now_ms)

    @guarded
    def purge_older_than(self, board: str, cutoff_ms: int, *, now_ms: int) -> int:
        """Delete and tombstone the posts of ``board`` created before ``cutoff_ms``; return how many.

        For mirrors with a retention period.  Pending retractions are kept, so a purged
        retraction still refuses its target if that arrives later.
        """
        # In SQL rather than row by row: a first purge may remove most of a large board.
        with self._write() as conn:
            self._check_epoch(conn)
            leaving = [r[0] for r in conn.execute(
                "SELECT id FROM statements WHERE board = ? AND created_at_ms < ?", (board, cutoff_ms))]
            changed = self._statements_leaving(conn, leaving)
            conn.execute(
                "INSERT OR IGNORE INTO tombstones (id, board, created_at_ms, author, reason, at_ms)"
                " SELECT id, board, created_at_ms, author, 'purged', ? FROM posts"
                " WHERE board = ? AND created_at_ms < ? ORDER BY created_at_ms, id",
                (now_ms, board, cutoff_ms),
            )
            count = conn.execute(
                "DELETE FROM posts WHERE board = ? AND created_at_ms < ?", (board, cutoff_ms)
            ).rowcount
            # A purged statement no longer counts (its row went with the post); what it blocked
            # may come back.  The keys that leave are read back from the change feed.
            self._apply_trust_changes(conn, changed, now_ms)
            return count

    @staticmethod
    def _remove_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], reason: str, now_ms: int) -> list[bytes]:
        conn.executemany("DELETE FROM posts WHERE seq = ?", [(r[0],) for r in rows])
        conn.executemany(
            INSERT_TOMBSTONE,
            [(pid, board, created, author, reason, now_ms) for _, pid, board, created, author in rows],
        )
        return [post_key(board, created, pid) for _, pid, board, created, _ in rows]


# --- the reading tables, kept per batch -----------------------------------------------------

# What the insert triggers of migration 4 do row by row, done once for every post stored after
# a seq: each statement reads only the new rows (a range of the rowid), and touches each
# board's row and each thread's row once, however many of the batch's posts are theirs.
# ``NOT INDEXED`` (the rowid range stays allowed) and ``CROSS JOIN`` hold SQLite to that
# plan: left to itself it read the whole (board, created_at, id) index to group without a
# sort, and every reply of the store off posts_parent_time, both O(store) per batch
# (tests/node/test_reading_tables.py checks the plans).
_KEEP_BOARD_STATS = """
    INSERT INTO board_stats (board, posts, rows, last_at_ms, last_post_at_ms)
    SELECT board, sum(kind IN ('post', 'reply')), count(*), max(created_at_ms),
           coalesce(max(CASE WHEN kind IN ('post', 'reply') THEN created_at_ms END), 0)
    FROM posts NOT INDEXED WHERE seq > ?1 GROUP BY board
    ON CONFLICT (board) DO UPDATE SET
        posts = posts + excluded.posts, rows = rows + excluded.rows,
        last_at_ms = max(last_at_ms, excluded.last_at_ms),
        last_post_at_ms = max(last_post_at_ms, excluded.last_post_at_ms)"""
# A new thread counts every reply stored, the batch's own and those stored before it
# ("parent IS NOT NULL" lets SQLite read them off the partial index posts_parent_time).
_KEEP_NEW_THREADS = """
    INSERT INTO threads (seq, id, board, last_at_ms, replies)
    SELECT p.seq, p.id, p.board, max(p.created_at_ms, coalesce(max(r.created_at_ms), 0)), count(r.seq)
    FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.parent IS NOT NULL AND r.kind = 'reply'
    WHERE p.seq > ?1 AND p.kind = 'post' GROUP BY p.seq"""
# A thread stored before the batch gains the batch's replies to it.  A reply whose parent is
# not a stored top-level post changes nothing (it is counted if that post arrives).
_KEEP_OLD_THREADS = """
    UPDATE threads SET replies = threads.replies + r.n, last_at_ms = max(threads.last_at_ms, r.newest)
    FROM (SELECT p.seq AS seq, count(*) AS n, max(x.created_at_ms) AS newest
          FROM posts AS x NOT INDEXED CROSS JOIN posts AS p ON p.id = x.parent
          WHERE x.seq > ?1 AND x.kind = 'reply' AND x.parent IS NOT NULL AND p.seq <= ?1
          GROUP BY p.seq) AS r
    WHERE threads.seq = r.seq"""


def keep_reading_tables(conn: sqlite3.Connection, last_seq: int) -> None:
    """Bring ``threads`` and ``board_stats`` up to date with the posts stored after ``last_seq``
    (inserted while ``reading_state.deferred`` turned their insert triggers off), in the open
    write transaction.  Raises what sqlite3 raises; the caller's transaction then rolls back.
    """
    conn.execute(_KEEP_BOARD_STATS, (last_seq,))
    conn.execute(_KEEP_NEW_THREADS, (last_seq,))
    conn.execute(_KEEP_OLD_THREADS, (last_seq,))


# --- several batches judged as one ---------------------------------------------------------

#: Kinds whose storing changes nothing but the post's own rows: no trust view, no retraction
#: bookkeeping of their own.  Batches of only these, with no id in two batches, are judged as
#: one batch (see _mergeable).
_PLAIN_KINDS = frozenset((KIND_POST, KIND_REPLY))


def _mergeable(groups: Sequence[tuple[Sequence[Post], str | None]]) -> bool:
    """Whether judging ``groups`` as one batch gives, batch by batch, what judging them one after
    the other gives.

    It does when no id is in two batches and every post is a plain post or reply: then what an
    earlier batch did that a later one looks at is what the one batch keeps in memory (the ids it
    stores, the stranger quota it counts, in order); nothing stored changes a trust view, and no
    retraction of the batches names a post of another (a retraction waiting in the store for one
    of their posts is judged the same either way, since the verdict depends only on the two posts).
    """
    if len(groups) < 2:
        return False
    owner: dict[bytes, int] = {}
    for n, (posts, _) in enumerate(groups):
        for post in posts:
            if post.kind not in _PLAIN_KINDS or owner.setdefault(post.id, n) != n:
                return False
    return True


def _run_merged(batch: _Batch, groups: Sequence[tuple[Sequence[Post], str | None]]) -> list[IngestResult]:
    """Run ``groups`` (see :func:`_mergeable`) as ``batch``; split its result by group."""
    owner: dict[bytes, int] = {}
    for n, (posts, source) in enumerate(groups):
        for post in posts:
            owner[post.id] = n
            batch.sources[post.id] = source
    merged = batch.run([post for posts, _ in groups for post in posts])
    added: list[list[Post]] = [[] for _ in groups]
    rejected: list[list[tuple[bytes, str]]] = [[] for _ in groups]
    duplicates = [0] * len(groups)
    for post in merged.added:
        added[owner[post.id]].append(post)
    for pid, code in merged.rejected:
        rejected[owner[pid]].append((pid, code))
    for pid in batch.duplicate_ids:
        duplicates[owner[pid]] += 1
    # Keys leave the set only when a stored retraction waiting for one of these posts turns out
    # to name it wrongly; that key is no batch's post, so any batch may report it.
    return [IngestResult(added[n], duplicates[n], rejected[n], merged.removed_keys if n == 0 else [])
            for n in range(len(groups))]


# --- one ingest batch -----------------------------------------------------------------------


class _Batch:
    """The work of one :meth:`IngestRoom.ingest` call, inside its write transaction.

    Everything the decisions need is read first (which ids are stored or tombstoned, the
    targets of the batch's retractions, the pending retractions naming the batch's posts); the
    decisions are then made in memory, each by :func:`judge`; the writes go out last, each as
    one executemany.  Within a batch, retractions waiting for the batch's posts are judged
    first and the batch's own retractions after; that gives the same outcome as any order,
    because a verdict depends only on the facts of the two posts.
    """

    def __init__(
        self, store: IngestRoom, conn: sqlite3.Connection, source: str | None, now_ms: int,
        carried: frozenset[str] | None,
    ) -> None:
        self.store = store
        self.conn = conn
        self.source = source
        #: The source of each post, where batches of several sources are judged as one.
        self.sources: dict[bytes, str | None] = {}
        self.duplicate_ids: list[bytes] = []  # one entry per duplicate counted
        self.now_ms = now_ms
        self.carried = carried
        self.new: dict[bytes, Post] = {}  # posts to insert, in batch order
        self.duplicates = 0
        self.rejected: list[tuple[bytes, str]] = []
        self.removed_keys: list[bytes] = []
        self.delete_seqs: list[int] = []
        self.tombstones: list[tuple[bytes, str, int, bytes, str, int]] = []
        self.gone: dict[bytes, Known] = {}  # tombstoned ids this batch looks at -> what is left of them
        self.pending_add: list[tuple[bytes, bytes, bytes]] = []
        self.pending_drop: list[tuple[bytes, bytes]] = []
        self.refused: list[tuple[bytes, str, int, bytes, str]] = []  # to remember in ``refusals``
        self.day = now_ms // DAY_MS
        self.usage: dict[tuple[str, bytes], list[int]] = {}  # (board, author) -> [posts, bytes] today
        self.used: set[tuple[str, bytes]] = set()  # usage rows to write back
        self.statement_counts: dict[str, int] = {}
        self.quotas: dict[str, Quota] = {}
        self.trust_removed: list[bytes] = []  # keys a change of trust removed from the set

    def run(self, posts: Sequence[Post]) -> IngestResult:
        self._admit(posts)
        if self.new:
            self._judge_waiting()
            self._judge_retractions()
            self._write()
        elif self.refused:
            self.store._remember(self.conn, self.refused, self.now_ms)
        added = list(self.new.values())
        if self.trust_removed:
            gone = set(self.trust_removed)
            added = [p for p in added if p.key not in gone]
            self.removed_keys += self.trust_removed
        return IngestResult(added, self.duplicates, self.rejected, self.removed_keys)

    def _judge_policy(self, post: Post) -> str | None:
        """The policy verdict on one post (None: admit), counting a stranger's quota."""
        store, conn = self.store, self.conn
        view = store._view(conn, post.board, self.now_ms)
        local = post.author in store._locals(conn)
        who = (post.board, post.author)
        usage = self.usage.get(who)
        if usage is None:
            usage = self.usage[who] = [0, 0]
        quota = self.quotas.get(post.board)
        if quota is None:
            quota = self.quotas[post.board] = store.quota(post.board)
        code = admit(view, quota, post, posts_today=usage[0], bytes_today=usage[1], local_author=local)
        if code is not None:
            return code
        stranger = not local and post.author not in view.followed and not view.vouched(post.author)
        if not stranger:
            return None
        if post.kind == KIND_MODERATION:
            # Statements are read to build a board's view: strangers cannot grow them past a bound.
            count = self.statement_counts.get(post.board)
            if count is None:
                count = conn.execute("SELECT count(*) FROM statements WHERE board = ?", (post.board,)).fetchone()[0]
            if count >= limits.MAX_STATEMENTS_PER_BOARD:
                return REJECT_QUOTA_POSTS
            self.statement_counts[post.board] = count + 1
        usage[0] += 1
        usage[1] += len(post.raw)
        self.used.add(who)
        return None

    def _admit(self, posts: Sequence[Post]) -> None:
        batch: dict[bytes, Post] = {}
        for post in posts:
            if post.id in batch:
                self.duplicates += 1
                self.duplicate_ids.append(post.id)
            else:
                batch[post.id] = post
        ids = list(batch)
        stored = {r[0] for r in self.store._select_in("SELECT id FROM posts WHERE id IN ({marks})", ids)}
        tombs = {r[0] for r in self.store._select_in("SELECT id FROM tombstones WHERE id IN ({marks})", ids)}
        refused = dict(self.store._select_in("SELECT id, code FROM refusals WHERE id IN ({marks})", ids))
        # Today's usage of the batch's authors, read at once (one query, not one per author).
        authors = list({p.author for p in batch.values()})
        for board, author, n, size in self.store._select_in(
                f"SELECT board, author, posts, bytes FROM quota_usage WHERE day = {int(self.day)}"
                " AND author IN ({marks})", authors):
            self.usage[(board, author)] = [n, size]
        for pid, post in batch.items():
            if pid in stored:
                self.duplicates += 1
                self.duplicate_ids.append(pid)
            elif pid in tombs:
                self.rejected.append((pid, REJECT_TOMBSTONED))
            elif pid in refused:
                self.rejected.append((pid, refused[pid]))
            elif self.carried is not None and post.board not in self.carried:
                self.rejected.append((pid, REJECT_NOT_CARRIED))
            else:
                code = self._judge_policy(post)
                if code is None:
                    self.new[pid] = post
                else:
                    self.rejected.append((pid, code))
                    self.refused.append((pid, post.board, post.created_at_ms, post.author, code))

    def _tombstone_facts(self, ids: list[bytes]) -> dict[bytes, Known]:
        sql = "SELECT id, author, board FROM tombstones WHERE id IN ({marks})"
        return {pid: Known.tombstone(author, board) for pid, author, board in self.store._select_in(sql, ids)}

    def _stored_rows(self, ids: list[bytes]) -> dict[bytes, PostRow]:
        sql = f"SELECT {POST_COLUMNS} FROM posts WHERE id IN ({{marks}})"
        return {row[1]: PostRow(*row) for row in self.store._select_in(sql, ids)}

    def _judge_waiting(self) -> None:
        """Judge the retractions stored earlier that were waiting for a post of this batch."""
        arriving = dict(self.new)  # decisions below must not depend on the order of the rows
        pending = list(
            self.store._select_in(
                "SELECT target_id, retraction_id, author FROM pending_retractions WHERE target_id IN ({marks})",
                list(arriving),
            )
        )
        if not pending:
            return
        retraction_ids = [r[1] for r in pending]
        rows = self._stored_rows(retraction_ids)
        # A waiting retraction deleted or purged here since still counts (a purged retraction
        # still refuses its target); its tombstone keeps its board.
        gone = self._tombstone_facts([rid for rid in retraction_ids if rid not in rows])
        for target_id, retraction_id, author in pending:
            self.pending_drop.append((target_id, retraction_id))
            target = arriving[target_id]
            row = rows.get(retraction_id)
            if row is not None:
                facts = Known(row.author, row.board, row.kind)
            else:
                left = gone.get(retraction_id)
                facts = Known.tombstone(author, None if left is None else left.board)
            verdict = judge(facts, Known.of(target))
            if verdict is Verdict.APPLY:
                if target_id in self.new:
                    self._retract_new(target)
            elif verdict.refused and row is not None:
                # Stored while its target was unknown; now known to name a post it may not retract.
                self.delete_seqs.append(row.seq)
                self.removed_keys.append(row.key)
                self._tombstone(row, TOMBSTONE_REJECTED)

    def _judge_retractions(self) -> None:
        """Judge the retractions of this batch against what is known of their targets."""
        batch_retractions = [p for p in self.new.values() if p.kind == KIND_RETRACT]
        if not batch_retractions:
            return
        wanted = list({r.parent for r in batch_retractions if r.parent is not None and r.parent not in self.new})
        stored = self._stored_rows(wanted)
        for pid, facts in self._tombstone_facts(wanted).items():
            self.gone.setdefault(pid, facts)
        for retraction in batch_retractions:
            if retraction.id not in self.new:
                continue  # removed by an earlier decision of this batch
            target_id = retraction.parent
            assert target_id is not None  # decode_post guarantees a retraction names a parent
            row = None
            target: Known | None
            if target_id in self.new:
                target = Known.of(self.new[target_id])
            elif target_id in self.gone:
                # Tombstoned before, or removed by an earlier decision of this batch.
                target = self.gone[target_id]
            elif target_id in stored:
                row = stored[target_id]
                target = Known(row.author, row.board, row.kind)
            else:
                target = None
            verdict = judge(Known.of(retraction), target)
            if verdict.refused:
                self._refuse_retraction(retraction, verdict.value)
            elif verdict is Verdict.APPLY:
                if row is None:
                    self._retract_new(self.new[target_id])
                else:
                    self.delete_seqs.append(row.seq)
                    self.removed_keys.append(row.key)
                    self._tombstone(row, TOMBSTONE_RETRACTED)
            elif verdict is Verdict.WAIT:
                self.pending_add.append((target_id, retraction.id, retraction.author))

    def _refuse_retraction(self, retraction: Post, code: str) -> None:
        # The verdict is final (a post's author and board never change), and a node that
        # stored this retraction while its target was unknown removes it the same way
        # (_judge_waiting): tombstoning it here makes both end in the same state.
        del self.new[retraction.id]
        self.rejected.append((retraction.id, code))
        self._tombstone(retraction, TOMBSTONE_REJECTED)

    def _retract_new(self, target: Post) -> None:
        del self.new[target.id]
        self.rejected.append((target.id, REJECT_RETRACTED))
        self._tombstone(target, TOMBSTONE_RETRACTED)

    def _tombstone(self, post: Post | PostRow, reason: str) -> None:
        self.tombstones.append((post.id, post.board, post.created_at_ms, post.author, reason, self.now_ms))
        self.gone[post.id] = Known.tombstone(post.author, post.board)

    def _write(self) -> None:
        conn, store = self.conn, self.store
        changed: dict[str, set[tuple[str, bytes]]] = {}
        if self.delete_seqs:
            # Statements of followed moderators retracted (undone) or refused with this batch.
            changed = store._statements_leaving(conn, [t[0] for t in self.tombstones])
            conn.executemany("DELETE FROM posts WHERE seq = ?", [(s,) for s in self.delete_seqs])
        if self.tombstones:
            conn.executemany(INSERT_TOMBSTONE, self.tombstones)
        if self.pending_drop:
            conn.executemany(
                "DELETE FROM pending_retractions WHERE target_id = ? AND retraction_id = ?", self.pending_drop
            )
        if self.pending_add:
            conn.executemany(
                "INSERT OR IGNORE INTO pending_retractions (target_id, retraction_id, author) VALUES (?, ?, ?)",
                self.pending_add,
            )
        source, sources, now_ms = self.source, self.sources, self.now_ms
        # The reading tables are kept once for the batch, not by their insert triggers per
        # row (schema.py, migration 4); before the trust changes below, whose deletes the
        # delete triggers keep.
        last_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM posts").fetchone()[0]
        conn.execute("UPDATE reading_state SET deferred = 1")
        conn.executemany(
            INSERT_POST,
            [
                (p.id, p.kind, p.board, p.author, p.created_at_ms, p.parent, p.body, p.raw, now_ms,
                 stored_source(sources.get(p.id, source) if sources else source))
                for p in self.new.values()
            ],
        )
        keep_reading_tables(conn, last_seq)
        conn.execute("UPDATE reading_state SET deferred = 0")
        if self.used:
            conn.executemany(
                "INSERT INTO quota_usage (board, author, day, posts, bytes) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (author, board, day) DO UPDATE SET posts = excluded.posts, bytes = excluded.bytes",
                [(board, author, self.day, *self.usage[(board, author)]) for board, author in self.used],
            )
        store._remember(conn, self.refused, now_ms)
        for board, targets in store._statements_added(conn, self.new.values()).items():
            changed.setdefault(board, set()).update(targets)
        self.trust_removed = store._apply_trust_changes(conn, changed, now_ms)
