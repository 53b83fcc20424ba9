"""Tests of the node's SQLite store: ingest rules, retractions, search, migrations, change feed."""

from __future__ import annotations

import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.node.store import (
    REJECT_NOT_AUTHOR,
    REJECT_NOT_CARRIED,
    REJECT_RETRACTED,
    REJECT_TOMBSTONED,
    SCHEMA_VERSION,
    IdentityExistsError,
    NotAStoreError,
    SchemaVersionError,
    Store,
    StoreBusyError,
    StoreError,
)
from dazibao.node.store import queries as queries_module
from dazibao.node.store import schema as schema_module
from dazibao.node.store import search as search_module
from dazibao.protocol.identity import SigningKey
from dazibao.protocol.posts import create_post, post_key
from dazibao.protocol.retraction import settle

A = SigningKey(bytes([1]) * 32)
B = SigningKey(bytes([2]) * 32)
C = SigningKey(bytes([3]) * 32)
NOW = 1_700_000_000_000


def mk(key, body="hello", t=1_000, board="general", kind="post", parent=None):
    if kind == "retract":
        body = ""
    return create_post(key, kind=kind, board=board, body=body, created_at_ms=t, parent=parent)


def retract(key, target, t=None):
    return mk(key, t=target.created_at_ms + 1 if t is None else t, board=target.board, kind="retract", parent=target.id)


def ingest(store, posts, **kw):
    kw.setdefault("source", "http://peer.example")
    kw.setdefault("now_ms", NOW)
    return store.ingest(posts, **kw)


def tombstones(store):
    return {row[0]: row[1] for row in store._conn.execute("SELECT id, reason FROM tombstones")}


def pending(store):
    return set(store._conn.execute("SELECT target_id, retraction_id, author FROM pending_retractions"))


def stored_ids(store):
    return {row[0] for row in store._conn.execute("SELECT id FROM posts")}


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    s = Store.memory() if request.param == "memory" else Store(tmp_path / "node.db")
    yield s
    s.close()


# --- ingest ---------------------------------------------------------------------------------


def test_ingest_stores_posts_exactly(store):
    p1, p2 = mk(A, "first", 1_000), mk(B, "second", 2_000, board="other")
    result = ingest(store, [p1, p2], source="local")
    assert result.added == [p1, p2]
    assert (result.duplicates, result.rejected, result.removed_keys) == (0, [], [])
    row = store.get(p1.id)
    assert row.to_post() == p1
    assert row.raw == p1.raw and row.key == p1.key and row.signature == p1.signature
    assert (row.source, row.received_at_ms) == ("local", NOW)
    assert store.get(b"\x00" * 32) is None
    assert store.get_raw([p2.id, b"\x09" * 32, p1.id, p2.id]) == [p2.raw, p1.raw, p2.raw]
    assert store.has([p1.id, b"\x09" * 32]) == {p1.id}
    assert store.count() == 2 and store.count("other") == 1


def test_ingest_is_idempotent(store):
    p1, p2 = mk(A, "one"), mk(A, "two")
    assert ingest(store, [p1, p1, p2]).duplicates == 1
    again = ingest(store, [p2, p1])
    assert (again.added, again.duplicates, again.rejected) == ([], 2, [])
    assert store.count() == 2
    assert ingest(store, []).added == []


def test_an_exception_mid_batch_leaves_nothing(store):
    target = mk(A, "target", 1_000)
    ingest(store, [target])
    good = [mk(A, f"post {i}", 2_000 + i) for i in range(5)]
    broken = replace(mk(A, "broken", 3_000), id=b"short")  # fails the schema's CHECK
    with pytest.raises(sqlite3.IntegrityError):
        ingest(store, [retract(A, target), *good, broken])
    # Neither the posts, nor the retraction's deletion and tombstone, were kept.
    assert stored_ids(store) == {target.id}
    assert tombstones(store) == {} and pending(store) == set()
    with pytest.raises(AttributeError):
        ingest(store, [*good, object()])
    assert store.count() == 1
    # The store is still usable afterwards.
    assert len(ingest(store, good).added) == 5


def test_tombstoned_ids_are_refused(store):
    p = mk(A, "hide me")
    ingest(store, [p])
    assert store.delete([p.id], now_ms=NOW) == [p.key]
    result = ingest(store, [p])
    assert result.added == [] and result.rejected == [(p.id, REJECT_TOMBSTONED)]
    assert store.tombstoned([p.id, b"\x01" * 32]) == {p.id}
    assert store.count() == 0


def test_boards_not_carried_are_refused(store):
    yes, no = mk(A, "yes", board="carried"), mk(A, "no", board="elsewhere")
    result = ingest(store, [yes, no], boards={"carried"})
    assert result.added == [yes] and result.rejected == [(no.id, REJECT_NOT_CARRIED)]
    assert store.tombstoned([no.id]) == set()  # may be carried later
    assert ingest(store, [no]).added == [no]


def test_posts_are_immutable(store):
    ingest(store, [mk(A)])
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        store._conn.execute("UPDATE posts SET body = 'forged'")


