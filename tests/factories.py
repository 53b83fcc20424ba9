"""Shared factories for the tests: deterministic keys and posts, and example counts.

Keys come from fixed seeds and posts from fixed times unless told otherwise, so that a failing
test shows the same bytes on every run.  Every post is made by ``posts.create_post``: it is one
any node accepts (use ``signed`` for bytes that break a rule but carry a good signature).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from hypothesis import settings

from dazibao.protocol import posts, wire
from dazibao.protocol.identity import SigningKey

__all__ = ["T0_MS", "key", "make_post", "make_posts", "reply", "retraction", "signed", "examples"]

#: 2023-11-14T22:13:20Z, the time of the spec's worked example.
T0_MS = 1_700_000_000_000


def key(n: int, label: bytes = b"dazibao test key") -> SigningKey:
    """The ``n``-th test key of the family ``label`` (the same key on every run)."""
    return SigningKey(hashlib.sha256(b"%s %d" % (label, n)).digest())


def make_post(signer: SigningKey | None = None, *, kind: str = "post", board: str = "general",
              body: str = "hello", created_at_ms: int = T0_MS, parent: bytes | None = None) -> posts.Post:
    """A signed post (by ``key(0)`` unless ``signer`` is given).  Raises what create_post raises."""
    return posts.create_post(signer or key(0), kind=kind, board=board, body=body,
                             created_at_ms=created_at_ms, parent=parent)


def make_posts(board: str, count: int, *, start_ms: int = T0_MS, step_ms: int = 1000,
               signer: SigningKey | None = None, text: str = "post") -> list[posts.Post]:
    """``count`` posts on ``board``, ``step_ms`` apart from ``start_ms``, bodies numbered."""
    return [make_post(signer, board=board, body=f"{text} {i} on {board}", created_at_ms=start_ms + i * step_ms)
            for i in range(count)]


def reply(parent: posts.Post, body: str = "a reply", *, signer: SigningKey | None = None,
          created_at_ms: int | None = None) -> posts.Post:
    """A reply to ``parent`` on its board, half a second later unless told."""
    at = parent.created_at_ms + 500 if created_at_ms is None else created_at_ms
    return make_post(signer, kind="reply", board=parent.board, body=body, created_at_ms=at, parent=parent.id)


def retraction(target: posts.Post, *, signer: SigningKey | None = None,
               created_at_ms: int | None = None) -> posts.Post:
    """A retraction of ``target`` on its board (by ``key(0)`` unless ``signer`` is given)."""
    at = target.created_at_ms + 1 if created_at_ms is None else created_at_ms
    return make_post(signer, kind="retract", board=target.board, body="", created_at_ms=at, parent=target.id)


def signed(unsigned: Sequence[object], signer: SigningKey | None = None) -> bytes:
    """Correctly signed bytes around any unsigned body, bypassing create_post's checks."""
    pid = posts.post_id(wire.pack(list(unsigned)))
    return wire.pack([list(unsigned), (signer or key(0)).sign(posts.POST_SIGNATURE_TAG + pid)])


def examples(n: int) -> int:
    """``n`` examples under the ``dev`` profile, scaled up under heavier ones (tests/conftest.py):
    the count to write in ``@settings(max_examples=...)``."""
    return max(1, n * settings.default.max_examples // 100)
