"""The node's core shared by the server and the command line: the store (on its one writer
thread), the in-memory reconciliation index, and the ingest pipeline that checks posts from
outside before anything is stored.

The index holds the node's reconciliation set: its stored posts (of the boards it carries),
plus the keys of the refusals and purges marked carried (docs/moderation.md).  Posts a node
refuses by policy are screened before their signature is checked (:meth:`NodeCore.verify`): an
id remembered as refused, or a post whose author a followed moderator blocks on its board,
costs a decode and one store lookup, not a signature verification.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dazibao.protocol import posts
from dazibao.protocol.errors import RemoteProtocolError
from dazibao.protocol.keyindex import KeyIndex
from dazibao.protocol.messages import PushResult

from .config import Config, DataDir
from .keys import KeyStore
from .store import IngestResult, Store, StoreError

__all__ = ["StoreThread", "NodeCore", "IngestReport", "check_batch", "decode_heads", "chosen_boards"]

log = logging.getLogger("dazibao.node")

BOARDS_META = "boards"
T = TypeVar("T")


class StoreThread:
    """Runs every store call on one dedicated thread: SQLite's one writer, off the event loop.

    Keeps track of whether the store is full (:attr:`full`) and says so in one log line when
    that changes, however many writes are refused meanwhile.
    """

    def __init__(self, path: str, *, max_bytes: int | None = None) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dazibao-store")
        self._store: Store | None = None
        #: Whether writes are refused for want of room (the disk, or max_store_bytes).
        self.full = False

    async def open(self) -> None:
        self._store = await self._run(Store, self._path, max_bytes=self._max_bytes, read_only_fallback=True)
        if self._store.full:
            self._note_full()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(store, *args, **kwargs)`` on the store thread."""
        if self._store is None:
            raise RuntimeError("store is not open")
        try:
            return await self._run(fn, self._store, *args, **kwargs)
        finally:
            if self._store is not None and self._store.full != self.full:
                self._note_full()

    def _note_full(self) -> None:
        store = self._store
        assert store is not None
        self.full = store.full
        if not store.full:
            log.warning("storage: there is room again; writes resume")
        elif store.exclusive:
            log.warning("storage full: the disk has no room; the node runs read-only (it serves reads and "
                        "gossip answers, refuses new posts with storage_full, and holds the database "
                        "exclusively, so other dazibao commands cannot open it until it stops)")
        else:
            log.warning("storage full: %s; the node runs read-only (it serves reads and gossip answers, and "
                        "refuses new posts with storage_full until there is room)",
                        "the store reached max_store_bytes" if _at_cap(store) else "the disk has no room")

    async def close(self) -> None:
        if self._store is not None:
            await self._run(self._store.close)
            self._store = None
        self._pool.shutdown(wait=True)


def _at_cap(store: Store) -> bool:
    try:
        info = store.storage()
    except Exception:  # only for the wording of a log line
        return False
    return bool(info["max_bytes"]) and info["db_bytes"] + (1 << 20) >= info["max_bytes"]


Head = tuple[bytes, str, bytes, int]


def decode_heads(raws: Sequence[bytes]) -> list[Head | None]:
    """``(id, board, author, created_at_ms)`` of each raw post that decodes (signature not
    checked), else None."""
    heads: list[Head | None] = []
    for raw in raws:
        try:
            post = posts.decode_post(raw)
        except RemoteProtocolError:
            heads.append(None)
        else:
            heads.append((post.id, post.board, post.author, post.created_at_ms))
    return heads


def check_batch(raws: Sequence[bytes], now: float) -> tuple[list[posts.Post], list[tuple[bytes | None, str]]]:
    """Check raw posts from outside: the valid ones, and (id or None, code) for the others."""
    good: list[posts.Post] = []
    bad: list[tuple[bytes | None, str]] = []
    for raw in raws:
        try:
            good.append(posts.check_post(raw, now))
        except RemoteProtocolError as exc:
            bad.append((_id_of(raw), exc.code))
    return good, bad


def _id_of(raw: bytes) -> bytes | None:
    """The id a malformed post claims, when it can be told; None when not."""
    try:
        return posts.decode_post(raw).id
    except RemoteProtocolError:
        return None