# --- retractions ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["target_first", "retraction_first"])
@pytest.mark.parametrize("batching", ["one_batch", "two_batches"])
def test_same_author_retraction_in_any_order(store, order, batching):
    target, keep = mk(A, "retract me", 1_000), mk(A, "keep me", 1_500)
    r = retract(A, target)
    seq = [target, r] if order == "target_first" else [r, target]
    if batching == "one_batch":
        results = [ingest(store, [keep, *seq])]
    else:
        results = [ingest(store, [keep, seq[0]]), ingest(store, [seq[1]])]
    assert stored_ids(store) == {keep.id, r.id}
    assert tombstones(store) == {target.id: "retracted"}
    assert pending(store) == set()
    row = store._conn.execute("SELECT board, created_at_ms, author FROM tombstones").fetchone()
    assert row == (target.board, target.created_at_ms, target.author)
    removed = [k for res in results for k in res.removed_keys]
    if order == "target_first" and batching == "two_batches":
        assert removed == [target.key]  # it was stored, so the index must drop it
    else:
        assert removed == []  # never stored
        assert (target.id, REJECT_RETRACTED) in [x for res in results for x in res.rejected]
    # It never comes back.
    assert ingest(store, [target]).rejected == [(target.id, REJECT_TOMBSTONED)]


def test_retraction_of_another_authors_post_is_refused(store):
    target = mk(A, "mine", 1_000)
    forged = retract(B, target)
    ingest(store, [target])
    result = ingest(store, [forged])
    assert result.added == [] and result.rejected == [(forged.id, REJECT_NOT_AUTHOR)]
    assert stored_ids(store) == {target.id}
    assert tombstones(store) == {forged.id: "rejected"}
    assert pending(store) == set()


def test_foreign_retraction_before_its_target_is_removed_when_the_target_arrives(store):
    target = mk(A, "mine", 1_000)
    forged = retract(B, target)
    first = ingest(store, [forged])
    assert first.added == [forged]
    assert pending(store) == {(target.id, forged.id, B.public_key)}
    second = ingest(store, [target])
    assert second.added == [target]  # stored normally
    assert second.removed_keys == [forged.key]
    assert stored_ids(store) == {target.id}
    assert tombstones(store) == {forged.id: "rejected"}
    assert pending(store) == set()


def test_pending_retraction_then_target_across_batches(store):
    target = mk(A, "later", 1_000)
    r1, r2 = retract(A, target, 2_000), retract(A, target, 3_000)  # two retractions, same author
    forged = retract(B, target)
    assert len(ingest(store, [r1, r2, forged]).added) == 3
    assert len(pending(store)) == 3
    result = ingest(store, [target])
    assert result.added == [] and result.rejected == [(target.id, REJECT_RETRACTED)]
    assert result.removed_keys == [forged.key]
    assert stored_ids(store) == {r1.id, r2.id}
    assert tombstones(store) == {target.id: "retracted", forged.id: "rejected"}
    assert pending(store) == set()


def test_a_retraction_of_a_retraction_removes_nothing(store):
    target = mk(A, "gone", 1_000)
    r1 = retract(A, target, 2_000)
    r2 = mk(A, t=3_000, kind="retract", parent=r1.id)
    ingest(store, [target, r1])
    assert ingest(store, [r2]).added == [r2]
    assert stored_ids(store) == {r1.id, r2.id}
    assert tombstones(store) == {target.id: "retracted"}


def test_retraction_of_a_deleted_post_is_checked_against_its_tombstone(store):
    target = mk(A, "deleted locally", 1_000)
    ingest(store, [target])
    store.delete([target.id], now_ms=NOW)
    own, forged = retract(A, target, 2_000), retract(B, target, 2_001)
    result = ingest(store, [own, forged])
    assert result.added == [own] and result.rejected == [(forged.id, REJECT_NOT_AUTHOR)]
    assert pending(store) == set()  # the target can never arrive


def test_a_purged_retraction_still_refuses_its_target(store):
    target = mk(A, "old", 1_000, board="mirror")
    r = retract(A, target, 2_000)
    ingest(store, [r])
    assert store.purge_older_than("mirror", 10_000, now_ms=NOW) == 1
    assert store.count() == 0
    assert ingest(store, [target]).rejected == [(target.id, REJECT_RETRACTED)]
    assert tombstones(store) == {r.id: "purged", target.id: "retracted"}


def test_retraction_in_a_batch_with_a_foreign_one_and_its_target(store):
    target = mk(A, "contested", 1_000)
    own, forged = retract(A, target, 2_000), retract(B, target, 2_001)
    for order in ([forged, target, own], [own, forged, target], [target, own, forged]):
        s = Store.memory()
        ingest(s, order)
        assert stored_ids(s) == {own.id}
        assert tombstones(s) == {target.id: "retracted", forged.id: "rejected"}
        s.close()


# --- the change feed and the key index ------------------------------------------------------


