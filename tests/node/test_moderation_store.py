"""The store's moderation room: moderators, statements, trust views, refusals, quotas and the
carried keys of the reconciliation set (node/store/moderation.py), on real SQLite files."""

from __future__ import annotations

import sqlite3

import pytest

from dazibao.node.store import Store
from dazibao.node.store.moderation import DAY_MS
from dazibao.protocol import limits, moderation, posts
from dazibao.protocol.errors import BLOCKED, POW_REQUIRED, QUOTA_BYTES, QUOTA_POSTS
from tests.factories import T0_MS, key, make_post, make_posts, retraction

MOD = key(100)  # a moderator
MOD2 = key(101)
ME = key(102)  # a local pseudonym
SPAMMER = key(103)
FRIEND = key(104)
NOW = T0_MS + 10 * DAY_MS
BOARD = "labor"


def statement(action, subject, target, *, by=MOD, board=BOARD, at=None, expires=None, reason="spam"):
    return moderation.create_statement(by, board=board, action=action, subject=subject, target=target,
                                       reason=reason, expires_at_ms=expires,
                                       created_at_ms=NOW - 1000 if at is None else at)


def ingest(store, items, now=NOW, source="http://peer.example"):
    return store.ingest(list(items), source=source, now_ms=now)


def ids(store, board=BOARD):
    return {r.id for r in store.list_posts(board, 100_000)}


def codes(result):
    return dict(result.rejected)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "node.db") as s:
        yield s


# --- moderators -----------------------------------------------------------------------------------


def test_moderators_are_added_listed_and_removed(store):
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    store.add_moderator(BOARD, MOD.public_key, source="ui", now_ms=NOW + 1)  # again: nothing changes
    store.add_moderator("other", MOD2.public_key, source="config", now_ms=NOW)
    rows = store.moderators()
    assert [(r.board, r.key, r.source, r.added_at_ms) for r in rows] == [
        (BOARD, MOD.public_key, "cli", NOW), ("other", MOD2.public_key, "config", NOW)]
    assert [r.key for r in store.moderators(BOARD)] == [MOD.public_key]
    assert store.remove_moderator(BOARD, MOD.public_key, now_ms=NOW) is True
    assert store.remove_moderator(BOARD, MOD.public_key, now_ms=NOW) is False
    assert store.moderators(BOARD) == []


@pytest.mark.parametrize("board, key_, source", [
    ("", MOD.public_key, "cli"), (BOARD, b"short", "cli"), (BOARD, MOD.public_key, "pex"), (" x", MOD.public_key, "ui"),
])
def test_bad_moderator_arguments_are_value_errors_and_write_nothing(store, board, key_, source):
    with pytest.raises(ValueError):
        store.add_moderator(board, key_, source=source, now_ms=NOW)
    assert store.moderators() == []


def test_at_most_max_moderators_per_board(store):
    keys = [key(1000 + i).public_key for i in range(limits.MAX_MODERATORS_PER_BOARD)]
    assert store.add_moderators(BOARD, keys, source="cli", now_ms=NOW) == keys
    with pytest.raises(ValueError, match="at most"):
        store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    # All or none.
    store.remove_moderator(BOARD, keys[0], now_ms=NOW)
    with pytest.raises(ValueError):
        store.add_moderators(BOARD, [MOD.public_key, MOD2.public_key], source="charter", now_ms=NOW)
    assert len(store.moderators(BOARD)) == limits.MAX_MODERATORS_PER_BOARD - 1
    store.add_moderator("other", MOD.public_key, source="cli", now_ms=NOW)  # another board: its own count


def test_config_moderators_follow_the_setting(store):
    store.add_moderator(BOARD, MOD2.public_key, source="cli", now_ms=NOW)
    store.sync_moderators({BOARD: [MOD.public_key]}, source="config", now_ms=NOW)
    assert {(r.key, r.source) for r in store.moderators(BOARD)} == {(MOD.public_key, "config"),
                                                                     (MOD2.public_key, "cli")}
    store.sync_moderators({}, source="config", now_ms=NOW)
    assert [(r.key, r.source) for r in store.moderators(BOARD)] == [(MOD2.public_key, "cli")]


