"""Shared helpers for the mirror tests: deterministic keys and posts, stores on disk."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from dazibao.node.store import Store
from dazibao.protocol import identity, posts

DAY_MS = 86_400_000


def key(n: int) -> identity.SigningKey:
    return identity.SigningKey(hashlib.sha256(b"mirror test key %d" % n).digest())


def now_ms() -> int:
    return int(time.time() * 1000)


def make_posts(board: str, count: int, *, start_ms: int | None = None, step_ms: int = 1000,
               author: int = 0, text: str = "post") -> list[posts.Post]:
    start = now_ms() - count * step_ms - 60_000 if start_ms is None else start_ms
    return [
        posts.create_post(key(author), kind="post", board=board, body=f"{text} {i} on {board}",
                          created_at_ms=start + i * step_ms)
        for i in range(count)
    ]


def reply(parent: posts.Post, body: str, *, author: int = 1, at_ms: int | None = None) -> posts.Post:
    return posts.create_post(key(author), kind="reply", board=parent.board, body=body,
                             created_at_ms=at_ms if at_ms is not None else parent.created_at_ms + 500,
                             parent=parent.id)


def retraction(target: posts.Post, *, author: int = 0) -> posts.Post:
    return posts.create_post(key(author), kind="retract", board=target.board, body="",
                             created_at_ms=target.created_at_ms + 1, parent=target.id)


def store_with(path: Path, items: list[posts.Post]) -> Store:
    store = Store(path)
    if items:
        result = store.ingest(items, source="local", now_ms=now_ms())
        assert not result.rejected, result.rejected
    return store


def ids_by_board(store: Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in store.iter_rows():
        out.setdefault(row.board, []).append(row.id.hex())
    return {board: sorted(ids) for board, ids in out.items()}
