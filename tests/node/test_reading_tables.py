"""The maintained reading tables (``threads`` and ``board_stats``, migration 4), the counts a
reader sees, and the read-only store of the node's read pool, on real SQLite files."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dazibao.node.store import SCHEMA_VERSION, Store, StoreError
from dazibao.node.store import ingest as ingest_module
from dazibao.node.store import schema as schema_module
from dazibao.node.store.schema import INSERT_POST
from dazibao.protocol import moderation, posts
from tests.factories import T0_MS, examples, key, make_post, reply, retraction

NOW = T0_MS + 10 * 86_400_000
MOD = key(300)
AUTHORS = [key(301), key(302), key(303)]  # local pseudonyms: never held to the stranger quota
STRANGER = key(304)  # not a local pseudonym: a moderator's block removes his posts
BOARDS = ["general", "labor", "劳动"]


def recomputed_threads(store: Store) -> set[tuple[bytes, str, int, int]]:
    """The ``threads`` table as the old grouping query computed it from the posts."""
    return set(store._conn.execute(
        "SELECT p.id, p.board, max(p.created_at_ms, coalesce(max(r.created_at_ms), 0)), count(r.seq)"
        " FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'"
        " WHERE p.kind = 'post' GROUP BY p.seq"))


def recomputed_stats(store: Store) -> set[tuple[str, int, int, int, int]]:
    return set(store._conn.execute(
        "SELECT board, sum(kind IN ('post', 'reply')), count(*), max(created_at_ms),"
        " coalesce(max(CASE WHEN kind IN ('post', 'reply') THEN created_at_ms END), 0)"
        " FROM posts GROUP BY board"))


def maintained(store: Store) -> tuple[set[tuple], set[tuple]]:
    threads = set(store._conn.execute("SELECT id, board, last_at_ms, replies FROM threads"))
    stats = set(store._conn.execute("SELECT board, posts, rows, last_at_ms, last_post_at_ms FROM board_stats"))
    return threads, stats


def assert_maintained(store: Store) -> None:
    threads, stats = maintained(store)
    assert threads == recomputed_threads(store)
    assert stats == recomputed_stats(store)


def insert_raw(path, post: posts.Post) -> None:
    """Store ``post`` as another program would: one plain INSERT on a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(INSERT_POST, (post.id, post.kind, post.board, post.author, post.created_at_ms,
                                       post.parent, post.body, post.raw, NOW, "other"))
    finally:
        conn.close()


def open_store(path) -> Store:
    store = Store(path)
    for i, signer in enumerate(AUTHORS):
        store.add_identity(f"me{i}", signer.public_key, NOW)
    return store


def profile(signer, at: int, board: str = "general") -> posts.Post:
    return make_post(signer, kind="profile", board=board, body="name: someone", created_at_ms=at)


# --- the upgrade --------------------------------------------------------------------------------


def test_a_version_3_store_gets_the_reading_tables_filled_from_its_rows(tmp_path, monkeypatch):
    path = tmp_path / "node.db"
    root = make_post(AUTHORS[0], body="root", created_at_ms=T0_MS)
    late_root = make_post(AUTHORS[1], board="labor", body="late", created_at_ms=T0_MS + 50)
    replies = [reply(root, f"r{i}", signer=AUTHORS[1], created_at_ms=T0_MS + 10 + i) for i in range(3)]
    orphan = reply(make_post(AUTHORS[2], body="never stored"), "orphan", signer=AUTHORS[0])
    extra = [retraction(replies[0], signer=AUTHORS[1], created_at_ms=T0_MS + 100), profile(AUTHORS[2], T0_MS + 200)]
    with monkeypatch.context() as m:
        m.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:3])
        m.setattr(schema_module, "SCHEMA_VERSION", 3)
        with open_store(path) as old:
            # The rows that release's ingest left (the retraction removed its reply), written
            # raw: this code's ingest keeps tables that a version 3 file does not have.
            for post in [root, late_root, *replies[1:], orphan, *extra]:
                old._conn.execute(INSERT_POST, (post.id, post.kind, post.board, post.author, post.created_at_ms,
                                                post.parent, post.body, post.raw, NOW, "import"))
            assert not old._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'threads'").fetchall()
    with Store(path) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
        assert_maintained(store)
        # The retraction removed its reply: two replies are left, the newest at +12.
        [thread] = store.threads("general")
        assert (thread.post.id, thread.replies, thread.last_at_ms) == (root.id, 2, T0_MS + 12)
        # A reader counts the root, two replies and the orphan reply; not the retraction, not the profile.
        assert store.post_count("general") == 4 and store.count("general") == 6
        assert [(b.board, b.posts) for b in store.boards()] == [("general", 4), ("labor", 1)]
        # The tables are kept from then on.
        store.ingest([reply(late_root, "new", signer=AUTHORS[0])], source="import", now_ms=NOW)
        assert_maintained(store)
    assert schema_module.expected_objects(4)["table"] >= {"threads", "board_stats"}