# --- blocks -----------------------------------------------------------------------------------------


def test_a_followed_block_refuses_and_removes_and_undo_forgets(store):
    spam = make_posts(BOARD, 3, signer=SPAMMER, text="spam")
    good = make_post(FRIEND, board=BOARD, body="good")
    ingest(store, [*spam, good])
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    block = statement("block", "author", SPAMMER.public_key)
    result = ingest(store, [block])
    assert sorted(result.removed_keys) == sorted(p.key for p in spam)
    assert ids(store) == {good.id, block.id}
    assert store.refusal_counts() == {BLOCKED: 3}
    # A new post of the blocked author is refused, and again by its id.
    fresh = make_post(SPAMMER, board=BOARD, body="more spam", created_at_ms=NOW - 10)
    assert codes(ingest(store, [fresh])) == {fresh.id: BLOCKED}
    assert codes(ingest(store, [fresh])) == {fresh.id: BLOCKED}
    assert store.prescreen([(fresh.id, BOARD, SPAMMER.public_key, fresh.created_at_ms)], now_ms=NOW) == {
        fresh.id: BLOCKED}
    # On another board the author is not blocked.
    elsewhere = make_post(SPAMMER, board="other", body="elsewhere")
    assert ingest(store, [elsewhere]).added == [elsewhere]
    # Undo: the moderator retracts the statement; the refusals it caused are forgotten.
    ingest(store, [retraction(block, signer=MOD)])
    assert store.refusal_counts() == {}
    assert [p.id for p in ingest(store, spam).added] == [p.id for p in spam]


def test_a_block_by_a_moderator_not_followed_does_nothing(store):
    spam = make_post(SPAMMER, board=BOARD, body="spam")
    ingest(store, [spam, statement("block", "post", spam.id)])
    assert spam.id in ids(store) and store.refusal_counts() == {}
    assert [s.action for s in store.statements_about(BOARD, spam.id)] == ["block"]
    # Following the moderator later applies its block at once.
    store.add_moderator(BOARD, MOD.public_key, source="ui", now_ms=NOW)
    assert spam.id not in ids(store) and store.refusal_counts() == {BLOCKED: 1}
    # And dropping it lets the post come back.
    store.remove_moderator(BOARD, MOD.public_key, now_ms=NOW)
    assert store.refusal_counts() == {}
    assert ingest(store, [spam]).added == [spam]


def test_the_block_arriving_in_the_same_batch_as_its_posts(store):
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    spam = make_posts(BOARD, 2, signer=SPAMMER)
    for order in ([statement("block", "author", SPAMMER.public_key), *spam],
                  [*spam, statement("block", "author", SPAMMER.public_key)]):
        with Store.memory() as s:
            s.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
            result = ingest(s, order)
            assert [p.kind for p in result.added] == ["moderation"]
            assert ids(s) == {order[0].id if order[0].kind == "moderation" else order[-1].id}
            assert s.refusal_counts() == {BLOCKED: 2}


def test_newest_statement_wins_and_block_beats_vouch(store):
    store.add_moderators(BOARD, [MOD.public_key, MOD2.public_key], source="cli", now_ms=NOW)
    post = make_post(SPAMMER, board=BOARD, body="x")
    ingest(store, [post, statement("block", "post", post.id, at=NOW - 5000)])
    assert post.id not in ids(store)
    # A newer hide by the same moderator replaces its block: the post may come back.
    ingest(store, [statement("hide", "post", post.id, at=NOW - 4000)])
    assert store.refusal_counts() == {}
    assert ingest(store, [post]).added == [post]
    view = store.trust_view(BOARD, now_ms=NOW)
    assert [s.action for s in view.hides(post.id, SPAMMER.public_key)] == ["hide"]
    # Vouch by one, block by another: blocked.
    ingest(store, [statement("vouch", "author", SPAMMER.public_key, by=MOD),
                   statement("block", "author", SPAMMER.public_key, by=MOD2)])
    assert post.id not in ids(store)
    assert not store.trust_view(BOARD, now_ms=NOW).vouched(SPAMMER.public_key)
    found = store.author_moderation(SPAMMER.public_key, now_ms=NOW)
    assert sorted((b, s.action, s.moderator) for b, s in found) == [
        (BOARD, "block", MOD2.public_key), (BOARD, "vouch", MOD.public_key)]


