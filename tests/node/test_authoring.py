"""node/authoring.py: the one path by which the command line and the web UI write.

The composition is pure (no event loop, no store); the store adapter runs on an in-memory
store; the core adapter, the web UI's, once over a real NodeCore.  That both front ends take
this path is checked on the import graph (test_import_graph.py).
"""

from __future__ import annotations

import pytest

from dazibao.node.authoring import (
    PROFILE_SCAN_ROWS,
    CoreAuthor,
    Draft,
    NotReplyableError,
    NotRetractableError,
    NotStoredError,
    StoreAuthor,
    check_reply_target,
    compose_post,
    compose_profile,
    compose_retraction,
    has_profile_on,
)
from dazibao.node.config import DataDir, load_config
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.protocol import identity, posts
from dazibao.protocol.errors import BoardError, BodyError

T0 = 1_709_900_000_000


def key(n: int) -> identity.SigningKey:
    return identity.SigningKey(bytes([n]) * 32)


ME, OTHER = key(1), key(2)


# --- composition (pure) ---------------------------------------------------------------------------


def test_a_first_post_on_a_board_is_preceded_by_the_profile():
    draft = compose_post(ME, "小明", board="labor", body="we meet at noon", now_ms=T0, has_profile=False)
    profile, post = draft.batch
    assert profile is draft.profile and post is draft.post
    assert (profile.kind, profile.board, profile.body, profile.author) == ("profile", "labor", "小明", ME.public_key)
    assert (post.kind, post.board, post.body, post.author, post.parent) == ("post", "labor", "we meet at noon",
                                                                            ME.public_key, None)
    assert profile.created_at_ms == post.created_at_ms == T0
    # Both are signed posts any node accepts.
    for p in draft.batch:
        assert posts.check_post(p.raw, T0 / 1000) == p


def test_a_pseudonym_with_a_profile_on_the_board_posts_alone():
    draft = compose_post(ME, "小明", board="labor", body="again", now_ms=T0, has_profile=True)
    assert draft.profile is None and draft.batch == [draft.post]


def test_a_reply_names_its_parent():
    parent = compose_post(OTHER, "x", board="labor", body="root", now_ms=T0, has_profile=True).post
    check_reply_target(parent)
    reply = compose_post(ME, "小明", board="labor", body="yes", now_ms=T0 + 1, parent=parent.id,
                         has_profile=True).post
    assert reply.kind == "reply" and reply.parent == parent.id


def test_only_posts_and_replies_can_be_replied_to():
    profile = compose_profile(ME, "小明", board="labor", now_ms=T0)
    with pytest.raises(NotReplyableError):
        check_reply_target(profile)


def test_what_no_node_would_accept_is_refused_before_signing():
    with pytest.raises(BoardError):
        compose_post(ME, "小明", board="bad\u202eboard", body="x", now_ms=T0, has_profile=False)
    with pytest.raises(BodyError):
        compose_post(ME, "小明", board="labor", body="ring\u0007", now_ms=T0, has_profile=True)
    with pytest.raises(BodyError):
        compose_profile(ME, "x" * 65, board="labor", now_ms=T0)


def test_a_retraction_is_never_dated_before_its_post():
    post = compose_post(ME, "小明", board="labor", body="x", now_ms=T0 + 5_000, has_profile=True).post
    early = compose_retraction(ME, post, now_ms=T0)  # this machine's clock is behind the post's
    later = compose_retraction(ME, post, now_ms=T0 + 9_000)
    assert early.created_at_ms == T0 + 5_000 and later.created_at_ms == T0 + 9_000
    assert (early.kind, early.parent, early.board, early.body) == ("retract", post.id, "labor", "")
    posts.check_retraction(early, post)


def test_only_the_author_retracts_and_only_posts_replies_and_profiles():
    post = compose_post(ME, "小明", board="labor", body="x", now_ms=T0, has_profile=True).post
    with pytest.raises(NotRetractableError):
        compose_retraction(OTHER, post, now_ms=T0)
    retraction = compose_retraction(ME, post, now_ms=T0)
    with pytest.raises(NotRetractableError):
        compose_retraction(ME, retraction, now_ms=T0)
    compose_retraction(ME, compose_profile(ME, "小明", board="labor", now_ms=T0), now_ms=T0)