def test_iter_keys_is_in_key_order(store, monkeypatch):
    monkeypatch.setattr(queries_module, "_KEYS_CHUNK", 3)  # exercise paging
    boards = ["a", "ab", "a b", "b", "工会", "Z", "a\u00e9"]
    posts = [mk(k, f"{b} {t}", t, board=b) for b in boards for k in (A, B) for t in (5, 300, 2**40, 0)]
    ingest(store, posts)
    expected = sorted(post_key(p.board, p.created_at_ms, p.id) for p in posts)
    assert list(store.iter_keys()) == expected
    chosen = {"ab", "工会", "a"}
    assert list(store.iter_keys(chosen)) == [k for k in expected if k.split(b"\x00")[0].decode() in chosen]
    assert list(store.iter_keys([])) == []


def test_changes_since_sees_another_connection(tmp_path):
    path = tmp_path / "node.db"
    with Store(path) as node, Store(path) as cli:
        early = mk(A, "early", 1_000)
        ingest(node, [early])
        mark = node.watermark()
        version = node.data_version()
        assert node.changes_since(*mark).added == []

        fresh = mk(A, "fresh", 2_000)
        ingest(cli, [fresh, retract(A, early, 3_000)], source="local")
        assert node.data_version() != version
        changes = node.changes_since(*mark)
        assert [row.id for row in changes.added] == [fresh.id, retract(A, early, 3_000).id]
        assert all(row.key == post_key(row.board, row.created_at_ms, row.id) for row in changes.added)
        assert changes.removed_keys == [early.key]
        assert changes.complete
        assert node.changes_since(changes.post_seq, changes.tomb_seq).added == []
        assert (changes.post_seq, changes.tomb_seq) == node.watermark()
        # Asking from beyond the end reads the watermark.
        far = node.changes_since(2**62, 2**62)
        assert (far.added, far.removed_keys, far.complete) == ([], [], True)
        assert (far.post_seq, far.tomb_seq) == node.watermark()


def test_changes_since_pages_with_a_limit(store):
    posts = [mk(A, f"p{i}", i) for i in range(7)]
    ingest(store, posts)
    seen, seqs = [], (0, 0)
    while True:
        changes = store.changes_since(*seqs, limit=3)
        seen += [row.id for row in changes.added]
        seqs = (changes.post_seq, changes.tomb_seq)
        if changes.complete:
            break
    assert seen == [p.id for p in posts]


def test_a_seq_is_never_reused(store):
    p1, p2 = mk(A, "one", 1), mk(A, "two", 2)
    ingest(store, [p1])
    mark = store.watermark()
    store.delete([p1.id], now_ms=NOW)
    ingest(store, [p2])  # must not take p1's seq, or a watcher at `mark` would miss it
    changes = store.changes_since(*mark)
    assert [row.id for row in changes.added] == [p2.id]
    assert changes.removed_keys == [p1.key]


# --- deletion and retention -----------------------------------------------------------------


def test_delete_writes_tombstones_and_returns_keys(store):
    p1, p2 = mk(A, "one", 1), mk(A, "two", 2)
    ingest(store, [p1, p2])
    assert store.delete([], now_ms=NOW) == []
    assert store.delete([b"\x07" * 32], now_ms=NOW) == []
    assert store.count() == 2 and tombstones(store) == {}
    assert store.delete([p1.id, p1.id], now_ms=NOW) == [p1.key]
    assert tombstones(store) == {p1.id: "deleted"}
    with pytest.raises(ValueError):
        store.delete([p2.id], "retracted", now_ms=NOW)


def test_purge_older_than(store):
    old, new, other = mk(A, "old", 1_000, board="m"), mk(A, "new", 9_000, board="m"), mk(A, "x", 1, board="n")
    ingest(store, [old, new, other])
    assert store.purge_older_than("m", 5_000, now_ms=NOW) == 1
    assert stored_ids(store) == {new.id, other.id}
    assert tombstones(store) == {old.id: "purged"}
    assert store.purge_older_than("m", 0, now_ms=NOW) == 0


# --- listing --------------------------------------------------------------------------------