def test_an_expired_block_ends_and_its_refusals_are_forgotten(store):
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    post = make_post(SPAMMER, board=BOARD, body="x")
    ingest(store, [statement("block", "post", post.id, expires=NOW + 60_000), post])
    assert store.refusal_counts() == {BLOCKED: 1}
    assert store.expire_statements(now_ms=NOW + 1) == []
    assert store.refusal_counts() == {BLOCKED: 1}
    store.expire_statements(now_ms=NOW + 60_000)
    assert store.refusal_counts() == {}
    assert ingest(store, [post], now=NOW + 60_001).added == [post]


def test_local_pseudonyms_are_followed_everywhere_and_never_quotad(store):
    store.configure_policy(stranger_posts_per_day=2)
    store.sync_identities([("me", ME.public_key)], now_ms=NOW)
    mine = make_posts("anywhere", 5, signer=ME)
    assert len(ingest(store, mine, source="local").added) == 5
    spam = make_post(SPAMMER, board="anywhere", body="spam")
    ingest(store, [spam, statement("block", "post", spam.id, by=ME, board="anywhere")])
    assert spam.id not in ids(store, "anywhere")
    # A pseudonym removed from the key folder is no longer followed.
    assert store.sync_identities([], now_ms=NOW) is True
    assert store.refusal_counts() == {}
    assert store.sync_identities([], now_ms=NOW) is False


def test_a_followed_moderator_blocked_by_another_loses_its_statements(store):
    store.add_moderators(BOARD, [MOD.public_key, MOD2.public_key], source="cli", now_ms=NOW)
    victim = make_post(FRIEND, board=BOARD, body="fine")
    ingest(store, [victim, statement("block", "post", victim.id, by=MOD2)])
    assert victim.id not in ids(store)
    # MOD blocks MOD2 on the board: MOD2's statements are removed, so its block ends too.
    ingest(store, [statement("block", "author", MOD2.public_key, by=MOD)])
    assert store.refusal_counts() == {BLOCKED: 1}  # the statement itself
    assert ingest(store, [victim]).added == [victim]


# --- quotas ---------------------------------------------------------------------------------------


def test_the_stranger_quota_counts_posts_per_board_author_and_day(store):
    store.configure_policy(stranger_posts_per_day=3)
    batch = make_posts(BOARD, 5, signer=SPAMMER)
    result = ingest(store, batch)
    assert len(result.added) == 3
    assert codes(result) == {batch[3].id: QUOTA_POSTS, batch[4].id: QUOTA_POSTS}
    # Another board, another author: their own quota.
    assert len(ingest(store, make_posts("other", 3, signer=SPAMMER)).added) == 3
    assert len(ingest(store, make_posts(BOARD, 3, signer=FRIEND)).added) == 3
    # The next day: three more, but the refused ids stay refused.
    later = make_posts(BOARD, 3, signer=SPAMMER, start_ms=T0_MS + 100_000)
    assert len(ingest(store, later, now=NOW + DAY_MS).added) == 3
    assert codes(ingest(store, batch[3:], now=NOW + DAY_MS)) == {batch[3].id: QUOTA_POSTS, batch[4].id: QUOTA_POSTS}
    # A vouch lifts the quota and forgets its refusals.
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    ingest(store, [statement("vouch", "author", SPAMMER.public_key, reason="trusted")], now=NOW + DAY_MS)
    assert QUOTA_POSTS not in store.refusal_counts()
    assert len(ingest(store, batch[3:], now=NOW + DAY_MS).added) == 2


