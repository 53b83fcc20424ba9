"""Shared helpers for the mirror tests: deterministic keys and posts, stores on disk."""

from __future__ import annotations

import time
from pathlib import Path

from dazibao.node.store import Store
from dazibao.protocol import identity, posts
from tests import factories

DAY_MS = 86_400_000


def key(n: int) -> identity.SigningKey:
    return factories.key(n, b"mirror test key")


def now_ms() -> int:
    return int(time.time() * 1000)


def make_posts(board: str, count: int, *, start_ms: int | None = None, step_ms: int = 1000,
               author: int = 0, text: str = "post") -> list[posts.Post]:
    # Recent by default: mirrors keep posts by age, measured from the clock.
    start = now_ms() - count * step_ms - 60_000 if start_ms is None else start_ms
    return factories.make_posts(board, count, start_ms=start, step_ms=step_ms, signer=key(author), text=text)


def reply(parent: posts.Post, body: str, *, author: int = 1, at_ms: int | None = None) -> posts.Post:
    return factories.reply(parent, body, signer=key(author), created_at_ms=at_ms)


def retraction(target: posts.Post, *, author: int = 0) -> posts.Post:
    return factories.retraction(target, signer=key(author))


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