def test_list_posts_newest_first_with_a_cursor(store):
    posts = [mk(A, f"p{i}", 1_000 + i // 2, board="b" if i % 3 else "c") for i in range(10)]
    ingest(store, posts)
    everything = store.list_posts(limit=100)
    expected = sorted(posts, key=lambda p: (p.created_at_ms, p.id), reverse=True)
    assert [r.id for r in everything] == [p.id for p in expected]
    pages, before = [], None
    while page := store.list_posts(limit=3, before=before):
        pages += page
        before = (page[-1].created_at_ms, page[-1].id)
    assert [r.id for r in pages] == [p.id for p in expected]
    assert [r.id for r in store.list_posts("c")] == [p.id for p in expected if p.board == "c"]
    ingest(store, [retract(A, posts[0])])
    assert all(r.kind == "post" for r in store.list_posts(kinds=["post"]))


def test_threads_replies_and_boards(store):
    t1, t2 = mk(A, "thread one", 1_000), mk(B, "thread two", 2_000)
    r1 = mk(B, "re one", 5_000, kind="reply", parent=t1.id)
    r2 = mk(C, "re one again", 3_000, kind="reply", parent=t1.id)
    ingest(store, [t1, t2, r1, r2, mk(A, "elsewhere", 9_000, board="other")])
    threads = store.threads("general")
    assert [(t.post.id, t.replies, t.last_at_ms) for t in threads] == [(t1.id, 2, 5_000), (t2.id, 0, 2_000)]
    assert [t.post.id for t in store.threads("general", limit=1, offset=1)] == [t2.id]
    assert [r.id for r in store.replies(t1.id)] == [r2.id, r1.id]
    assert [(b.board, b.posts, b.last_at_ms) for b in store.boards()] == [("general", 4, 5_000), ("other", 1, 9_000)]


# --- search ---------------------------------------------------------------------------------


@pytest.fixture(params=["indexed", "not_yet_indexed"])
def searchable(store, request, monkeypatch):
    if request.param == "not_yet_indexed":
        monkeypatch.setattr(search_module, "_INLINE_INDEX_ROWS", 0)
    posts = {
        "wages": mk(A, "We demand FAIR wages for every worker.", 1_000),
        "cn": mk(B, "我们要求提高工资，改善劳动条件。", 2_000),
        "cn2": mk(C, "工资拖欠三个月了", 3_000, board="factory"),
        "mixed": mk(A, 'Quotes "and" (parentheses) NEAR * ^ - are fine', 4_000),
    }
    ingest(store, list(posts.values()))
    ingest(store, [mk(A, "wages", 5_000, kind="profile")])  # profiles are not search results
    return store, posts


def _check_spans(hit, terms):
    for start, end in hit.spans:
        assert any(hit.snippet[start:end].casefold().find(t.casefold()) >= 0 for t in terms)


def test_search_english_and_chinese(searchable):
    store, posts = searchable
    hits = store.search("WAGES")
    assert [h.post.id for h in hits] == [posts["wages"].id]
    assert [hits[0].snippet[s:e] for s, e in hits[0].spans] == ["wages"]
    assert [h.post.id for h in store.search("提高工资")] == [posts["cn"].id]
    # Two characters: below the trigram minimum, found by the scan, newest first.
    hits = store.search("工资")
    assert [h.post.id for h in hits] == [posts["cn2"].id, posts["cn"].id]
    assert all(h.snippet[s:e] == "工资" for h in hits for s, e in h.spans)
    assert [h.post.id for h in store.search("工资", board="general")] == [posts["cn"].id]
    # Several terms must all match; long and short terms mix.
    assert [h.post.id for h in store.search("fair worker")] == [posts["wages"].id]
    assert [h.post.id for h in store.search("工资 三个月")] == [posts["cn2"].id]
    assert [h.post.id for h in store.search("工资 xyz")] == []
    assert store.search("wages", limit=0) == []
    assert store.search("   ") == []


@pytest.mark.parametrize(
    "query",
    [
        '"', '""', '"wages', "wages\"", "'", "(", ")", "()", "NEAR", "NEAR(a b)", "a NEAR b", "*", "wa*",
        "^wages", "-wages", "+", "AND", "OR", "NOT", "wages OR fair", "body:wages", "{body}: x", "%", "_",
        "\\", "%%%", "__", "a\x00b", "\x00", "工资\"", "\u200b", "\ud7ff", ":", "*:*", "near/3",
        "a" * 5_000, " ".join("t" + str(i) for i in range(100)), "\t\n",
    ],
)
def test_hostile_queries_never_raise(searchable, query):
    store, _ = searchable
    for hit in store.search(query):
        assert isinstance(hit.snippet, str)


def test_search_matches_operators_literally(searchable):
    store, posts = searchable
    # Punctuation separates terms, so the quotes are not part of the term ("demand" has "and").
    assert [h.post.id for h in store.search('"and"')] == [posts["mixed"].id, posts["wages"].id]
    assert [h.post.id for h in store.search("(parentheses)")] == [posts["mixed"].id]
    assert [h.post.id for h in store.search("NEAR * ^")] == [posts["mixed"].id]
    assert [h.post.id for h in store.search("%")] == []  # LIKE wildcards are escaped
    assert [h.post.id for h in store.search("_")] == []


def test_search_snippet_of_a_long_body(store):
    body = "lorem ipsum " * 100 + "the NEEDLE is here " + "dolor sit " * 100
    p = mk(A, body)
    ingest(store, [p])
    (hit,) = store.search("needle")
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…")
    assert len(hit.snippet) <= 202
    assert [hit.snippet[s:e] for s, e in hit.spans] == ["NEEDLE"]


def test_search_index_follows_deletions(store):
    gone, kept = mk(A, "retracted manifesto text", 1), mk(A, "kept manifesto text", 2)
    ingest(store, [gone, kept])
    ingest(store, [retract(A, gone)])
    store.delete([kept.id], now_ms=NOW)
    assert store.search("manifesto") == []
    ingest(store, [mk(B, "a new manifesto", 3)])
    assert len(store.search("manifesto")) == 1
    store._conn.execute("INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', 1)")


def test_large_batches_are_indexed_later_and_found_meanwhile(store):
    posts = [mk(A, f"bulk post number {i} about rent", i) for i in range(150)]
    ingest(store, posts)
    assert store.update_search_index(0) > 64  # left for later: the batch was large
    assert len(store.search("rent", limit=1_000)) == 150  # found by scanning
    ingest(store, [retract(A, posts[0])])  # deleting a row not yet indexed
    store.delete([posts[1].id], now_ms=NOW)
    assert store.update_search_index(100) > 0
    assert store.update_search_index(100) == 0
    assert len(store.search("rent", limit=1_000)) == 148
    expected = {p.id for p in posts[2:] if "7" in str(p.created_at_ms)}
    assert {h.post.id for h in store.search("number 7", limit=1_000)} == expected
    store.delete([posts[2].id], now_ms=NOW)  # deleting an indexed row
    assert len(store.search("rent", limit=1_000)) == 147
    ingest(store, [mk(B, "a trickle of rent news", 999)])  # small batches are indexed at once
    assert store.update_search_index(0) == 0
    store._conn.execute("INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', 1)")


# --- opening, migrations --------------------------------------------------------------------


def test_new_file_is_migrated_private_and_in_wal_mode(tmp_path):
    path = tmp_path / "node.db"
    with Store(path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert {"posts", "tombstones", "pending_retractions", "peers", "identities", "meta"} <= set(s.db.table_names())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_empty_file_is_migrated(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with Store(path) as s:
        assert s.count() == 0
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_keeps_everything(tmp_path):
    path = tmp_path / "node.db"
    p, gone = mk(A, "persisted"), mk(A, "gone", 5)
    waiting = retract(A, mk(A, "not yet", 7))
    with Store(path) as s:
        ingest(s, [p, gone, waiting])
        s.delete([gone.id], now_ms=NOW)
        s.add_peer("http://peer.example:8080", "cli", NOW)
        s.add_identity("organizer", A.public_key, NOW)
        s.set_meta("node_id", "abc")
    with Store(path) as s:
        assert stored_ids(s) == {p.id, waiting.id}
        assert s.get(p.id).raw == p.raw
        assert s.tombstoned([gone.id]) == {gone.id}
        assert len(pending(s)) == 1
        assert [peer.url for peer in s.list_peers()] == ["http://peer.example:8080"]
        assert [i.name for i in s.list_identities()] == ["organizer"]
        assert s.get_meta("node_id") == "abc"
        assert [h.post.id for h in s.search("persisted")] == [p.id]


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "node.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        Store(path)


@pytest.mark.parametrize("content", ["other_app", "garbage"])
def test_a_file_that_is_not_a_store_is_refused(tmp_path, content):
    path = tmp_path / "other.db"
    if content == "other_app":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE photos (name TEXT)")
        conn.close()
    else:
        path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NotAStoreError):
        Store(path)


def test_migrations_run_in_order_once_and_roll_back_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "node.db"
    Store(path).close()
    calls = []

    def add_column(conn):
        calls.append("v2")
        conn.execute("ALTER TABLE meta ADD COLUMN note TEXT")

    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema_module, "MIGRATIONS", (*schema_module.MIGRATIONS, add_column, broken))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 2)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # all rolled back
    assert "note" not in [r[1] for r in conn.execute("PRAGMA table_info(meta)")]
    conn.close()

    monkeypatch.setattr(schema_module, "MIGRATIONS", (*schema_module.MIGRATIONS[:-1], add_column))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    calls.clear()
    Store(path).close()
    Store(path).close()
    assert calls == ["v2"]


def test_closing_while_another_process_writes_does_not_fail(tmp_path):
    path = tmp_path / "node.db"
    s = Store(path, busy_timeout_ms=20)
    ingest(s, [mk(A)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        s.close()
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_locked_file_raises_store_busy(tmp_path):
    path = tmp_path / "node.db"
    with Store(path, busy_timeout_ms=20) as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusyError):
                ingest(s, [mk(A)])
            assert s.count() == 0  # reads still work while another process writes
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert len(ingest(s, [mk(A)]).added) == 1


def test_a_path_that_cannot_be_opened_raises_store_error(tmp_path):
    with pytest.raises(StoreError):
        Store(tmp_path / "missing-folder" / "node.db")
    with pytest.raises(StoreError):
        Store(tmp_path)  # a directory


def test_one_store_can_be_shared_between_threads(tmp_path):
    with Store(tmp_path / "node.db") as s:
        batches = [[mk(k, f"thread {i} {j}", i * 100 + j) for j in range(20)] for i, k in enumerate((A, B, C, A))]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda batch: ingest(s, batch), batches))
            counts = list(pool.map(lambda _: s.count(), range(20)))
        assert sum(len(r.added) for r in results) == 80 == s.count()
        assert all(0 <= c <= 80 for c in counts)


