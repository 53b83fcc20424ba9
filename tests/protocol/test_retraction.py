"""The retraction rule as pure functions: the verdict table, and order independence (Hypothesis).

No store, no event loop: a small in-memory model below receives posts one at a time and keeps
the same bookkeeping as the node's store (stored posts, tombstones with author and board,
retractions waiting for their target), deciding everything with :func:`judge`.  Whatever the
arrival order, it must end in :func:`settle` of the posts received.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.protocol.errors import RetractionBoardError, RetractionError
from dazibao.protocol.identity import SigningKey
from dazibao.protocol.posts import KIND_RETRACT, Post, check_retraction, create_post
from dazibao.protocol.retraction import (
    TOMBSTONE_REJECTED,
    TOMBSTONE_RETRACTED,
    Known,
    Settlement,
    Verdict,
    judge,
    settle,
)

KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
A, B, _ = KEYS
BOARDS = ("general", "labor")


def mk(key: SigningKey, t: int, board: str = "general", kind: str = "post", parent: bytes | None = None) -> Post:
    body = "" if kind == "retract" else f"post {t}"
    return create_post(key, kind=kind, board=board, body=body, created_at_ms=t, parent=parent)


def retract(key: SigningKey, target: Post, t: int, board: str | None = None) -> Post:
    return mk(key, t, board or target.board, "retract", target.id)


# --- the verdict table ----------------------------------------------------------------------

POST = mk(A, 1)
OWN = retract(A, POST, 2)


@pytest.mark.parametrize(
    ("retraction", "target", "verdict"),
    [
        (Known.of(OWN), None, Verdict.WAIT),
        (Known.of(OWN), Known.of(POST), Verdict.APPLY),
        (Known.of(retract(B, POST, 3)), Known.of(POST), Verdict.NOT_AUTHOR),
        (Known.of(retract(A, POST, 3, "labor")), Known.of(POST), Verdict.WRONG_BOARD),
        # Wrong on both counts: the author is compared first, as check_retraction does.
        (Known.of(retract(B, POST, 3, "labor")), Known.of(POST), Verdict.NOT_AUTHOR),
        # A retraction of a retraction removes nothing, but is still judged on author and board.
        (Known.of(retract(A, OWN, 3)), Known.of(OWN), Verdict.KEEP),
        (Known.of(retract(B, OWN, 3)), Known.of(OWN), Verdict.NOT_AUTHOR),
        # A tombstoned target: nothing left to remove; its tombstone still tells author and board.
        (Known.of(OWN), Known.tombstone(A.public_key, "general"), Verdict.KEEP),
        (Known.of(retract(B, POST, 3)), Known.tombstone(A.public_key, "general"), Verdict.NOT_AUTHOR),
        (Known.of(retract(A, POST, 3, "labor")), Known.tombstone(A.public_key, "general"), Verdict.WRONG_BOARD),
        # An unknown fact never refuses.
        (Known.of(retract(B, POST, 3)), Known.tombstone(None, None), Verdict.KEEP),
        # A retraction whose own row is gone (deleted, purged) still applies when its target comes.
        (Known.tombstone(A.public_key, "general"), Known.of(POST), Verdict.APPLY),
    ],
)
def test_verdicts(retraction: Known, target: Known | None, verdict: Verdict) -> None:
    assert judge(retraction, target) is verdict


def test_refusals_carry_the_protocol_error_codes() -> None:
    assert Verdict.NOT_AUTHOR.value == RetractionError.code == "retract_not_author"
    assert Verdict.WRONG_BOARD.value == RetractionBoardError.code == "retract_wrong_board"
    assert [v for v in Verdict if v.refused] == [Verdict.NOT_AUTHOR, Verdict.WRONG_BOARD]


def test_judge_agrees_with_check_retraction_on_stored_targets() -> None:
    for key in (A, B):
        for board in BOARDS:
            r = retract(key, POST, 5, board)
            try:
                check_retraction(r, POST)
                expected = Verdict.APPLY
            except RetractionError as err:
                expected = Verdict(err.code)
            assert judge(Known.of(r), Known.of(POST)) is expected


def test_settle_of_a_small_set() -> None:
    foreign, rr = retract(B, POST, 3), retract(A, OWN, 4)
    waiting = mk(A, 5, kind="retract", parent=b"\xee" * 32)
    s = settle([POST, OWN, foreign, rr, waiting, OWN])
    assert s.stored == {OWN.id, rr.id, waiting.id}
    assert dict(s.tombstones) == {POST.id: TOMBSTONE_RETRACTED, foreign.id: TOMBSTONE_REJECTED}
    assert s.pending == {(b"\xee" * 32, waiting.id)}
    assert settle([]) == Settlement(frozenset(), {}, frozenset())


# --- an in-memory node, fed one post at a time ----------------------------------------------


@dataclass
class Model:
    """The store's bookkeeping in memory; every decision is :func:`judge`'s."""

    stored: dict[bytes, Post] = field(default_factory=dict)
    tombs: dict[bytes, tuple[str, Known]] = field(default_factory=dict)
    waiting: dict[bytes, dict[bytes, Known]] = field(default_factory=dict)  # target -> retraction -> facts

    def receive(self, post: Post) -> None:
        if post.id in self.stored or post.id in self.tombs:
            return  # a duplicate, or refused as tombstoned
        retracted = False
        for rid, facts in sorted(self.waiting.pop(post.id, {}).items()):
            verdict = judge(facts, Known.of(post))
            if verdict.refused:
                self._remove(rid, TOMBSTONE_REJECTED)
            elif verdict is Verdict.APPLY:
                retracted = True
        if retracted:
            self.tombs[post.id] = (TOMBSTONE_RETRACTED, Known.tombstone(post.author, post.board))
            return
        self.stored[post.id] = post
        if post.kind != KIND_RETRACT or post.parent is None:
            return
        target_id = post.parent
        if target_id in self.stored:
            target: Known | None = Known.of(self.stored[target_id])
        elif target_id in self.tombs:
            target = self.tombs[target_id][1]
        else:
            target = None
        verdict = judge(Known.of(post), target)
        if verdict.refused:
            self._remove(post.id, TOMBSTONE_REJECTED)
        elif verdict is Verdict.APPLY:
            self._remove(target_id, TOMBSTONE_RETRACTED)
        elif verdict is Verdict.WAIT:
            self.waiting.setdefault(target_id, {})[post.id] = Known.of(post)

    def _remove(self, pid: bytes, reason: str) -> None:
        post = self.stored.pop(pid)
        self.tombs[pid] = (reason, Known.tombstone(post.author, post.board))

    def state(self) -> Settlement:
        pending = frozenset((t, r) for t, rs in self.waiting.items() for r in rs)
        return Settlement(frozenset(self.stored), {k: v[0] for k, v in self.tombs.items()}, pending)


@st.composite
def post_sets(draw: st.DrawFn) -> list[Post]:
    """Posts, replies and retractions by three authors on two boards, retractions naming
    earlier posts of the set (retractions included) or ids never seen."""
    made: list[Post] = []
    for t in range(draw(st.integers(1, 12))):
        key = draw(st.sampled_from(KEYS))
        board = draw(st.sampled_from(BOARDS))
        if made and draw(st.booleans()):
            target = draw(st.sampled_from(made))
            # Mostly the target's own board, sometimes another one.
            on = target.board if draw(st.integers(0, 3)) else board
            made.append(mk(key, 1_000 + t, on, "retract", target.id))
        elif draw(st.integers(0, 5)) == 0:
            made.append(mk(key, 1_000 + t, board, "retract", bytes([t]) * 32))  # never arrives
        else:
            made.append(mk(key, 1_000 + t, board))
    return made


def feed(order: list[Post]) -> Settlement:
    model = Model()
    for post in order:
        model.receive(post)
    return model.state()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_arrival_order_ends_in_the_settlement(data: st.DataObject) -> None:
    posts = data.draw(post_sets(), label="posts")
    order = data.draw(st.permutations(posts), label="order")
    # Repeats change nothing: a post offered again is a duplicate or refused as tombstoned.
    repeats = data.draw(st.lists(st.sampled_from(posts), max_size=4), label="repeats")
    expected = settle(posts)
    assert feed(order + repeats) == expected
    assert feed(list(reversed(order))) == expected


@settings(max_examples=200, deadline=None)
@given(posts=post_sets())
def test_a_foreign_retraction_never_removes_anything(posts: list[Post]) -> None:
    by_id = {p.id: p for p in posts}
    s = settle(posts)
    for pid, reason in s.tombstones.items():
        post = by_id[pid]
        if reason == TOMBSTONE_RETRACTED:
            # Removed only by a retraction of its own author, on its board, and never a retraction.
            assert post.kind != KIND_RETRACT
            assert any(r.kind == KIND_RETRACT and r.parent == pid and r.author == post.author
                       and r.board == post.board for r in posts)
        else:
            # Only retractions are ever refused, and only for naming a post they may not retract.
            assert post.kind == KIND_RETRACT
            target = by_id.get(post.parent or b"")
            assert target is not None
            assert (target.author, target.board) != (post.author, post.board)
    # A retraction by someone else than the target's author is never kept beside its target.
    for pid in s.stored:
        post = by_id[pid]
        if post.kind == KIND_RETRACT and post.parent in s.stored:
            assert by_id[post.parent].author == post.author


@settings(max_examples=200, deadline=None)
@given(posts=post_sets())
def test_every_post_ends_stored_or_tombstoned(posts: list[Post]) -> None:
    s = settle(posts)
    ids = {p.id for p in posts}
    assert s.stored | set(s.tombstones) == ids and not s.stored & set(s.tombstones)
    assert {r for _, r in s.pending} <= s.stored
    assert all(t not in ids for t, _ in s.pending)