# --- kept right on every write path -------------------------------------------------------------

# One step of a random history: ("post", author, board, dt), ("reply", author, dt, target),
# ("retract", target), ("retention", board, cutoff), ("block", board), ("delete", target), ("profile", board),
# ("batch", [(is_reply, author, board, target), ...], backwards): several posts in one ingest,
# the ingest room keeping the tables once for the batch, and ("raw", is_reply, board, target):
# a post inserted by another program, through the triggers.
# A target k is the k-th most recent post made, so that replies to replies, and retractions of
# a reply to a thread, come up often; in a batch, replies to the batch's own posts as well.
_batch_items = st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.sampled_from(BOARDS), st.integers(0, 6)),
                        min_size=2, max_size=6)
_steps = st.one_of(
    st.tuples(st.just("batch"), _batch_items, st.booleans()),
    st.tuples(st.just("raw"), st.booleans(), st.sampled_from(BOARDS), st.integers(0, 4)),
    st.tuples(st.just("post"), st.integers(0, 3), st.sampled_from(BOARDS), st.integers(0, 50)),
    st.tuples(st.just("reply"), st.integers(0, 3), st.integers(0, 50), st.integers(0, 4)),
    st.tuples(st.just("retract"), st.integers(0, 4)),
    st.tuples(st.just("retention"), st.sampled_from(BOARDS), st.integers(0, 60)),
    st.tuples(st.just("block"), st.sampled_from(BOARDS)),
    st.tuples(st.just("delete"), st.integers(0, 4)),
    st.tuples(st.just("profile"), st.sampled_from(BOARDS), st.integers(0, 50)),
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_steps, min_size=1, max_size=30))
# The newest reply of a thread retracted, and deleted; a stranger's reply blocked; old replies purged.
@example(steps=[("post", 0, "general", 0), ("reply", 1, 0, 0), ("reply", 2, 0, 1), ("retract", 0), ("delete", 1)])
@example(steps=[("post", 0, "labor", 0), ("reply", 3, 0, 0), ("reply", 1, 40, 1), ("block", "labor"),
                ("retention", "labor", 1)])
# A batch holding a thread, its replies (one before it) and replies to an older thread and to a reply.
@example(steps=[("post", 0, "general", 0), ("batch", [(False, 1, "labor", 0), (True, 2, "labor", 0),
                                                      (True, 0, "labor", 1), (True, 1, "labor", 1),
                                                      (True, 3, "labor", 2)], True), ("raw", True, "labor", 0)])