# --- peers, identities, meta ----------------------------------------------------------------


def test_peers(store):
    url = "http://198.51.100.7:8080"
    assert store.add_peer(url, "pex", 1) is True
    assert store.add_peer(url, "pex", 2) is False
    store.add_peer(url, "cli", 3)  # upgrades the source
    store.add_peer(url, "pex", 4)  # does not downgrade it
    assert store.record_peer_failure(url, 10, "connection refused", 60) is True
    assert store.record_peer_failure(url, 70, "x" * 10_000, 200) is True
    (peer,) = store.list_peers()
    assert (peer.source, peer.added_at_ms, peer.failures, peer.next_try_at_ms) == ("cli", 1, 2, 200)
    assert len(peer.last_error) == 500 and peer.last_error_at_ms == 70
    assert store.record_peer_success(url, 300, received=5, rejected=1) is True
    store.record_peer_success(url, 400, received=2, rejected=0)
    (peer,) = store.list_peers()
    assert (peer.failures, peer.last_error, peer.last_ok_at_ms) == (0, None, 400)
    assert (peer.posts_received, peer.posts_rejected) == (7, 1)
    assert store.record_peer_success("http://unknown", 1, 0, 0) is False
    assert store.remove_peer(url) is True and store.remove_peer(url) is False
    with pytest.raises(ValueError):
        store.add_peer(url, "gossip", 1)