def test_a_spent_quota_is_refused_before_verification_and_not_remembered(store):
    store.configure_policy(stranger_posts_per_day=2)
    ingest(store, make_posts(BOARD, 2, signer=SPAMMER))
    fresh = make_post(SPAMMER, board=BOARD, body="over the quota", created_at_ms=NOW - 10)
    head = (fresh.id, BOARD, SPAMMER.public_key, fresh.created_at_ms)
    # The screen needs no signature: a forged copy is refused the same way, for free.
    assert store.prescreen([head], now_ms=NOW) == {fresh.id: QUOTA_POSTS}
    assert QUOTA_POSTS not in store.refusal_counts()
    # Within one batch, a new stranger's posts beyond the quota are screened out in order.
    batch = make_posts(BOARD, 4, signer=FRIEND, start_ms=NOW - 100)
    heads = [(p.id, BOARD, FRIEND.public_key, p.created_at_ms) for p in batch]
    assert store.prescreen(heads, now_ms=NOW) == {batch[2].id: QUOTA_POSTS, batch[3].id: QUOTA_POSTS}
    # A second copy of an id let through (a forgery of it, say) spends nothing more.
    assert store.prescreen([heads[0], heads[0], heads[1]], now_ms=NOW) == {}
    # Another author, another day, a vouched author: not screened.
    other = make_post(FRIEND, board=BOARD, body="friend")
    assert store.prescreen([(other.id, BOARD, FRIEND.public_key, other.created_at_ms)], now_ms=NOW) == {}
    assert store.prescreen([head], now_ms=NOW + DAY_MS) == {}
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    ingest(store, [statement("vouch", "author", SPAMMER.public_key, reason="trusted")])
    assert store.prescreen([head], now_ms=NOW) == {}
    # Where work is required, the verified path decides (its code comes first).
    ingest(store, make_posts("other", 2, signer=FRIEND))
    spent = make_post(FRIEND, board="other", body="x", created_at_ms=NOW - 5)
    spent_head = (spent.id, "other", FRIEND.public_key, spent.created_at_ms)
    assert store.prescreen([spent_head], now_ms=NOW) == {spent.id: QUOTA_POSTS}
    store.configure_policy(stranger_posts_per_day=2, require_pow={"other": 8})
    assert store.prescreen([spent_head], now_ms=NOW) == {}
    # A post this node asked a peer for (``remember``): the refusal is remembered, so that a
    # sync carries it rather than fetching it again every time.
    store.configure_policy(stranger_posts_per_day=2)
    asked = make_posts(BOARD, 3, signer=MOD2, start_ms=NOW - 50)
    asked_heads = [(p.id, BOARD, MOD2.public_key, p.created_at_ms) for p in asked]
    assert store.prescreen(asked_heads, now_ms=NOW, remember=True) == {asked[2].id: QUOTA_POSTS}
    assert store.refusals([asked[2].id]) == {asked[2].id: QUOTA_POSTS}


def test_the_bytes_quota(store):
    store.configure_policy(stranger_bytes_per_day=3_000)
    batch = [make_post(SPAMMER, board=BOARD, body=f"{i} " + "x" * 1_000, created_at_ms=T0_MS + i) for i in range(4)]
    result = ingest(store, batch)
    assert len(result.added) == 2 and set(codes(result).values()) == {QUOTA_BYTES}