@dataclass
class IngestReport:
    accepted: list[posts.Post]
    duplicates: int
    rejected: list[tuple[bytes | None, str]]

    def as_push_result(self) -> PushResult:
        return PushResult(len(self.accepted), self.duplicates, tuple(self.rejected))


@dataclass
class Counters:
    received: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)


class NodeCore:
    """What one node knows, and the one way posts from outside get into it."""

    def __init__(self, data: DataDir, config: Config, *, clock: Callable[[], float] = time.time,
                 verify_threads: int = 2) -> None:
        self.data = data
        self.config = config
        self.clock = clock
        self.db = StoreThread(str(data.database), max_bytes=getattr(config, "max_store_bytes", None))
        #: The in-memory reconciliation index.  Every read and write of it happens on one
        #: thread of its own (:meth:`on_index`), so that a heavy reconciliation round does not
        #: stall the event loop, and the index is never read while it changes.
        self.index = KeyIndex()
        self._index_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dazibao-index")
        self.counters = Counters()
        self._verify_pool = ThreadPoolExecutor(max_workers=verify_threads, thread_name_prefix="dazibao-verify")
        self._verify_threads = verify_threads
        self._post_seq = 0
        self._tomb_seq = 0
        self._log_seq = 0
        self._data_version: int | None = None
        #: When posts from outside were last stored (clock seconds): search indexing waits
        #: for a quiet moment, so that it does not slow a flood of posts down further.
        self.last_ingest = 0.0
        #: The boards this node carries; empty means every board (docs/running.md, "boards").
        self.boards: frozenset[str] = frozenset(config.boards)
        #: Called with the newly stored posts (from peers, imports or another process).
        self.on_new_posts: list[Callable[[list[posts.Post], str | None], None]] = []

    async def open(self) -> None:
        """Open the store, apply the moderation settings and build the reconciliation index."""
        await self.db.open()
        config = self.config
        await self.db.call(Store.configure_policy, stranger_posts_per_day=config.stranger_posts_per_day,
                           stranger_bytes_per_day=config.stranger_bytes_per_day, require_pow=config.require_pow)
        if not self.read_only:
            try:
                await self.sync_identities()
                await self.db.call(Store.sync_moderators, config.moderators, source="config", now_ms=self.now_ms())
            except ValueError as exc:
                log.warning("moderators setting: %s", exc)
            except StoreError as exc:  # a full disk: the node still serves reads
                log.warning("cannot record the pseudonyms and moderators now: %s", exc)
        self.boards = await self.db.call(chosen_boards, self.config)
        await self._rebuild_index()
        log.info("store open: %d posts", len(self.index))

    async def sync_identities(self) -> bool:
        """Tell the store the local pseudonyms (the key folder): they are followed on every
        board and never held to the stranger quota.  True if they changed."""
        found = await asyncio.to_thread(KeyStore(self.data.keys).list)
        return await self.db.call(Store.sync_identities, [(p.name, p.public_key) for p in found],
                                  now_ms=self.now_ms())

    async def _rebuild_index(self) -> None:
        keys, self._post_seq, self._tomb_seq, self._log_seq = await self.db.call(_load_keys, sorted(self.boards))
        self.index = KeyIndex(keys)

    @property
    def read_only(self) -> bool:
        """Whether the node only serves reads for want of room (see StorageFullError)."""
        return self.db.full

    def carries(self, board: str) -> bool:
        """Whether this node carries ``board`` (every board, when no boards are chosen)."""
        return not self.boards or board in self.boards

    async def set_boards(self, boards: Iterable[str]) -> None:
        """Choose the boards this node carries (empty: every board), remembered in the store.

        Posts of boards no longer carried stay stored but are neither shown to peers nor
        synced; choosing a board again brings them back.  The choice overrides the
        ``boards`` setting of config.toml from then on.
        """
        chosen = frozenset(boards)
        for board in chosen:
            posts.check_board(board)
        await self.db.call(Store.set_meta, BOARDS_META, json.dumps(sorted(chosen), ensure_ascii=False))
        self.boards = chosen
        await self._rebuild_index()

    async def close(self) -> None:
        await self.db.close()
        self._verify_pool.shutdown(wait=True)
        self._index_pool.shutdown(wait=True)

    async def on_index(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(index, *args)`` on the index's own thread (see ``index``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._index_pool, lambda: fn(self.index, *args))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def verify(self, raws: Sequence[bytes], *,
                     remember: bool = False) -> tuple[list[posts.Post], list[tuple[bytes | None, str]]]:
        """Check raw posts on the verify threads (libsodium releases the GIL, so both cores work).

        First the cheap screen: posts whose id is remembered as refused, whose author a
        followed moderator blocks on their board, or whose stranger author has spent today's
        quota there, are refused with that code without their signature being verified (a
        flood of them costs a decode each, not a verification; see ``Store.prescreen``).
        ``remember``: note the blocked ones among them as refused (posts this node asked for,
        or read from a file), so that a sync can carry them; a push is never remembered
        unverified.
        """
        if not raws:
            return [], []
        loop = asyncio.get_running_loop()
        heads = await loop.run_in_executor(self._verify_pool, decode_heads, raws)
        screened = await self.db.call(Store.prescreen, [h for h in heads if h is not None], now_ms=self.now_ms(),
                                      remember=remember and not self.read_only)
        if not screened:
            return await self._check(raws)
        codes = [screened.get(h[0]) if h is not None else None for h in heads]
        good, checked_bad = await self._check([raw for raw, code in zip(raws, codes, strict=True) if code is None])
        # Both lists stay in batch order (the push answer gives each refusal its place).
        bad: list[tuple[bytes | None, str]] = []
        g = b = 0
        for raw, head, code in zip(raws, heads, codes, strict=True):
            if code is not None:
                bad.append((head[0] if head is not None else None, code))
            elif g < len(good) and good[g].raw == raw:
                g += 1
            else:
                bad.append(checked_bad[b])
                b += 1
        return good, bad

    async def _check(self, raws: Sequence[bytes]) -> tuple[list[posts.Post], list[tuple[bytes | None, str]]]:
        now = self.clock()
        loop = asyncio.get_running_loop()
        n = self._verify_threads if len(raws) >= 64 else 1
        size = -(-len(raws) // n) if raws else 0
        chunks = [raws[i : i + size] for i in range(0, len(raws), size)] if size else []
        results = await asyncio.gather(
            *(loop.run_in_executor(self._verify_pool, check_batch, chunk, now) for chunk in chunks)
        )
        good: list[posts.Post] = []
        bad: list[tuple[bytes | None, str]] = []
        for g, b in results:
            good.extend(g)
            bad.extend(b)
        return good, bad

    async def ingest_raw(self, raws: Sequence[bytes], source: str | None) -> IngestReport:
        """Check and store posts from outside.  Invalid posts are reported and never stored."""
        good, bad = await self.verify(raws, remember=True)
        report = await self.ingest_checked(good, source)
        report.rejected = bad + report.rejected
        self.counters.received += len(raws)
        for _, code in report.rejected:
            self.counters.rejected[code] += 1
        return report

    async def ingest_checked(self, checked: Sequence[posts.Post], source: str | None) -> IngestReport:
        """Store posts whose signatures were already checked, and update the index."""
        if not checked:
            return IngestReport([], 0, [])
        if source == "local" and not self.read_only:
            # A pseudonym made a moment ago in the web UI is this node's own: never a stranger.
            await self.sync_identities()
        self.last_ingest = self.clock()
        boards = self.boards or None
        result: IngestResult = await self.db.call(
            Store.ingest, list(checked), source=source, now_ms=self.now_ms(), boards=boards
        )
        await self._apply(result.added, result.removed_keys)
        added = list(result.added)
        expired = [p for p in added if self._expired(p)]
        if expired:
            # Older than this node's retention for its board (a mirror): purge it at once, so
            # that it is tombstoned and no later sync fetches it again.
            removed = await self.db.call(Store.delete, [p.id for p in expired], "purged", now_ms=self.now_ms())
            await self._apply([], removed)
            gone = {p.id for p in expired}
            added = [p for p in added if p.id not in gone]
        if added:
            for callback in self.on_new_posts:
                callback(added, source)
        return IngestReport(added, result.duplicates, list(result.rejected))

    def _expired(self, post: posts.Post) -> bool:
        days = self.config.retention_days.get(post.board, 0)
        return days > 0 and post.created_at_ms < self.now_ms() - days * 86_400_000

    async def _apply(self, added: Iterable[Any], removed_keys: Iterable[bytes]) -> None:
        added = list(added)
        await self.on_index(_update_index, [item.key for item in added], list(removed_keys))

    async def forget_keys(self, keys: Iterable[bytes]) -> None:
        """Remove keys from the index (posts purged or deleted outside of ingest)."""
        await self._apply([], keys)

    async def carry_keys(self, keys: Iterable[bytes]) -> None:
        """Add keys that joined the reconciliation set without a stored post (refusals and
        purges marked carried), for the boards this node carries."""
        keys = [k for k in keys if self.carries(_board_of(k))]
        if keys:
            await self.on_index(_update_index, keys, [])

    async def expire_statements(self) -> None:
        """Apply the moderation statements that expired (the posts they blocked may return)."""
        removed = await self.db.call(Store.expire_statements, now_ms=self.now_ms())
        await self.forget_keys(removed)

    async def index_for_search_when_idle(self, quiet_s: float = 2.0, rows: int = 2_000) -> int:
        """Add a bounded step of stored posts to the full-text index if nothing arrived lately.

        Returns how many posts still wait (0 when up to date or not idle yet).
        """
        if self.clock() - self.last_ingest < quiet_s:
            return 0
        return await self.db.call(Store.update_search_index, rows)

    async def refresh(self) -> None:
        """Catch up with other processes' writes, and with changes of the reconciliation set
        made through the store rather than ingest (a moderator followed from the web UI), if
        there were any (one cheap check).

        The index must be current before it answers a peer: a post that `dazibao post` stored
        a moment ago is part of this node's set.
        """
        version, log_seq = await self.db.call(Store.change_marks)
        if version != self._data_version or log_seq != self._log_seq:
            self._data_version = version
            await self.poll_changes()

    async def poll_changes(self) -> list[posts.Post]:
        """Pick up posts another process (e.g. `dazibao post`) wrote to the same store, and every
        change of the reconciliation set (keys removed into refusals, refusals carried or
        forgotten) made since the last call, by any process."""
        decoded: list[posts.Post] = []
        while True:
            changes = await self.db.call(Store.changes_since, self._post_seq, self._tomb_seq, self._log_seq)
            if changes.log_lost:
                # Another process changed more of the set than the log keeps: read it whole.
                await self._rebuild_index()
                return decoded
            self._post_seq, self._tomb_seq, self._log_seq = changes.post_seq, changes.tomb_seq, changes.log_seq
            carried = [row for row in changes.added if self.carries(row.board)]
            fresh = await self.on_index(lambda index, rows=carried: [row for row in rows if row.key not in index])
            await self._apply(fresh, changes.removed_keys)
            await self.carry_keys(changes.present_keys)
            decoded.extend(row.to_post() for row in fresh)
            if changes.complete:
                break
        if decoded:
            for callback in self.on_new_posts:
                callback(decoded, "local")
        return decoded

    async def carried_boards(self) -> list[str]:
        """The boards this node carries: the chosen ones, or every board it has posts of."""
        if self.boards:
            return sorted(self.boards)
        infos = await self.db.call(Store.boards)
        return sorted(info.board for info in infos)


def _update_index(index: KeyIndex, added: list[bytes], removed: list[bytes]) -> None:
    for key in added:
        index.add(key)
    for key in removed:
        index.remove(key)


def chosen_boards(store: Store, config: Config) -> frozenset[str]:
    """The boards a node carries: the choice stored by the web UI, else the ``boards``
    setting; empty means every board."""
    stored = store.get_meta(BOARDS_META)
    if stored is not None:
        return frozenset(json.loads(stored))
    return frozenset(config.boards)


def _load_keys(store: Store, boards: Sequence[str]) -> tuple[list[bytes], int, int, int]:
    # Remember where the change logs stand *before* reading the keys, so that a change made by
    # another process meanwhile is seen again by poll_changes (each key is placed by what it is
    # then, and adding a key twice is a no-op).
    post_seq, tomb_seq = store.watermark()
    log_seq = store.key_log_seq()
    keys = list(store.iter_keys(boards or None))
    keys += store.iter_extra_keys(boards or None)
    return keys, post_seq, tomb_seq, log_seq


def _board_of(key: bytes) -> str:
    return key[:-41].decode("utf-8")