def test_identities_and_meta(store):
    store.add_identity("campaign", A.public_key, 5)
    store.add_identity("another", B.public_key, 6)
    with pytest.raises(IdentityExistsError):
        store.add_identity("campaign", C.public_key, 7)
    with pytest.raises(IdentityExistsError):
        store.add_identity("third", A.public_key, 7)
    assert [(i.name, i.public_key) for i in store.list_identities()] == [
        ("another", B.public_key),
        ("campaign", A.public_key),
    ]
    assert store.get_meta("missing") is None and store.get_meta("missing", 3) == 3
    store.set_meta("k", "v")
    store.set_meta("k", b"\x00\x01")
    assert store.get_meta("k") == b"\x00\x01"


# --- convergence: the final state does not depend on how posts arrive ------------------------


def _pool():
    p1 = mk(A, "p1 wages", 1_000)
    p2 = mk(B, "p2 工资", 1_001)
    q1 = mk(B, "q1 reply", 1_002, kind="reply", parent=p1.id)
    p3 = mk(A, "p3 other board", 1_003, board="other")
    ra1, ra1b = retract(A, p1, 2_000), retract(A, p1, 2_001)
    rb1, rb1b = retract(B, p1, 2_002), retract(B, p1, 2_003)  # foreign
    rb2 = retract(B, p2, 2_004)
    raq = retract(A, q1, 2_005)  # foreign
    ra3 = retract(A, p3, 2_006)
    rr = mk(A, t=2_100, kind="retract", parent=ra1.id)  # retraction of a retraction
    rrb = mk(B, t=2_101, kind="retract", parent=ra1.id)  # foreign
    rrb2 = mk(B, t=2_102, kind="retract", parent=rb1.id)  # B retracts its own foreign retraction
    rra3 = mk(A, t=2_103, kind="retract", parent=rb1.id)  # foreign retraction of a foreign one
    rx = mk(A, t=2_104, kind="retract", parent=b"\xee" * 32)  # target never seen
    prof = mk(A, "Organizer A", 900, kind="profile")
    return [p1, p2, q1, p3, ra1, ra1b, rb1, rb1b, rb2, raq, ra3, rr, rrb, rrb2, rra3, rx, prof]


POOL = _pool()


def _state(store):
    return (
        stored_ids(store),
        {(k, v) for k, v in tombstones(store).items()},
        pending(store),
    )


def _ingest_tracking(store, batches):
    """Ingest the batches, keeping a key index up to date from the results alone."""
    keys: set[bytes] = set()
    for batch in batches:
        result = ingest(store, batch)
        keys |= {p.key for p in result.added}
        keys -= set(result.removed_keys)
        assert result.duplicates + len(result.added) + len(result.rejected) == len(batch)
    return keys


def _check_invariants(store, keys):
    assert keys == set(store.iter_keys())
    changes = store.changes_since(0, 0)
    assert {row.key for row in changes.added} - set(changes.removed_keys) == keys
    rows = {row.id: row for row in store.list_posts(limit=1_000)}
    assert not set(rows) & set(tombstones(store))
    tomb_authors = dict(store._conn.execute("SELECT id, author FROM tombstones"))
    for row in rows.values():
        if row.kind != "retract":
            continue
        target = rows.get(row.parent)
        if target is not None:
            # A stored retraction never sits next to a live target it could retract.
            assert target.kind == "retract" and target.author == row.author
        elif row.parent in tomb_authors:
            assert tomb_authors[row.parent] == row.author


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_final_state_does_not_depend_on_arrival_order(data):
    indices = st.integers(min_value=0, max_value=len(POOL) - 1)
    batches = data.draw(st.lists(st.lists(indices, max_size=8), max_size=6), label="batches")
    flat = [i for batch in batches for i in batch]
    shuffled = data.draw(st.permutations(flat), label="shuffled")
    cuts = sorted(data.draw(st.sets(st.integers(0, len(flat)), max_size=4), label="cuts"))
    rebatched = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(flat)], strict=True)]

    states = []
    for plan in (batches, [flat], rebatched, [[i] for i in reversed(flat)]):
        with Store.memory() as s:
            keys = _ingest_tracking(s, [[POOL[i] for i in batch] for batch in plan])
            _check_invariants(s, keys)
            # Whatever was seen, offering everything again changes nothing.
            assert ingest(s, [POOL[i] for i in flat]).added == []
            states.append(_state(s))
    assert all(state == states[0] for state in states[1:])


