"""Who may retract what: the retraction rule of docs/protocol.md, "Retraction", as pure functions.

A retraction is a signed post of kind ``retract`` whose ``parent`` names its **target**.  What a
node does with it depends only on what the node knows of the two posts, never on when it
learned it, so this module decides from plain facts (:class:`Known`) and holds no state:

* :func:`judge` is the one decision: given what is known of a retraction and of its target (or
  that the target is unknown), the :class:`Verdict`.  A node's store calls it on every
  retraction it receives, and again for every remembered retraction when its target arrives.
* :func:`settle` is the state every node converges to once it has received a set of posts,
  whatever the order and the batches: which ids are stored, which are tombstoned and why, and
  which retractions still wait for their target.  It is the executable form of the rule's
  promise of order independence; tests hold the node's store to it.

The verdicts:

* a retraction naming a post by **another author** is refused (``retract_not_author``), and so
  is one on **another board** than its target (``retract_wrong_board``); the refusal is final,
  because neither the author nor the board of a post ever changes.  This holds whether the
  target is stored or already tombstoned (a tombstone keeps the author and board for this);
* a retraction of a stored post that is not itself a retraction **applies**: the target is
  removed and its id tombstoned as ``retracted``;
* a retraction of a **retraction**, or of a post already tombstoned, is kept and removes
  nothing: a retraction, once known, stays in force;
* a retraction whose target is **unknown** is kept and **waits**; it is judged again, by the
  same function, when the target arrives.

A fact that is not known (a tombstone written without an author or board) never causes a
refusal: only a known difference does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import RetractionBoardError, RetractionError
from .posts import KIND_RETRACT, Post

__all__ = [
    "TOMBSTONE_RETRACTED",
    "TOMBSTONE_REJECTED",
    "Verdict",
    "Known",
    "judge",
    "Settlement",
    "settle",
]

#: The tombstone reason of a post removed by its author's retraction.
TOMBSTONE_RETRACTED = "retracted"
#: The tombstone reason of a refused retraction (another author's post, or another board).
TOMBSTONE_REJECTED = "rejected"


class Verdict(enum.Enum):
    """What a node does with one retraction, given what it knows of the target."""

    #: Keep the retraction; remove the target and tombstone its id as ``retracted``.
    APPLY = "apply"
    #: Keep the retraction; there is nothing to remove (the target is a retraction, or gone).
    KEEP = "keep"
    #: Keep the retraction and remember it: the target is unknown, judge again when it comes.
    WAIT = "wait"
    #: Refuse the retraction and tombstone its id as ``rejected``: it names another author's post.
    NOT_AUTHOR = RetractionError.code
    #: Refuse the retraction and tombstone its id as ``rejected``: it is on another board.
    WRONG_BOARD = RetractionBoardError.code

    @property
    def refused(self) -> bool:
        """Whether the retraction is refused (its value is then the protocol's error code)."""
        return self in (Verdict.NOT_AUTHOR, Verdict.WRONG_BOARD)


@dataclass(frozen=True, slots=True)
class Known:
    """What a node knows of one post: enough to judge a retraction made by it or naming it.

    ``author`` and ``board`` are None only when a tombstone was written without them; ``kind``
    is None for a tombstoned post (a tombstone does not keep it); ``gone`` is True for a post
    whose id is tombstoned here (retracted, deleted, purged or rejected).
    """

    author: bytes | None
    board: str | None
    kind: str | None = None
    gone: bool = False

    @classmethod
    def of(cls, post: Post) -> Known:
        """What a stored (or arriving) post tells."""
        return cls(post.author, post.board, post.kind)

    @classmethod
    def tombstone(cls, author: bytes | None, board: str | None) -> Known:
        """What the tombstone of a post tells: its author and board, and that it is gone."""
        return cls(author, board, None, gone=True)


def _differ(a: object, b: object) -> bool:
    # Only a known difference refuses: an unknown fact matches anything.
    return a is not None and b is not None and a != b


def judge(retraction: Known, target: Known | None) -> Verdict:
    """The verdict on a retraction, given what is known of its target (None: unknown here).

    The author is compared first, then the board, as
    :func:`dazibao.protocol.posts.check_retraction` does, so a retraction that is wrong on
    both counts is refused as ``retract_not_author``.  Raises nothing.
    """
    if target is None:
        return Verdict.WAIT
    if _differ(retraction.author, target.author):
        return Verdict.NOT_AUTHOR
    if _differ(retraction.board, target.board):
        return Verdict.WRONG_BOARD
    if target.gone or target.kind == KIND_RETRACT:
        return Verdict.KEEP
    return Verdict.APPLY


@dataclass(frozen=True, slots=True)
class Settlement:
    """The state a node reaches once it has received a set of posts (see :func:`settle`).

    ``stored``: the ids kept.  ``tombstones``: id -> ``retracted`` or ``rejected``, for every
    id removed or refused.  ``pending``: ``(target_id, retraction_id)`` for every kept
    retraction whose target is not among the posts.  Every id of the set is in exactly one
    of ``stored`` and ``tombstones``.
    """

    stored: frozenset[bytes]
    tombstones: Mapping[bytes, str]
    pending: frozenset[tuple[bytes, bytes]]


def settle(posts: Iterable[Post]) -> Settlement:
    """The state every node converges to after receiving ``posts``, in any order and batches.

    Each retraction is judged against its target as found among ``posts`` (None when it is
    not there).  Posts with the same id are the same post (the id is a hash of it).  Local
    deletions and purges are not modelled: they are a node's own choice, not the protocol's.
    Raises nothing.
    """
    by_id = {post.id: post for post in posts}
    tombstones: dict[bytes, str] = {}
    pending: set[tuple[bytes, bytes]] = set()
    for post in by_id.values():
        if post.kind != KIND_RETRACT or post.parent is None:
            continue
        target = by_id.get(post.parent)
        verdict = judge(Known.of(post), None if target is None else Known.of(target))
        if verdict.refused:
            tombstones[post.id] = TOMBSTONE_REJECTED
        elif verdict is Verdict.APPLY:
            assert target is not None  # APPLY needs a known target
            # A refused retraction never applies, and APPLY never names a retraction, so the
            # two kinds of tombstone never meet on one id.
            tombstones[target.id] = TOMBSTONE_RETRACTED
        elif verdict is Verdict.WAIT:
            pending.add((post.parent, post.id))
    stored = frozenset(pid for pid in by_id if pid not in tombstones)
    return Settlement(stored, tombstones, frozenset(pending))