def test_require_pow_refuses_unworked_stranger_posts(store):
    store.configure_policy(require_pow={BOARD: 8})
    plain = make_post(SPAMMER, board=BOARD, body="no work")
    worked = posts.create_post(SPAMMER, kind="post", board=BOARD, body="work", created_at_ms=T0_MS, work_bits=8)
    low = posts.create_post(SPAMMER, kind="post", board=BOARD, body="less", created_at_ms=T0_MS, work_bits=8)
    store.configure_policy(require_pow={BOARD: 9})
    result = ingest(store, [plain, low])
    assert codes(result) == {plain.id: POW_REQUIRED, low.id: POW_REQUIRED}
    store.configure_policy(require_pow={BOARD: 8})
    assert ingest(store, [worked]).added == [worked]
    assert store.get(worked.id).to_post() == worked  # the work survives the store
    # Local pseudonyms are asked for nothing.
    store.sync_identities([("me", ME.public_key)], now_ms=NOW)
    mine = make_post(ME, board=BOARD, body="mine")
    assert ingest(store, [mine], source="local").added == [mine]


def test_stranger_statements_are_bounded_per_board(store, monkeypatch):
    monkeypatch.setattr(limits, "MAX_STATEMENTS_PER_BOARD", 2)
    made = [statement("hide", "post", bytes([i]) * 32, by=SPAMMER) for i in range(3)]
    result = ingest(store, made)
    assert len(result.added) == 2 and codes(result) == {made[2].id: QUOTA_POSTS}
    # A followed moderator's statements are always kept.
    store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
    assert len(ingest(store, [statement("hide", "post", b"\x09" * 32)]).added) == 1


def test_refusals_are_bounded_oldest_first(store, monkeypatch):
    monkeypatch.setattr(limits, "MAX_REFUSALS", 5)
    store.configure_policy(stranger_posts_per_day=0)
    batch = make_posts(BOARD, 8, signer=SPAMMER)
    for post in batch:
        ingest(store, [post])
    assert set(store.refusals([p.id for p in batch])) == {p.id for p in batch[3:]}


# --- statements, charters, unknown kinds -----------------------------------------------------------


def test_statement_rows_follow_their_posts(store):
    target = make_post(FRIEND, board=BOARD)
    st = statement("hide", "post", target.id)
    ingest(store, [target, st])
    assert [s.id for s in store.statements_about(BOARD, target.id)] == [st.id]
    store.delete([st.id], now_ms=NOW)
    assert store.statements_about(BOARD, target.id) == []
    st2 = statement("hide", "post", target.id, at=NOW - 1)
    ingest(store, [st2])
    store.purge_older_than(BOARD, NOW, now_ms=NOW)
    assert store.statements_about(BOARD, target.id) == []


def test_the_charter_is_the_openers_newest(store):
    opener, other = key(200), key(201)
    first = make_post(opener, board=BOARD, body="first", created_at_ms=T0_MS)
    ingest(store, [first, make_post(other, board=BOARD, body="later", created_at_ms=T0_MS + 5)])
    assert store.charter(BOARD) is None
    old = moderation.create_charter(opener, board=BOARD, moderators=[MOD.public_key], created_at_ms=T0_MS + 10)
    new = moderation.create_charter(opener, board=BOARD, moderators=[MOD.public_key, MOD2.public_key],
                                    description="be kind", created_at_ms=T0_MS + 20)
    fake = moderation.create_charter(other, board=BOARD, moderators=[SPAMMER.public_key], created_at_ms=T0_MS + 30)
    ingest(store, [old, new, fake])
    charter = store.charter(BOARD)
    assert charter is not None and charter.id == new.id and charter.description == "be kind"
    assert charter.moderators == (MOD.public_key, MOD2.public_key)
    assert store.charter("nowhere") is None


def test_unknown_kinds_are_stored_and_never_listed(store):
    from tests.factories import signed

    raw = signed([1, "poll", BOARD, FRIEND.public_key, T0_MS, None, "what next?"], FRIEND)
    obj = posts.check_post(raw, NOW / 1000)
    plain = make_post(FRIEND, board=BOARD, body="plain")
    assert len(ingest(store, [obj, plain]).added) == 2
    assert store.get_raw([obj.id]) == [raw]
    assert [t.post.id for t in store.threads(BOARD)] == [plain.id]
    assert [h.post.id for h in store.search("what next")] == []
    assert obj.key in set(store.iter_keys())