# --- pages for the web UI -------------------------------------------------------------------


def test_reply_pages_walk_both_ways_and_hold_one_page(store):
    root = mk(A, "root", 1_000)
    # Same times on purpose: the id breaks ties, as in the cursor.
    replies = [mk([A, B, C][i % 3], f"re {i}", 2_000 + i // 3, kind="reply", parent=root.id) for i in range(17)]
    ingest(store, [root, *replies, mk(A, "other thread reply", 2_001, kind="reply", parent=replies[0].id)])
    everything = [r.id for r in store.replies(root.id)]
    assert len(everything) == 17 and store.reply_count(root.id) == 17
    forward, after = [], None
    while page := store.reply_page(root.id, 4, after=after):
        assert len(page) <= 4
        forward += [r.id for r in page]
        after = (page[-1].created_at_ms, page[-1].id)
    assert forward == everything
    backward = []
    page = store.newest_replies(root.id, 4)
    while page:
        backward = [r.id for r in page] + backward
        page = store.reply_page(root.id, 4, before=(page[0].created_at_ms, page[0].id))
    assert backward == everything
    assert store.reply_page(root.id, 0) == []
    with pytest.raises(ValueError):
        store.reply_page(root.id, 4, after=(1, b"x"), before=(1, b"x"))


def test_board_pages_by_activity_and_by_name(store):
    names = ["b", "a", "c", "ab", "工资", "d%_x"]
    ingest(store, [mk(A, f"p {i}", 1_000 + (i % 3), board=n) for i, n in enumerate(names)]
           + [mk(B, "more", 1_000, board="a")])
    assert store.board_count() == len(names)
    by_activity = sorted(store.boards(), key=lambda b: (-b.last_at_ms, b.board.encode()))
    walked, after = [], None
    while page := store.board_page(2, after=after):
        walked += page
        after = (page[-1].last_at_ms, page[-1].board)
    assert walked == by_activity
    walked, after = [], None
    while page := store.board_page(2, by_name=True, after=after):
        walked += page
        after = page[-1].board
    assert walked == store.boards()  # both in UTF-8 byte order
    assert [b.board for b in store.board_page(10, by_name=True, contains="A")] == ["a", "ab"]
    assert [b.board for b in store.board_page(10, contains="%_")] == ["d%_x"]
    assert store.boards_with_posts(["a", "zz", "工资"]) == {"a", "工资"}
    with pytest.raises(ValueError):
        store.board_page(2, by_name=True, after=(1, "a"))


def test_search_offset_pages_the_same_order(store):
    ingest(store, [mk(A, f"wage theft {i}", 1_000 + i) for i in range(9)])
    store.update_search_index()
    everything = [h.post.id for h in store.search("theft", limit=100)]
    paged = [h.post.id for off in range(0, 9, 4) for h in store.search("theft", limit=4, offset=off)]
    assert paged == everything and len(everything) == 9
    with pytest.raises(ValueError):
        store.search("theft", offset=-1)


def _old_store(path, version, monkeypatch):
    """A store file as the release of schema ``version`` wrote it (its migrations only)."""
    with monkeypatch.context() as m:
        m.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:version])
        m.setattr(schema_module, "SCHEMA_VERSION", version)
        s = Store(path)
        s._conn.execute("INSERT INTO posts (id, kind, board, author, created_at_ms, parent, body, raw,"
                        " received_at_ms, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (ROOT_OLD.id, "post", ROOT_OLD.board, ROOT_OLD.author, ROOT_OLD.created_at_ms, None,
                         ROOT_OLD.body, ROOT_OLD.raw, 1, "local"))
        s._conn.execute("INSERT INTO posts (id, kind, board, author, created_at_ms, parent, body, raw,"
                        " received_at_ms, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (REPLY_OLD.id, "reply", REPLY_OLD.board, REPLY_OLD.author, REPLY_OLD.created_at_ms,
                         ROOT_OLD.id, REPLY_OLD.body, REPLY_OLD.raw, 1, "local"))
        s.close()


ROOT_OLD = mk(A, "root", 1_000)
REPLY_OLD = mk(B, "re", 2_000, kind="reply", parent=ROOT_OLD.id)


def test_a_version_1_store_gets_the_reply_order_index_and_keeps_its_posts(tmp_path, monkeypatch):
    path = tmp_path / "node.db"
    _old_store(path, 1, monkeypatch)
    s = Store(path)
    try:
        names = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "posts_parent_time" in names and "posts_parent" not in names
        assert [r.body for r in s.reply_page(ROOT_OLD.id, 10)] == ["re"]
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        s.close()


