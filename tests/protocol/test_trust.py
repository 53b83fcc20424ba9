"""What a node believes on a board and whether it takes a post (protocol/trust.py).

* newest per (moderator, board, subject, target) wins, an expired newest says nothing and does
  not revive an older one, and undo (the statement gone from the set) lets an older one count;
* only followed moderators count; block by any beats vouch by any; hide by any hides;
* the view does not depend on the order statements arrive in (Hypothesis, against a model);
* admit: blocked first, then local / followed / vouched authors, then the stranger quota in the
  order pow_required, quota_posts, quota_bytes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import errors, moderation, posts
from dazibao.protocol.errors import LocalProtocolError
from dazibao.protocol.identity import SigningKey
from dazibao.protocol.moderation import Statement
from dazibao.protocol.trust import Quota, TrustView, admit, judge_stranger
from tests import factories

T0 = factories.T0_MS
BOARD = "general"
M1, M2, M3 = (SigningKey(bytes([40 + i]) * 32) for i in range(3))
ALICE, BOB = SigningKey(bytes([50]) * 32), SigningKey(bytes([51]) * 32)
SETTINGS = dict(deadline=None, database=None)
QUOTA = Quota(posts_per_day=3, bytes_per_day=10_000)


def say(moderator: SigningKey, action: str, subject: str, target: bytes, *, at: int = T0, reason: str = "spam",
        expires: int | None = None, board: str = BOARD) -> Statement:
    return moderation.parse_statement(moderation.create_statement(
        moderator, board=board, action=action, subject=subject, target=target, reason=reason,
        expires_at_ms=expires, created_at_ms=at))


def post_by(author: SigningKey, body: str = "hello", **kw) -> posts.Post:
    return factories.make_post(author, body=body, **kw)


def view(statements, followed=(M1.public_key, M2.public_key), now=T0 + 1000, board=BOARD) -> TrustView:
    return TrustView.build(board, followed, statements, now)


# --- the view -------------------------------------------------------------------------------


def test_an_empty_view():
    v = view([])
    p = post_by(ALICE)
    assert v.blocks(p.id, p.author) is None and v.hides(p.id, p.author) == ()
    assert not v.vouched(ALICE.public_key) and v.about_author(ALICE.public_key) == ()
    assert v.board == BOARD and v.followed == frozenset({M1.public_key, M2.public_key}) and v.statements == ()


def test_each_action_and_subject():
    p = post_by(ALICE)
    block_post = say(M1, "block", "post", p.id)
    block_author = say(M1, "block", "author", BOB.public_key)
    hide_post = say(M2, "hide", "post", p.id, at=T0 + 1)
    hide_author = say(M2, "hide", "author", ALICE.public_key, at=T0 + 2)
    vouch = say(M1, "vouch", "author", ALICE.public_key, reason="trusted")
    v = view([block_post, block_author, hide_post, hide_author, vouch])
    assert v.post_block(p.id) == block_post and v.blocks(p.id, p.author) == block_post
    assert v.author_block(BOB.public_key) == block_author
    bob_post = post_by(BOB)
    assert v.blocks(bob_post.id, bob_post.author) == block_author
    assert v.hides(p.id, p.author) == (hide_post, hide_author)
    assert v.vouched(ALICE.public_key) and not v.vouched(BOB.public_key)
    assert set(v.about_author(ALICE.public_key)) == {hide_author, vouch}
    assert v.about_author(BOB.public_key) == (block_author,)
    assert set(v.statements) == {block_post, block_author, hide_post, hide_author, vouch}


def test_only_followed_moderators_and_this_board_count():
    p = post_by(ALICE)
    stranger = say(M3, "block", "post", p.id)
    elsewhere = say(M1, "block", "post", p.id, board="other")
    v = view([stranger, elsewhere])
    assert v.blocks(p.id, p.author) is None and v.statements == ()
    assert view([stranger], followed=[M3.public_key]).blocks(p.id, p.author) == stranger
    assert view([elsewhere], board="other").blocks(p.id, p.author) == elsewhere


def test_newest_wins_per_moderator_board_subject_target():
    a = ALICE.public_key
    blocked = say(M1, "block", "author", a, at=T0)
    vouched = say(M1, "vouch", "author", a, at=T0 + 10, reason="trusted")
    v = view([vouched, blocked])
    assert v.vouched(a) and v.author_block(a) is None and v.statements == (vouched,)
    # The other way round: the block is newer.
    reblocked = say(M1, "block", "author", a, at=T0 + 20)
    assert not view([vouched, blocked, reblocked]).vouched(a)
    # A statement about the author's post is another key: it does not replace one about the author.
    p = post_by(ALICE)
    hidden = say(M1, "hide", "post", p.id, at=T0 + 30)
    both = view([vouched, hidden])
    assert both.vouched(a) and both.hides(p.id, a) == (hidden,)


def test_equal_times_are_broken_by_the_larger_id():
    a = ALICE.public_key
    one = say(M1, "block", "author", a, at=T0, reason="spam")
    two = say(M1, "vouch", "author", a, at=T0, reason="trusted")
    newer = max(one, two, key=lambda s: s.id)
    assert view([one, two]).statements == (newer,) == view([two, one]).statements


def test_an_expired_newest_statement_says_nothing_and_does_not_revive_an_older_one():
    a = ALICE.public_key
    old_block = say(M1, "block", "author", a, at=T0)
    short_hide = say(M1, "hide", "author", a, at=T0 + 10, expires=T0 + 100)
    assert view([old_block, short_hide], now=T0 + 99).hides(b"", a) == (short_hide,)
    late = view([old_block, short_hide], now=T0 + 100)
    assert late.statements == () and late.author_block(a) is None and late.hides(b"", a) == ()
    # Undo is a retraction: the store drops the retracted statement, and the older one counts again.
    assert view([old_block], now=T0 + 100).author_block(a) == old_block


def test_block_by_any_beats_vouch_by_any_and_hide_by_any_hides():
    a = ALICE.public_key
    vouch = say(M1, "vouch", "author", a, at=T0 + 50, reason="trusted")
    block = say(M2, "block", "author", a, at=T0)
    v = view([vouch, block])
    assert not v.vouched(a) and v.author_block(a) == block
    p = post_by(ALICE)
    assert admit(v, QUOTA, p, posts_today=0, bytes_today=0, local_author=False) == errors.BLOCKED
    hide = say(M2, "hide", "post", p.id)
    v = view([vouch, hide])
    assert v.vouched(a) and v.hides(p.id, a) == (hide,)
    assert admit(v, QUOTA, p, posts_today=99, bytes_today=0, local_author=False) is None


def test_views_compare_by_what_they_hold():
    s = say(M1, "hide", "post", bytes(32))
    assert view([s]) == view([s, s]) and hash(view([s])) == hash(view([s]))
    assert view([s]) != view([])


# --- admit and the stranger quota -----------------------------------------------------------


def test_judge_stranger_order_and_edges():
    q = Quota(posts_per_day=2, bytes_per_day=1000, pow_bits=12)
    assert judge_stranger(q, posts_today=0, bytes_today=0, size=10, work_target=None) == "pow_required"
    assert judge_stranger(q, posts_today=5, bytes_today=5000, size=10, work_target=11) == "pow_required"
    assert judge_stranger(q, posts_today=2, bytes_today=5000, size=10, work_target=12) == "quota_posts"
    assert judge_stranger(q, posts_today=1, bytes_today=990, size=11, work_target=40) == "quota_bytes"
    assert judge_stranger(q, posts_today=1, bytes_today=990, size=10, work_target=12) is None
    free = Quota(posts_per_day=2, bytes_per_day=1000)
    assert judge_stranger(free, posts_today=1, bytes_today=0, size=1000, work_target=None) is None
    assert judge_stranger(free, posts_today=0, bytes_today=0, size=1001, work_target=None) == "quota_bytes"


def test_admit():
    p = post_by(ALICE)
    v = view([])
    full = dict(posts_today=3, bytes_today=0)
    assert admit(v, QUOTA, p, posts_today=0, bytes_today=0, local_author=False) is None
    assert admit(v, QUOTA, p, **full, local_author=False) == errors.QUOTA_POSTS
    assert admit(v, QUOTA, p, posts_today=0, bytes_today=10_000, local_author=False) == errors.QUOTA_BYTES
    # Local pseudonyms, followed moderators and vouched authors are never quota'd nor asked for work.
    pow_quota = Quota(posts_per_day=3, bytes_per_day=10_000, pow_bits=8)
    assert admit(v, pow_quota, p, **full, local_author=True) is None
    statement = moderation.create_statement(M1, board=BOARD, action="hide", subject="post", target=p.id,
                                            reason="spam", created_at_ms=T0)
    assert admit(v, pow_quota, statement, **full, local_author=False) is None
    assert admit(view([], followed=()), pow_quota, statement, posts_today=0, bytes_today=0,
                 local_author=False) == errors.POW_REQUIRED
    vouched = view([say(M1, "vouch", "author", ALICE.public_key, reason="trusted")])
    assert admit(vouched, pow_quota, p, **full, local_author=False) is None
    # Blocked beats everything, a local author included.
    blocked = view([say(M2, "block", "post", p.id)])
    assert admit(blocked, pow_quota, p, posts_today=0, bytes_today=0, local_author=True) == errors.BLOCKED
    with pytest.raises(LocalProtocolError):
        admit(v, QUOTA, post_by(ALICE, board="other"), posts_today=0, bytes_today=0, local_author=False)


def test_admit_counts_the_encoded_size_and_the_committed_work():
    p = posts.create_post(ALICE, kind="post", board=BOARD, body="x" * 500, created_at_ms=T0, work_bits=10)
    q = Quota(posts_per_day=10, bytes_per_day=len(p.raw), pow_bits=10)
    assert admit(view([]), q, p, posts_today=0, bytes_today=0, local_author=False) is None
    assert admit(view([]), q, p, posts_today=0, bytes_today=1, local_author=False) == errors.QUOTA_BYTES
    q11 = Quota(posts_per_day=10, bytes_per_day=10**6, pow_bits=11)
    assert admit(view([]), q11, p, posts_today=0, bytes_today=0, local_author=False) == errors.POW_REQUIRED


def test_objects_of_unknown_kind_count_like_any_post():
    raw = factories.signed([1, "poll", BOARD, ALICE.public_key, T0, None, "A or B?"], ALICE)
    p = posts.check_post(raw, T0 / 1000)
    assert admit(view([]), QUOTA, p, posts_today=3, bytes_today=0, local_author=False) == errors.QUOTA_POSTS


# --- properties: a model of the rules -------------------------------------------------------

MODS = [M1, M2, M3]
AUTHORS = [ALICE.public_key, BOB.public_key]
POST_IDS = [hashlib.sha256(b"post %d" % i).digest() for i in range(3)]


@st.composite
def a_statement(draw) -> Statement:
    moderator = draw(st.sampled_from(MODS))
    action = draw(st.sampled_from(moderation.ACTIONS))
    subject = "author" if action == "vouch" else draw(st.sampled_from(moderation.SUBJECTS))
    target = draw(st.sampled_from(AUTHORS if subject == "author" else POST_IDS))
    at = T0 + draw(st.integers(0, 5))  # few times, so ties between statements happen
    expires = draw(st.one_of(st.none(), st.integers(at + 1, at + 20)))
    board = draw(st.sampled_from([BOARD, BOARD, "other"]))
    return say(moderator, action, subject, target, at=at, expires=expires, board=board,
               reason=draw(st.sampled_from(["spam", "trusted", "x"])))


STATEMENTS = st.lists(a_statement(), max_size=12)
FOLLOWED = st.sets(st.sampled_from([m.public_key for m in MODS]))
NOWS = st.integers(T0, T0 + 30)


def model(followed, statements, now):
    """The rules as written in docs/protocol.md, computed the slow way."""
    counted = []
    for s in statements:
        if s.board != BOARD or s.moderator not in followed:
            continue
        same = [t for t in statements if t.key == s.key]
        newest = max(same, key=lambda t: (t.created_at_ms, t.id))
        if newest is s and (s.expires_at_ms is None or now < s.expires_at_ms) and s not in counted:
            counted.append(s)
    return counted


@settings(max_examples=factories.examples(150), **SETTINGS)
@given(statements=STATEMENTS, followed=FOLLOWED, now=NOWS, data=st.data())
def test_the_view_is_independent_of_statement_order(statements, followed, now, data):
    shuffled = data.draw(st.permutations(statements))
    doubled = statements + data.draw(st.lists(st.sampled_from(statements), max_size=5)) if statements else []
    first = TrustView.build(BOARD, followed, statements, now)
    assert TrustView.build(BOARD, followed, shuffled, now) == first
    assert TrustView.build(BOARD, followed, doubled, now) == first
    for pid in POST_IDS:
        for author in AUTHORS:
            again = TrustView.build(BOARD, followed, reversed(statements), now)
            assert again.blocks(pid, author) == first.blocks(pid, author)
            assert again.hides(pid, author) == first.hides(pid, author)
            assert again.vouched(author) == first.vouched(author)


@settings(max_examples=factories.examples(150), **SETTINGS)
@given(statements=STATEMENTS, followed=FOLLOWED, now=NOWS)
def test_the_view_follows_the_rules(statements, followed, now):
    v = TrustView.build(BOARD, followed, statements, now)
    counted = model(followed, statements, now)
    assert set(v.statements) == set(counted)
    for author in AUTHORS:
        blocked = [s for s in counted if s.action == "block" and s.subject == "author" and s.target == author]
        vouches = [s for s in counted if s.action == "vouch" and s.target == author]
        # Block by any beats vouch by any.
        assert v.vouched(author) == (bool(vouches) and not blocked)
        assert (v.author_block(author) is not None) == bool(blocked)
        for pid in POST_IDS:
            post_blocks = [s for s in counted if s.action == "block" and s.subject == "post" and s.target == pid]
            hides = [s for s in counted if s.action == "hide" and s.target in (pid, author)
                     and s.subject == ("post" if s.target == pid else "author")]
            assert (v.blocks(pid, author) is not None) == bool(post_blocks or blocked)
            assert set(v.hides(pid, author)) == set(hides)


@settings(max_examples=factories.examples(150), **SETTINGS)
@given(statements=STATEMENTS, followed=FOLLOWED, now=NOWS)
def test_expiry_never_revives_and_newest_wins(statements, followed, now):
    v = TrustView.build(BOARD, followed, statements, now)
    for s in v.statements:
        assert s.active(now) and s.moderator in followed and s.board == BOARD
        rivals = [t for t in statements if t.key == s.key]
        assert all((t.created_at_ms, t.id) <= (s.created_at_ms, s.id) for t in rivals)
    # One key at most per (moderator, board, subject, target).
    assert len({s.key for s in v.statements}) == len(v.statements)