def test_the_tables_equal_a_recomputation_after_any_mix_of_writes(tmp_path_factory, steps):
    path = tmp_path_factory.mktemp("mix") / "node.db"
    signers = [*AUTHORS, STRANGER]
    made: list[posts.Post] = []  # every post made, stored or not, for replies and retractions
    clock = T0_MS
    with open_store(path) as store:
        for step in steps:
            clock += 1_000
            action = step[0]
            if action == "post":
                _, who, board, dt = step
                made.append(make_post(signers[who], board=board, body=f"p{len(made)}", created_at_ms=clock - dt))
                store.ingest([made[-1]], source="http://peer.test", now_ms=NOW)
            elif action == "reply" and made:
                _, who, dt, target = step
                parent = made[-1 - target % len(made)]
                made.append(reply(parent, f"r{len(made)}", signer=signers[who], created_at_ms=clock - dt))
                store.ingest([made[-1]], source="http://peer.test", now_ms=NOW)
            elif action == "retract" and made:
                target = made[-1 - step[1] % len(made)]
                signer = next(s for s in signers if s.public_key == target.author)
                store.ingest([retraction(target, signer=signer, created_at_ms=clock)], source="local", now_ms=NOW)
            elif action == "retention":
                store.purge_older_than(step[1], clock - step[2] * 1_000, now_ms=NOW)
            elif action == "block":
                store.add_moderator(step[1], MOD.public_key, source="cli", now_ms=NOW)
                block = moderation.create_statement(MOD, board=step[1], action="block", subject="author",
                                                    target=STRANGER.public_key, reason="spam",
                                                    expires_at_ms=None, created_at_ms=clock)
                store.ingest([block], source="http://peer.test", now_ms=NOW)
            elif action == "delete" and made:
                store.delete([made[-1 - step[1] % len(made)].id], "deleted", now_ms=NOW)
            elif action == "profile":
                store.ingest([profile(AUTHORS[0], clock - step[2], step[1])], source="local", now_ms=NOW)
            elif action == "batch":
                fresh = []
                for is_reply, who, board, target in step[1]:
                    if is_reply and made:
                        parent = made[-1 - target % len(made)]
                        made.append(reply(parent, f"b{len(made)}", signer=signers[who], created_at_ms=clock - target))
                    else:
                        made.append(make_post(signers[who], board=board, body=f"b{len(made)}",
                                              created_at_ms=clock - target))
                    fresh.append(made[-1])
                store.ingest(fresh[::-1] if step[2] else fresh, source="http://peer.test", now_ms=NOW)
            elif action == "raw":
                _, is_reply, board, target = step
                parent = made[-1 - target % len(made)] if is_reply and made else None
                made.append(make_post(AUTHORS[1], kind="reply" if parent else "post",
                                      board=parent.board if parent else board, body=f"raw{len(made)}",
                                      created_at_ms=clock, parent=parent.id if parent else None))
                insert_raw(path, made[-1])
            assert_maintained(store)
    with Store(path) as again:
        assert again._conn.execute("SELECT deferred FROM reading_state").fetchone()[0] == 0


def test_the_batch_statements_read_only_the_new_rows(tmp_path):
    # Left to its own plan, SQLite grouped the new rows by reading a whole index of posts (every
    # row of the store, once per batch).  Planned on a store with statistics, as a node has them.
    with open_store(tmp_path / "node.db") as store:
        roots = [make_post(AUTHORS[i % 3], board=BOARDS[i % 3], body=f"p{i}", created_at_ms=T0_MS + i)
                 for i in range(300)]
        store.ingest(roots, source="import", now_ms=NOW)
        store.ingest([reply(roots[i], f"r{i}", signer=AUTHORS[0]) for i in range(0, 300, 3)],
                     source="import", now_ms=NOW)
        store._conn.execute("ANALYZE")
        for sql in (ingest_module._KEEP_BOARD_STATS, ingest_module._KEEP_NEW_THREADS,
                    ingest_module._KEEP_OLD_THREADS):
            plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql, (350,))]
            reads = [step for step in plan if step.startswith(("SCAN", "SEARCH")) and "threads" not in step]
            assert reads and not any(step.startswith("SCAN") and " r" != step[4:6] for step in reads), plan
            assert "INTEGER PRIMARY KEY (rowid>?)" in reads[0], plan
            assert all("posts_board_time" not in step and "(parent>?)" not in step for step in reads), plan