def test_a_version_2_store_gets_the_moderation_tables_and_keeps_its_posts(tmp_path, monkeypatch):
    path = tmp_path / "node.db"
    _old_store(path, 2, monkeypatch)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO tombstones (id, board, created_at_ms, author, reason, at_ms)"
                 " VALUES (?, 'general', 5, ?, 'purged', 6)", (b"\x07" * 32, A.public_key))
    conn.close()
    with Store(path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.moderators() == [] and s.refusal_counts() == {}
        assert s.count() == 2 and [r.body for r in s.reply_page(ROOT_OLD.id, 10)] == ["re"]
        # Tombstones written before the upgrade are not carried.
        assert s._conn.execute("SELECT carried FROM tombstones").fetchall() == [(0,)]
    assert schema_module.expected_objects(3)["table"] >= {"moderators", "statements", "refusals", "quota_usage"}


def test_a_reply_page_reads_the_index_in_order(store):
    root = mk(A, "root", 1_000)
    ingest(store, [root] + [mk(B, f"r{i}", 2_000 + i, kind="reply", parent=root.id) for i in range(50)])
    plan = " ".join(str(r[-1]) for r in store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM posts WHERE parent = ? AND kind = ? "
        "ORDER BY created_at_ms, id LIMIT 10", (root.id, 1)))
    assert "posts_parent_time" in plan and "TEMP B-TREE" not in plan, plan


# --- the store keeps the books; protocol.retraction decides ---------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_final_state_is_the_settlement_of_what_was_received(data):
    pool = POOL + [
        mk(A, t=2_200, kind="retract", parent=POOL[0].id, board="other"),  # own post, wrong board
        mk(A, t=2_201, kind="retract", parent=POOL[3].id, board="general"),  # p3 is on "other"
    ]
    picked = data.draw(st.lists(st.sampled_from(pool), max_size=20), label="posts")
    cuts = sorted(data.draw(st.sets(st.integers(0, len(picked)), max_size=4), label="cuts"))
    with Store.memory() as s:
        for a, b in zip([0, *cuts], [*cuts, len(picked)], strict=True):
            ingest(s, picked[a:b])
        expected = settle(picked)
        assert stored_ids(s) == expected.stored
        assert tombstones(s) == dict(expected.tombstones)
        assert {(t, r) for t, r, _ in pending(s)} == expected.pending


def test_a_retraction_on_another_board_is_refused_whatever_the_targets_state(store):
    target = mk(A, "here", 1_000, board="general")
    stray = mk(A, t=2_000, board="other", kind="retract", parent=target.id)
    ingest(store, [target])
    assert ingest(store, [stray]).rejected == [(stray.id, "retract_wrong_board")]
    # Against a tombstone too: a tombstone keeps the board of the post it replaces.
    gone = mk(A, "deleted", 1_001, board="general")
    ingest(store, [gone])
    store.delete([gone.id], now_ms=NOW)
    stray2 = mk(A, t=2_001, board="other", kind="retract", parent=gone.id)
    assert ingest(store, [stray2]).rejected == [(stray2.id, "retract_wrong_board")]
    assert tombstones(store) == {stray.id: "rejected", gone.id: "deleted", stray2.id: "rejected"}
    assert stored_ids(store) == {target.id}


def test_a_purged_waiting_retraction_is_judged_by_its_tombstone(store):
    target = mk(A, "kept", 1_000, board="general")
    stray = mk(A, t=2_000, board="mirror", kind="retract", parent=target.id)  # another board
    ingest(store, [stray])
    assert store.purge_older_than("mirror", 10_000, now_ms=NOW) == 1
    # Its tombstone says it was on another board: it cannot retract the target.
    assert ingest(store, [target]).added == [target]
    assert pending(store) == set()


def test_a_migration_may_use_sqlite_utils_and_still_roll_back_whole(tmp_path, monkeypatch):
    # The installed sqlite-utils keeps add_column, create_index and transform inside the
    # transaction the store opened; a version that committed halfway would leave the column.
    path = tmp_path / "node.db"
    Store(path).close()

    def with_sqlite_utils(db):
        db["peers"].add_column("note", str)
        db["peers"].create_index(["source"], index_name="peers_source")
        db["meta"].transform(types={"value": str})
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema_module, "MIGRATIONS", (*schema_module.MIGRATIONS, with_sqlite_utils))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert "note" not in [r[1] for r in conn.execute("PRAGMA table_info(peers)")]
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'peers_source'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'meta_new%'").fetchone()[0] == 0
    finally:
        conn.close()


def test_expected_objects_are_what_a_new_store_holds(tmp_path):
    with Store(tmp_path / "node.db") as s:
        found = {
            kind: {name for (name,) in s._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,))}
            for kind in ("table", "index", "trigger")
        }
        # The same, read through sqlite-utils.
        assert {t.name for t in s.db.tables} - {"sqlite_sequence"} == found["table"]
        assert {t.name for t in s.db.triggers} == found["trigger"]
        assert {i.name for t in s.db.tables for i in t.indexes} >= found["index"]
    assert schema_module.expected_objects() == found
    assert "posts_parent" in schema_module.expected_objects(1)["index"]
    assert "posts_parent_time" in found["index"]
    with pytest.raises(ValueError):
        schema_module.expected_objects(SCHEMA_VERSION + 1)