# --- the store adapter (the command line's) ---------------------------------------------------


@pytest.fixture
def store():
    s = Store.memory()
    try:
        yield s
    finally:
        s.close()


def kinds(store: Store, author: bytes) -> list[tuple[str, str]]:
    rows = store.list_posts(None, 100)
    return sorted((r.board, r.kind) for r in rows if r.author == author)


def test_the_store_adapter_publishes_the_name_once_per_board(store):
    author = StoreAuthor(store)
    first = author.post(ME, "小明", board="labor", body="one", now_ms=T0)
    second = author.post(ME, "小明", board="labor", body="two", now_ms=T0 + 1)
    elsewhere = author.post(ME, "小明", board="news", body="three", now_ms=T0 + 2)
    assert first.profile is not None and second.profile is None and elsewhere.profile is not None
    assert kinds(store, ME.public_key) == [("labor", "post"), ("labor", "post"), ("labor", "profile"),
                                           ("news", "post"), ("news", "profile")]
    # Another author's profile on the board is not this one's.
    assert author.post(OTHER, "other", board="labor", body="hi", now_ms=T0 + 3).profile is not None


def test_the_profile_scan_is_bounded(store):
    StoreAuthor(store).post(ME, "小明", board="labor", body="one", now_ms=T0)
    crowd = [compose_profile(key(10 + i), f"n{i}", board="labor", now_ms=T0 + 10 + i) for i in range(30)]
    store.ingest(crowd, source="local", now_ms=T0 + 100)
    assert has_profile_on(store, ME.public_key, "labor")
    assert has_profile_on(store, ME.public_key, "labor", scan=31)
    # Past the bound the name is published again, which is harmless: the scan stops.
    assert not has_profile_on(store, ME.public_key, "labor", scan=30)
    assert not has_profile_on(store, ME.public_key, "news")
    assert PROFILE_SCAN_ROWS >= 1_000


def test_the_store_adapter_retracts_and_reports_what_is_not_stored(store):
    author = StoreAuthor(store)
    draft = author.post(ME, "小明", board="labor", body="gone soon", now_ms=T0)
    author.retract(ME, store.get(draft.post.id), now_ms=T0 + 1)
    assert store.get(draft.post.id) is None
    # The very same post (same key, text and time) is now tombstoned: refused, with the code.
    with pytest.raises(NotStoredError) as info:
        author.post(ME, "小明", board="labor", body="gone soon", now_ms=T0)
    assert info.value.code == "tombstoned" and str(info.value) == "not stored: tombstoned"


def test_a_draft_batch_is_profile_first():
    draft = Draft(compose_post(ME, "a", board="b", body="c", now_ms=T0, has_profile=True).post,
                  compose_profile(ME, "a", board="b", now_ms=T0))
    assert [p.kind for p in draft.batch] == ["profile", "post"]


# --- the core adapter (the web UI's) ----------------------------------------------------------


async def test_the_core_adapter_applies_the_same_rule_and_tells_the_node(tmp_path):
    data = DataDir(tmp_path / "node")
    data.create()
    core = NodeCore(data, load_config(data, environ={}), clock=lambda: T0 / 1000)
    await core.open()
    told: list[list[posts.Post]] = []
    core.on_new_posts.append(lambda new, source: told.append(list(new)))
    try:
        # Without a memory of profiles, the store is asked.
        draft = await CoreAuthor(core).post(ME, "小明", board="labor", body="one")
        again = await CoreAuthor(core).post(ME, "小明", board="labor", body="two")
        assert draft.profile is not None and again.profile is None
        assert [[p.kind for p in batch] for batch in told] == [["profile", "post"], ["post"]]
        # With one (the web UI's author book), it is believed.
        believed = await CoreAuthor(core, has_profile=lambda author, board: False).post(
            ME, "小明", board="labor", body="three")
        assert believed.profile is not None
        retraction = await CoreAuthor(core).retract(ME, draft.post)
        assert retraction.parent == draft.post.id
        assert await core.db.call(Store.get, draft.post.id) is None
    finally:
        await core.close()