def test_a_post_written_by_another_process_is_in_the_tables(tmp_path):
    # Triggers, not code in the ingest room: a write through any connection keeps the tables.
    path = tmp_path / "node.db"
    root = make_post(AUTHORS[0], created_at_ms=T0_MS)
    with open_store(path) as store:
        store.ingest([root], source="local", now_ms=NOW)
        with Store(path) as other:
            other.ingest([reply(root, signer=AUTHORS[1])], source="local", now_ms=NOW)
        [thread] = store.threads("general")
        assert thread.replies == 1 and thread.last_at_ms == T0_MS + 500
        assert_maintained(store)


# --- what a reader counts -----------------------------------------------------------------------


def test_counts_shown_to_readers_leave_out_every_kind_but_posts_and_replies(tmp_path):
    root = make_post(AUTHORS[0], board="labor", created_at_ms=T0_MS)
    answer = reply(root, signer=AUTHORS[1])
    gone = make_post(AUTHORS[1], board="labor", created_at_ms=T0_MS + 5)
    others = [retraction(gone, signer=AUTHORS[1], created_at_ms=T0_MS + 9_000),
              profile(AUTHORS[2], T0_MS + 8_000, "labor"), profile(AUTHORS[2], T0_MS + 7_000, "quiet"),
              moderation.create_statement(AUTHORS[2], board="labor", action="hide", subject="post", target=gone.id,
                                          reason="spam", expires_at_ms=None, created_at_ms=T0_MS + 6_000)]
    with open_store(tmp_path / "node.db") as store:
        result = store.ingest([root, answer, gone, *others], source="local", now_ms=NOW)
        assert len(result.added) == 6  # the retraction removed its post
        assert store.post_count() == 2 and store.post_count("labor") == 2 and store.post_count("quiet") == 0
        assert store.count("labor") == 5 and store.count() == 6
        # Newest activity as a reader sees it: the reply, not the profile or the retraction.
        assert [(b.board, b.posts, b.last_at_ms) for b in store.board_page(10)] == [
            ("labor", 2, T0_MS + 500), ("quiet", 0, 0)]
        assert store.board_counts_of(("post", "reply")) == [("labor", 2, T0_MS + 500), ("quiet", 0, None)]
        # The general form of board_counts_of still counts any kinds asked for.
        assert store.board_counts_of(("profile",)) == [("labor", 1, T0_MS + 8_000), ("quiet", 1, T0_MS + 7_000)]
        assert store.board_count() == 2 and store.boards_with_posts(["labor", "nowhere"]) == {"labor"}
        assert store.active_boards(1) == [("labor", T0_MS + 9_000)]
        assert store.reply_count(root.id) == 1 and store.reply_count(answer.id) == 0


# --- the read-only store ------------------------------------------------------------------------


def test_a_read_only_store_reads_what_the_writer_commits_and_refuses_to_write(tmp_path):
    path = tmp_path / "node.db"
    first = make_post(AUTHORS[0], created_at_ms=T0_MS)
    with open_store(path) as writer, Store(path, read_only=True) as reader:
        assert reader.read_only and reader.threads("general") == []
        writer.ingest([first], source="local", now_ms=NOW)
        assert [t.post.id for t in reader.threads("general")] == [first.id]
        with pytest.raises(StoreError):
            reader.ingest([make_post(AUTHORS[1])], source="local", now_ms=NOW)
        with pytest.raises(StoreError):
            reader.set_meta("boards", "[]")
        assert writer.count() == 1 and reader.count() == 1


def test_a_read_only_store_needs_an_existing_current_file(tmp_path, monkeypatch):
    with pytest.raises(StoreError):
        Store(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError):
        Store(":memory:", read_only=True)
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:3])
        m.setattr(schema_module, "SCHEMA_VERSION", 3)
        Store(path).close()
    with pytest.raises(StoreError, match="schema version 3"):
        Store(path, read_only=True)
