"""The node's core shared by the server and the command line: the store (on its one writer
thread), the in-memory reconciliation index, and the ingest pipeline that checks posts from
outside before anything is stored.
Longer than 600 lines because NodeCore holds the store's threads (the writer and the read pool)
and the whole ingest pipeline, for one batch and for the coalesced batches of many pushes.

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
import queue
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dazibao.protocol import gossip, limits, posts
from dazibao.protocol.errors import RemoteProtocolError
from dazibao.protocol.keyindex import KeyIndex
from dazibao.protocol.messages import PushResult

from .config import Config, DataDir
from .keys import KeyStore
from .store import IngestResult, Store, StoreError

__all__ = ["StoreThread", "ReadPool", "NodeCore", "IngestReport", "check_batch", "verify_decoded", "chosen_boards"]

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


class ReadPool:
    """Read-only connections to the store, one per thread of a small pool, for the reads that
    serve pages: the member UI, the public view and the gossip read endpoints.

    SQLite in WAL mode lets them read beside the one writer, each read seeing the last commit
    before it began, so a page is not queued behind an ingest batch or a slow query on the
    store thread, and a slow page holds one connection, not all of them.  Writes stay on the
    writer (:class:`StoreThread`).  Where a second connection cannot be opened (a private
    in-memory store, or a store opened exclusively because the disk is full) reads go to the
    writer instead.
    """

    def __init__(self, writer: StoreThread, size: int = limits.READ_POOL_CONNECTIONS) -> None:
        self._writer = writer
        self._size = size
        self._pool: ThreadPoolExecutor | None = None
        # As many connections as threads, so a thread never waits for a free one.
        self._free: queue.SimpleQueue[Store] = queue.SimpleQueue()
        self._stores: list[Store] = []

    async def open(self) -> None:
        """Open the read connections (after the writer, which migrates the file).  If they
        cannot be opened, says so in the log and reads on the writer: slower, never wrong."""
        writer = self._writer._store
        if writer is None or writer.in_memory or writer.exclusive:
            return
        try:
            for _ in range(self._size):
                store = await asyncio.to_thread(Store, writer.path, read_only=True)
                self._stores.append(store)
                self._free.put(store)
        except StoreError as exc:
            log.warning("store: no read connections (%s); pages read on the writer", exc)
            await self.close()
            self._free = queue.SimpleQueue()
            return
        self._pool = ThreadPoolExecutor(max_workers=self._size, thread_name_prefix="dazibao-read")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(store, *args, **kwargs)`` on a read connection; ``fn`` must only read."""
        if self._pool is None:
            return await self._writer.call(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(self._with_store, fn, args, kwargs))

    def _with_store(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        store = self._free.get()
        try:
            return fn(store, *args, **kwargs)
        finally:
            self._free.put(store)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for store in self._stores:
            store.close()
        self._stores.clear()


def _at_cap(store: Store) -> bool:
    try:
        info = store.storage()
    except Exception:  # only for the wording of a log line
        return False
    return bool(info["max_bytes"]) and info["db_bytes"] + (1 << 20) >= info["max_bytes"]


#: A raw post from outside once decoded (``posts.decode_each``): the post, or why it is not one.
Decoded = posts.Post | posts.Undecodable


def verify_decoded(batch: Sequence[posts.Post], now: float) -> list[str | None]:
    """``posts.check_decoded`` of each decoded post (time window and signature): None for a
    valid one, else the code of its refusal."""
    codes: list[str | None] = []
    for post in batch:
        try:
            posts.check_decoded(post, now)
        except RemoteProtocolError as exc:
            codes.append(exc.code)
        else:
            codes.append(None)
    return codes


Verdicts = tuple[list[posts.Post], list[tuple[bytes | None, str]]]


def _spans(parts: Sequence[Sequence[Decoded]]) -> list[list[tuple[bytes, str, bytes, int]]]:
    """What the screen before verification reads of each group: (id, board, author, time)."""
    return [[(p.id, p.board, p.author, p.created_at_ms) for p in part if isinstance(p, posts.Post)]
            for part in parts]


def _screened(parts: Sequence[Sequence[Decoded]], screens: Sequence[dict[bytes, str]]
              ) -> tuple[list[tuple[bytes | None, str] | None], list[posts.Post]]:
    """The refusal of each post that does not decode or that the screen refused (None for the
    others, in batch order), and the posts left to verify."""
    # A post that does not decode is reported without an id here, as check_post's refusals
    # always were (the push answer gives it the id of posts.refused_id).
    verdicts: list[tuple[bytes | None, str] | None] = []
    todo: list[posts.Post] = []
    for part, screen in zip(parts, screens, strict=True):
        for item in part:
            if isinstance(item, posts.Undecodable):
                verdicts.append((None, item.code))
            elif (code := screen.get(item.id)) is not None:
                verdicts.append((item.id, code))
            else:
                verdicts.append(None)
                todo.append(item)
    return verdicts, todo


def _assemble(parts: Sequence[Sequence[Decoded]], screened: Sequence[tuple[bytes | None, str] | None],
              codes: Sequence[str | None]) -> list[Verdicts]:
    """Each group's valid posts and refusals, both in its order (the push answer gives each
    refusal its place), from :func:`_screened` and the codes of verifying what it left."""
    out: list[Verdicts] = []
    left = iter(codes)
    k = 0
    for part in parts:
        good: list[posts.Post] = []
        bad: list[tuple[bytes | None, str]] = []
        for item in part:
            verdict = screened[k]
            k += 1
            if verdict is not None:
                bad.append(verdict)
                continue
            assert isinstance(item, posts.Post)
            code = next(left)
            if code is None:
                good.append(item)
            else:
                bad.append((item.id, code))
        out.append((good, bad))
    return out


def _check_and_store(store: Store, parts: Sequence[Sequence[Decoded]], sources: Sequence[str | None], *,
                     now: float, now_ms: int, boards: Collection[str] | None
                     ) -> tuple[list[Verdicts], list[int], list[IngestResult | BaseException]]:
    """On the store thread: screen, verify and store a small batch of decoded pushes (see
    NodeCore.check_and_ingest): the verdicts of each group, the groups with posts to store, and
    what storing each of those did.  Raises StoreError (the store is full, locked, damaged)."""
    screened, todo = _screened(parts, store.prescreen_each(_spans(parts), now_ms=now_ms))
    verdicts = _assemble(parts, screened, verify_decoded(todo, now))
    live = [i for i, (good, _) in enumerate(verdicts) if good]
    wanted = [(verdicts[i][0], sources[i]) for i in live]
    if not wanted:
        return verdicts, live, []
    try:
        return verdicts, live, list(store.ingest_many(wanted, now_ms=now_ms, boards=boards))
    except StoreError:
        raise
    except Exception:
        if len(wanted) == 1:
            raise
        log.exception("storing %d coalesced batches together failed; storing them one by one", len(wanted))
    results: list[IngestResult | BaseException] = []
    for group in wanted:
        try:
            results.append(store.ingest_many([group], now_ms=now_ms, boards=boards)[0])
        except StoreError:
            raise
        except Exception as exc:
            results.append(exc)
    return verdicts, live, results


def check_batch(raws: Sequence[bytes], now: float) -> tuple[list[posts.Post], list[tuple[bytes | None, str]]]:
    """Check raw posts from outside: the valid ones, and (id or None, code) for the others (the
    id when the bytes decode and then fail the time window or the signature)."""
    good: list[posts.Post] = []
    bad: list[tuple[bytes | None, str]] = []
    for item in posts.decode_each(raws):
        if isinstance(item, posts.Undecodable):
            bad.append((None, item.code))
            continue
        try:
            good.append(posts.check_decoded(item, now))
        except RemoteProtocolError as exc:
            bad.append((item.id, exc.code))
    return good, bad


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
        #: Read-only connections for the pages and gossip reads (:class:`ReadPool`).
        self.reads = ReadPool(self.db)
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
        #: The posts this node holds only in stem state (docs/gossip.md, "Stem, then fluff"):
        #: stored, but kept out of the reconciliation index and out of fetch answers until the
        #: running node releases them (:meth:`release_stems`) once they are fluffed.  Id to
        #: reconciliation key, None while a post offered on a stem is not stored yet.  Read and
        #: changed on the event loop only, and always before the index thread is given a key,
        #: so that no reconciliation ever sees a held post.
        self.stem_held: dict[bytes, bytes | None] = {}
        #: Of those, the ids offered on a stem and not stored by this process, with when they
        #: are let go if they never are (refused, or a copy of a post stored before).
        self._stem_unstored: dict[bytes, int] = {}
        #: Whether the posts of this node's own pseudonyms (another process such as `dazibao
        #: post`, or the member UI) are held when stored: set by the running node when it sends
        #: new posts along a stem.
        self.hold_local = False

    async def open(self) -> None:
        """Open the store, apply the moderation settings and build the reconciliation index."""
        await self.db.open()
        await self.reads.open()
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
        if self.stem_held:
            keys = [k for k in keys if not self._held_key(k)]
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
        await self.reads.close()
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
        return (await self.verify_groups([raws], remember=remember))[0]

    async def verify_groups(self, groups: Sequence[Sequence[bytes]], *, remember: bool = False,
                            decoded: Sequence[Sequence[Decoded]] | None = None
                            ) -> list[tuple[list[posts.Post], list[tuple[bytes | None, str]]]]:
        """:meth:`verify` of each group, with the fixed costs paid once for all of them: one
        decode hop, one store read for the screens, one verification spread over the threads.

        Each group is screened on its own, against the store as it is before any of them is
        stored, exactly as separate concurrent calls of :meth:`verify` would be.  Each post is
        decoded once (``posts.decode_each``, here or by the caller: ``decoded``, one list per
        group, instead of ``groups``); the screen reads its fields and the verify threads check
        the decoded post (``posts.check_decoded``).
        """
        loop = asyncio.get_running_loop()
        parts: list[Sequence[Decoded]]
        if decoded is not None:
            parts = list(decoded)  # ``groups`` is then not read
        else:
            raws = [raw for group in groups for raw in group]
            flat = await loop.run_in_executor(self._verify_pool, posts.decode_each, raws) if raws else []
            parts = []
            start = 0
            for group in groups:
                parts.append(flat[start : start + len(group)])
                start += len(group)
        if not any(parts):
            return [([], []) for _ in parts]
        screens = await self.db.call(Store.prescreen_each, _spans(parts), now_ms=self.now_ms(),
                                     remember=remember and not self.read_only)
        screened, todo = _screened(parts, screens)
        return _assemble(parts, screened, await self._check(todo))

    async def _check(self, batch: Sequence[posts.Post]) -> list[str | None]:
        """:func:`verify_decoded` of ``batch``, spread over the verify threads when it is large."""
        if not batch:
            return []
        now = self.clock()
        loop = asyncio.get_running_loop()
        n = self._verify_threads if len(batch) >= limits.SMALL_PUSH_BATCH_POSTS else 1
        size = -(-len(batch) // n)
        chunks = [batch[i : i + size] for i in range(0, len(batch), size)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._verify_pool, verify_decoded, chunk, now) for chunk in chunks)
        )
        return [code for chunk in results for code in chunk]

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
        result = (await self.ingest_groups([(checked, source)]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def ingest_groups(self, groups: Sequence[tuple[Sequence[posts.Post], str | None]]
                            ) -> list[IngestReport | BaseException]:
        """:meth:`ingest_checked` of each ``(posts, source)`` group, in order, in one write
        transaction (``Store.ingest_many``): the reports are those of one call per group made
        one after the other.

        An error of the store (full, locked, damaged) is raised for all of them.  Any other
        exception while storing several groups is a bug one group may have hit: the groups are
        then stored one by one, and each gets its own report or exception.
        """
        live = [i for i, (checked, _) in enumerate(groups) if checked]
        out: list[IngestReport | BaseException] = [IngestReport([], 0, []) for _ in groups]
        if not live:
            return out
        if any(groups[i][1] == "local" for i in live) and not self.read_only:
            # A pseudonym made a moment ago in the web UI is this node's own: never a stranger.
            await self.sync_identities()
        self.last_ingest = self.clock()
        boards = self.boards or None
        wanted = [(list(groups[i][0]), groups[i][1]) for i in live]
        results: list[IngestResult | BaseException]
        try:
            results = list(await self.db.call(Store.ingest_many, wanted, now_ms=self.now_ms(), boards=boards))
        except StoreError:
            raise
        except Exception:
            if len(wanted) == 1:
                raise
            log.exception("storing %d coalesced batches together failed; storing them one by one", len(wanted))
            results = []
            for group in wanted:
                try:
                    results.append((await self.db.call(Store.ingest_many, [group], now_ms=self.now_ms(),
                                                       boards=boards))[0])
                except StoreError:
                    raise
                except Exception as exc:
                    results.append(exc)
        return await self._after_store(groups, live, results)

    async def check_and_ingest(self, jobs: Sequence[tuple[Sequence[Decoded], str | None]]
                               ) -> list[tuple[Verdicts, IngestReport | BaseException]]:
        """:meth:`verify_groups` of the decoded posts of each ``(decoded, source)`` group, then
        :meth:`ingest_groups` of their valid posts: for each group, its verdicts (valid posts and
        refusals, in order) and its report, or the exception storing it raised.

        A batch of fewer than ``small_push_batch_posts`` posts (most coalesced pushes of one
        post each) is screened, verified and stored in one call on the store thread, since it is
        verified on one thread either way: one hop there and back instead of three, with the
        same verdicts in the same order (libsodium releases the GIL while it verifies, so the
        event loop runs meanwhile).  A larger batch is verified on all the verify threads.
        """
        parts = [decoded for decoded, _ in jobs]
        if sum(map(len, parts)) >= limits.SMALL_PUSH_BATCH_POSTS or any(src == "local" for _, src in jobs):
            verdicts = await self.verify_groups([], decoded=parts)
            reports = await self.ingest_groups([(good, src) for (good, _), (_, src)
                                                in zip(verdicts, jobs, strict=True)])
            return list(zip(verdicts, reports, strict=True))
        verdicts, live, results = await self.db.call(
            _check_and_store, parts, [src for _, src in jobs], now=self.clock(), now_ms=self.now_ms(),
            boards=self.boards or None)
        if live:
            self.last_ingest = self.clock()
        groups = [(good, src) for (good, _), (_, src) in zip(verdicts, jobs, strict=True)]
        return list(zip(verdicts, await self._after_store(groups, live, results), strict=True))

    async def _after_store(self, groups: Sequence[tuple[Sequence[posts.Post], str | None]], live: list[int],
                           results: Sequence[IngestResult | BaseException]) -> list[IngestReport | BaseException]:
        """What follows storing the groups ``live`` of ``groups`` (``results``, in that order):
        the index, the posts older than the board's retention, the callbacks, the reports."""
        out: list[IngestReport | BaseException] = [IngestReport([], 0, []) for _ in groups]
        if not live:
            return out
        stored = [(r, groups[i][1]) for i, r in zip(live, results, strict=True) if not isinstance(r, BaseException)]
        await self.on_index(_update_index_each, [(self._index_keys(r.added, source), self._unhold(r.removed_keys))
                                                 for r, source in stored])
        expired = [p for r, _ in stored for p in r.added if self._expired(p)]
        gone: set[bytes] = set()
        if expired:
            # Older than this node's retention for its board (a mirror): purge it at once, so
            # that it is tombstoned and no later sync fetches it again.
            removed = await self.db.call(Store.delete, [p.id for p in expired], "purged", now_ms=self.now_ms())
            await self._apply([], removed)
            gone = {p.id for p in expired}
        for i, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                out[i] = result
                continue
            added = [p for p in result.added if p.id not in gone]
            if added:
                for callback in self.on_new_posts:
                    # A copy each: a callback may keep or extend its list (the gossip loop
                    # gathers bursts into the first list), and the report must not change.
                    callback(list(added), groups[i][1])
            out[i] = IngestReport(added, result.duplicates, list(result.rejected))
        return out

    def _expired(self, post: posts.Post) -> bool:
        days = self.config.retention_days.get(post.board, 0)
        return days > 0 and post.created_at_ms < self.now_ms() - days * 86_400_000

    async def _apply(self, added: Iterable[Any], removed_keys: Iterable[bytes]) -> None:
        added = list(added)
        await self.on_index(_update_index, [item.key for item in added], self._unhold(removed_keys))

    # --- posts held in stem state (docs/gossip.md, "Stem, then fluff") ------------------------

    def hold_offered(self, ids: Iterable[bytes]) -> None:
        """Hold the posts of a stem push before they are stored: whichever way they are then
        stored (this push, or a sync that races it), their keys stay out of the index until
        :meth:`release_stems`.  Past ``max_stem_posts`` ids waiting to be stored, the rest are
        not held (the gossip policy fluffs them too)."""
        now = self.now_ms()
        for i in ids:
            if i in self.stem_held:
                continue
            if len(self._stem_unstored) >= limits.MAX_STEM_POSTS:
                self.release_stems([u for u, until in self._stem_unstored.items() if until <= now])
                if len(self._stem_unstored) >= limits.MAX_STEM_POSTS:
                    return
            self.stem_held[i] = None
            self._stem_unstored[i] = now + gossip.STEM_EXPECT_MS

    def release_stems(self, ids: Iterable[bytes]) -> asyncio.Future[None] | None:
        """Let held posts into the reconciliation set (they are fluffed now, or never were
        stemmed); the future of the index update, None if there was nothing to add.

        The keys are handed to the index thread at once, before this returns: a reconciliation
        that starts after this call sees them."""
        keys: list[bytes] = []
        for i in ids:
            self._stem_unstored.pop(i, None)
            key = self.stem_held.pop(i, None)
            if key is not None and self.carries(_board_of(key)):
                keys.append(key)
        if not keys:
            return None
        return asyncio.get_running_loop().run_in_executor(
            self._index_pool, lambda: _update_index(self.index, keys, []))

    def release_unstored(self) -> None:
        """Let go of the ids offered on a stem that were never stored here in time."""
        now = self.now_ms()
        late = [i for i, until in self._stem_unstored.items() if until <= now]
        if late:
            self.release_stems(late)

    def _held_key(self, key: bytes) -> bool:
        """Whether ``key``'s post is held in stem state (its key then noted)."""
        pid = key[-32:]
        if pid not in self.stem_held:
            return False
        self.stem_held[pid] = key
        return True

    def _index_keys(self, added: Iterable[posts.Post], source: str | None) -> list[bytes]:
        """The keys of freshly stored posts that join the index now: not those held, nor
        (with ``hold_local``) this node's own, which are held from here on."""
        keys: list[bytes] = []
        for post in added:
            if post.id in self.stem_held or (self.hold_local and source == gossip.LOCAL):
                self.stem_held[post.id] = post.key
                self._stem_unstored.pop(post.id, None)
            else:
                keys.append(post.key)
        return keys

    def _unhold(self, removed_keys: Iterable[bytes]) -> list[bytes]:
        """``removed_keys`` as a list; a held post removed (retracted, purged) is held no more,
        so that its release does not bring its key back."""
        keys = list(removed_keys)
        if self.stem_held:
            for key in keys:
                if self.stem_held.get(key[-32:]) == key:
                    del self.stem_held[key[-32:]]
        return keys

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
            # A held post is not in the index, yet not news either: this process stored it
            # (ingest reports it), or it was offered on a stem.  This node's own posts are held
            # from here on when it sends them along a stem, before any reconciliation sees them.
            fresh = [row for row in fresh if not self._held_key(row.key)]
            if self.hold_local:
                self.stem_held.update((row.id, row.key) for row in fresh)
            await self._apply([row for row in fresh if not self.hold_local], changes.removed_keys)
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


def _update_index_each(index: KeyIndex, changes: list[tuple[list[bytes], list[bytes]]]) -> None:
    # Group by group, in order: a later group may remove a key an earlier one added.
    for added, removed in changes:
        _update_index(index, added, removed)



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
