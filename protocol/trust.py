"""What one node believes on one board, and whether it takes one incoming post: pure policy.

The node's store feeds this module plain values -- the moderators it follows on a board, the
moderation statements it holds for that board, its clock, a stranger's usage of the day -- and
gets decisions back (docs/protocol.md, "Moderation statements"; the codes are
``errors.POLICY_CODES``):

* **newest wins**: of the statements one moderator made about one target on one board (one
  :attr:`Statement.key`), only the newest by ``(created_at_ms, id)`` counts.  If it has expired,
  that moderator says nothing about the target: an older statement does not come back;
* only statements of **followed** moderators count (a node follows its own local pseudonyms on
  every board besides the moderators it was told to follow);
* across followed moderators, a **block by any beats a vouch by any**, and a **hide by any
  hides**.

The outcome depends only on the set of statements, never on the order they arrived in
(:meth:`TrustView.build` sorts out everything it needs), which is what lets every node that
follows the same moderators agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import errors
from .errors import LocalProtocolError
from .moderation import Statement
from .posts import Post

__all__ = ["TrustView", "Quota", "judge_stranger", "admit", "effective"]


def effective(board: str, followed: Iterable[bytes], statements: Iterable[Statement],
              now_ms: int) -> tuple[Statement, ...]:
    """The statements that count on ``board`` at ``now_ms``, sorted by ``(created_at_ms, id)``.

    Of each ``(moderator, board, subject, target)`` only the newest statement by a followed
    moderator is kept, and then only if it is active (not expired) at ``now_ms``.  Statements
    about other boards, or by moderators not followed, are ignored.
    """
    who = frozenset(followed)
    newest: dict[tuple[bytes, str, str, bytes], Statement] = {}
    for statement in statements:
        if statement.board != board or statement.moderator not in who:
            continue
        held = newest.get(statement.key)
        if held is None or statement.order > held.order:
            newest[statement.key] = statement
    return tuple(sorted((s for s in newest.values() if s.active(now_ms)), key=lambda s: s.order))


def _index(statements: Iterable[Statement]) -> Mapping[bytes, tuple[Statement, ...]]:
    found: dict[bytes, list[Statement]] = {}
    for statement in statements:
        found.setdefault(statement.target, []).append(statement)
    return {target: tuple(group) for target, group in found.items()}


@dataclass(frozen=True, slots=True)
class TrustView:
    """What one node believes on one board at one moment.  Make it with :meth:`build`.

    ``statements`` are the effective ones (:func:`effective`), oldest first; two views are
    equal when they hold the same board, followed set and effective statements.
    """

    board: str
    #: The moderators this node follows on the board (its local pseudonyms included).
    followed: frozenset[bytes]
    statements: tuple[Statement, ...] = ()
    # Indexes of ``statements`` by target, per action and subject (oldest first in each group).
    _post_blocks: Mapping[bytes, tuple[Statement, ...]] = field(default_factory=dict, compare=False, repr=False)
    _author_blocks: Mapping[bytes, tuple[Statement, ...]] = field(default_factory=dict, compare=False, repr=False)
    _post_hides: Mapping[bytes, tuple[Statement, ...]] = field(default_factory=dict, compare=False, repr=False)
    _author_hides: Mapping[bytes, tuple[Statement, ...]] = field(default_factory=dict, compare=False, repr=False)
    _vouches: Mapping[bytes, tuple[Statement, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, board: str, followed: Iterable[bytes], statements: Iterable[Statement], now_ms: int) -> TrustView:
        """The view of ``board`` for a node that follows ``followed`` and holds ``statements``
        (of any boards, in any order, expired ones included) at ``now_ms``."""
        who = frozenset(followed)
        counted = effective(board, who, statements, now_ms)

        def pick(action: str, subject: str) -> Mapping[bytes, tuple[Statement, ...]]:
            return _index(s for s in counted if s.action == action and s.subject == subject)

        return cls(board, who, counted, pick("block", "post"), pick("block", "author"), pick("hide", "post"),
                   pick("hide", "author"), pick("vouch", "author"))

    def post_block(self, post_id: bytes) -> Statement | None:
        """The newest effective ``block post`` of ``post_id``, or None."""
        found = self._post_blocks.get(post_id)
        return found[-1] if found else None

    def author_block(self, author: bytes) -> Statement | None:
        """The newest effective ``block author`` of ``author`` on this board, or None."""
        found = self._author_blocks.get(author)
        return found[-1] if found else None

    def blocks(self, post_id: bytes, author: bytes) -> Statement | None:
        """The statement that blocks this post (its own block first, then its author's), or None."""
        return self.post_block(post_id) or self.author_block(author)

    def hides(self, post_id: bytes, author: bytes) -> tuple[Statement, ...]:
        """Every effective ``hide`` of this post or of its author, oldest first (empty: shown)."""
        found = self._post_hides.get(post_id, ()) + self._author_hides.get(author, ())
        return tuple(sorted(found, key=lambda s: s.order))

    def vouched(self, author: bytes) -> bool:
        """Whether a followed moderator vouches for ``author`` here and none blocks it (block beats vouch)."""
        return bool(self._vouches.get(author)) and author not in self._author_blocks

    def about_author(self, author: bytes) -> tuple[Statement, ...]:
        """The effective statements whose subject is ``author`` (hide, block, vouch), oldest first."""
        found = self._author_blocks.get(author, ()) + self._author_hides.get(author, ()) + self._vouches.get(author, ())
        return tuple(sorted(found, key=lambda s: s.order))


@dataclass(frozen=True, slots=True)
class Quota:
    """What a stranger may add to one board in one day, and the work a board asks of it."""

    posts_per_day: int
    bytes_per_day: int
    #: The work target (bits) a stranger's post must commit to; None: no work required.
    pow_bits: int | None = None


def judge_stranger(quota: Quota, *, posts_today: int, bytes_today: int, size: int,
                   work_target: int | None) -> str | None:
    """Whether a stranger's post of ``size`` encoded bytes fits ``quota``, given what that author
    already added to the board today (``posts_today`` posts of ``bytes_today`` bytes).

    None to accept; otherwise the first that applies of ``pow_required`` (the board requires
    work and the post commits to none or to a lower target than ``quota.pow_bits``, however many
    zero bits its id happens to have), ``quota_posts`` (one more post would exceed
    ``posts_per_day``), ``quota_bytes`` (``size`` more bytes would exceed ``bytes_per_day``).
    """
    if quota.pow_bits is not None and (work_target is None or work_target < quota.pow_bits):
        return errors.POW_REQUIRED
    if posts_today + 1 > quota.posts_per_day:
        return errors.QUOTA_POSTS
    if bytes_today + size > quota.bytes_per_day:
        return errors.QUOTA_BYTES
    return None


def admit(view: TrustView, quota: Quota, post: Post, *, posts_today: int, bytes_today: int,
          local_author: bool) -> str | None:
    """The whole policy decision for one valid incoming ``post`` on ``view.board``.

    ``blocked`` if a followed moderator blocks the post or its author; else None (accept) when
    the author is a local pseudonym, a followed moderator (whose statements are never quota'd)
    or vouched for; else :func:`judge_stranger` with the post's encoded size and committed work
    target.  Raises LocalProtocolError if the post is not on the view's board.
    """
    if post.board != view.board:
        raise LocalProtocolError("admit() needs the view of the post's own board")
    if view.blocks(post.id, post.author) is not None:
        return errors.BLOCKED
    if local_author or post.author in view.followed or view.vouched(post.author):
        return None
    return judge_stranger(quota, posts_today=posts_today, bytes_today=bytes_today, size=len(post.raw),
                          work_target=None if post.work is None else post.work[0])