# --- the reconciliation set -----------------------------------------------------------------------------


def test_carried_refusals_and_purges_join_the_set_and_the_change_feed(tmp_path):
    path = tmp_path / "node.db"
    with Store(path) as node, Store(path) as other:
        node.configure_policy(stranger_posts_per_day=1)
        mark = (*node.watermark(), node.key_log_seq())
        batch = make_posts(BOARD, 3, signer=SPAMMER)
        ingest(node, batch)
        kept = batch[0]
        assert list(node.iter_extra_keys()) == []
        # A sync finds a peer holding the refused ids: they are carried.
        tombs, refused, keys = node.skip_and_carry([p.id for p in batch])
        assert tombs == set() and refused == {batch[1].id, batch[2].id}
        assert sorted(keys) == sorted(p.key for p in batch[1:])
        assert node.skip_and_carry([p.id for p in batch])[2] == []  # already carried
        node.purge_older_than(BOARD, NOW, now_ms=NOW)
        assert node.mark_carried([kept.id]) == [kept.key]
        assert sorted(node.iter_extra_keys()) == sorted(p.key for p in batch)
        assert sorted(node.iter_extra_keys(["other"])) == []
        # Another process reads what each key is now, whatever the order of the changes.
        changes = other.changes_since(*mark)
        assert changes.added == [] or {r.id for r in changes.added} <= {kept.id}
        assert sorted(changes.present_keys) == sorted(p.key for p in batch)
        assert changes.removed_keys == []
        # Vouching forgets the carried refusals: they leave the set.
        node.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
        removed = ingest(node, [statement("vouch", "author", SPAMMER.public_key, reason="trusted")]).removed_keys
        assert sorted(removed) == sorted(p.key for p in batch[1:])
        again = other.changes_since(changes.post_seq, changes.tomb_seq, changes.log_seq)
        assert sorted(again.removed_keys) == sorted(p.key for p in batch[1:])


def test_a_rolled_back_write_leaves_no_cached_trust(tmp_path, monkeypatch):
    with Store(tmp_path / "node.db") as store:
        store.add_moderator(BOARD, MOD.public_key, source="cli", now_ms=NOW)
        post = make_post(SPAMMER, board=BOARD)
        block = statement("block", "post", post.id)

        def broken(*args, **kwargs):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(Store, "_index_inline", broken)
        with pytest.raises(Exception):  # noqa: B017 - whatever the store makes of it
            ingest(store, [block])
        monkeypatch.undo()
        assert store.trust_view(BOARD, now_ms=NOW).post_block(post.id) is None
        assert ingest(store, [post]).added == [post]


def test_a_pseudonym_made_known_late_is_no_longer_held_to_the_quota(store):
    store.configure_policy(stranger_posts_per_day=1)
    mine = make_posts("quiet", 3, signer=ME)
    assert len(ingest(store, mine, source="local").added) == 1
    assert store.refusal_counts() == {QUOTA_POSTS: 2}
    store.sync_identities([("me", ME.public_key)], now_ms=NOW)
    assert store.refusal_counts() == {}
    assert len(ingest(store, mine[1:], source="local").added) == 2


def test_ids_with_prefix_reads_a_range_of_the_id_index(store):
    store.configure_policy(stranger_posts_per_day=10**6)
    made = make_posts(BOARD, 300, signer=SPAMMER)
    ingest(store, made)
    for post in made[:10]:
        full = post.id.hex()
        for n in (0, 1, 2, 3, 8, 9, 63, 64):
            expected = sorted(p.id for p in made if p.id.hex().startswith(full[:n]))[:50]
            assert store.ids_with_prefix(full[:n], 50) == expected
    with pytest.raises(ValueError):
        store.ids_with_prefix("XYZ")
