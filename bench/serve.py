"""How fast a running node serves pages to readers on a large store.

A real node (`dazibao run`, its own process, real SQLite file, 127.0.0.1) serves its public
view and gossip API while this process reads, with 1 and with 8 readers at once:

* **board page 1** (``/b/big``) and a **deep page** (the 500th, or the deepest the board has,
  reached by its cursor link ``?page=N&at=...&after=...``) of the largest board;
* a **thread page** (``/p/<id>``, a thread of 120 replies: the page shows 100);
* **``GET /v1/info``** (what every peer asks at every sync; the node keeps the board part for
  a few seconds, so most answers here are that cache: the uncached cost is the raw figure).

What keeping the reading tables costs ingest is measured by bench/ingest.py (its
``store_tables_*`` figures), where the tables are kept as the node keeps them: once per batch.

Each figure is set against the raw SQL of the same page run on a plain ``sqlite3``
connection to the same file in the same run (the page's queries without HTTP, HTML or the
node), as a ratio.  The queries the pages ran before the maintained tables (grouping every
post of the board, and of the store for ``/v1/info``) are timed raw in the same run too, so
the before/after comparison needs no other machine or day.

Stores: 100,000 and 1,000,000 posts (quick: 20,000 and 100,000), a tenth of them on the board
``big`` (a fifth of those replies), the rest over 99 other boards.  Built once by inserting
signed posts in bulk (the store's triggers keep its tables as on any write), indexed for search
(as the store of a node that has run for a while is), and cached in the system's temporary
folder, keyed by size and a digest of the schema, so reruns start at once.

Each page is asked for at the **same address** again and again (what many readers of one busy
page do: the public view renders it once and serves the kept page until a post is stored) and
at a **new address** each time (a query parameter the page ignores: every request is rendered,
which is what rendering costs).  Beside each figure, the node's CPU per request (all its
threads, from ``/proc``): on two cores, 8 readers at once wait for about 8 times that.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp

from dazibao.node.config import DataDir
from dazibao.node.store import Store
from dazibao.node.store.schema import INSERT_POST, POST_COLUMNS_P
from dazibao.protocol import identity, limits, posts

BIG = "big"
THREADS_PER_PAGE = 25  # node/web/pages/boards.py PAGE_SIZE
DEEP_PAGE = 500
LONG_THREAD_REPLIES = 120
T0_MS = 1_700_000_000_000
_LAYOUT = 1  # bump when the generated store changes, so that an old cache is not used
_WORDS = ["workers", "overtime", "contract", "劳动", "加班", "工资", "合同", "strike", "meeting", "rights"]


# --- building the store ---------------------------------------------------------------------


def _plan(size: int, seed: int) -> list[tuple[int, str, str, int | None, int]]:
    """``(index, kind, board, parent index, created_at_ms)`` of every post, oldest first."""
    rng = random.Random(seed)
    plan: list[tuple[int, str, str, int | None, int]] = []
    big_threads: list[int] = []
    for i in range(size):
        at = T0_MS + i * 1_000
        if i % 10 != 0:
            plan.append((i, "post", f"b{rng.randrange(99):03d}", None, at))
        elif big_threads and rng.random() < 0.2:
            plan.append((i, "reply", BIG, rng.choice(big_threads), at))
        else:
            plan.append((i, "post", BIG, None, at))
            big_threads.append(i)
    # The long thread: an early one, whose replies come last (taken from the other boards).
    long_root = big_threads[min(10, len(big_threads) - 1)]
    for n in range(LONG_THREAD_REPLIES):
        j = size - 2 - n * 10
        plan[j] = (j, "reply", BIG, long_root, plan[j][4])
    return plan


def _sign_chunk(args: tuple[int, list[tuple[int, str, str, int | None, int]], dict[int, bytes]]) -> list[tuple]:
    seed, chunk, parents = args
    rng = random.Random(seed)
    keys = [identity.SigningKey(bytes([k + 1]) * 32) for k in range(50)]
    rows = []
    for index, kind, board, parent, at in chunk:
        body = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 40)))
        post = posts.create_post(keys[index % 50], kind=kind, board=board, body=body, created_at_ms=at,
                                 parent=None if parent is None else parents[parent])
        rows.append((post.id, post.kind, post.board, post.author, post.created_at_ms, post.parent, post.body,
                     post.raw, at, "import"))
    return rows


def _schema_digest() -> str:
    """A short digest of the schema this code creates (tables, indexes, triggers), so that a
    store cached by an older schema is never measured."""
    with Store.memory() as store:
        sql = sorted(str(r[0]) for r in store._conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
    return hashlib.sha256("\n".join(sql).encode()).hexdigest()[:12]


def build_store(size: int) -> Path:
    """The path of a cached store of ``size`` posts, built if it is not there yet."""
    folder = Path(tempfile.gettempdir()) / "dazibao-bench-serve"
    folder.mkdir(exist_ok=True)
    path = folder / f"store-{size}-l{_LAYOUT}-{_schema_digest()}.db"
    if path.exists():
        _index_for_search(path)
        return path
    partial = path.with_suffix(".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    plan = _plan(size, seed=size)
    t = time.perf_counter()
    # The big board's threads first: a reply is signed with its parent's id.
    roots = [p for p in plan if p[1] == "post" and p[2] == BIG]
    root_rows = _sign_chunk((1, roots, {}))
    ids_by_index = {p[0]: row[0] for p, row in zip(roots, root_rows, strict=True)}
    rest = [p for p in plan if not (p[1] == "post" and p[2] == BIG)]
    chunks = [rest[i : i + 5_000] for i in range(0, len(rest), 5_000)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        signed = pool.map(_sign_chunk, [(n + 2, c, ids_by_index) for n, c in enumerate(chunks)])
        store = Store(partial, max_bytes=0)
        try:
            for rows in [root_rows, *signed]:
                with store._write() as conn:
                    conn.executemany(INSERT_POST, rows)
            store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            store.close()  # runs PRAGMA optimize: the planner's statistics, as a node has them
    os.replace(partial, path)
    for suffix in ("-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    print(f"  built a store of {size:,} posts in {time.perf_counter() - t:.0f} s: {path}")
    _index_for_search(path)
    return path


def _index_for_search(path: Path) -> None:
    """Bring the store's full-text index up to date, once, in the cached file.

    Posts inserted in bulk are not indexed for search; a node indexes them a step a second while
    it is idle (node/server.py), which on a store of a million posts would go on through the
    whole measurement and compete with the pages for the two cores.  A node that has run for a
    while has its index up to date, and that is the node measured here.
    """
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        backlog = conn.execute("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'posts'), 0)"
                               " - (SELECT indexed_seq FROM search_state)").fetchone()[0]
    if backlog <= 0:
        return
    t = time.perf_counter()
    store = Store(path, max_bytes=0)
    try:
        while store.update_search_index(20_000):
            pass
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    print(f"  indexed {backlog:,} posts for search in {time.perf_counter() - t:.0f} s: {path}")


# --- the node -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """`dazibao run` on a copy of a cached store, its public view and gossip API on 127.0.0.1."""

    def __init__(self, store: Path, folder: Path) -> None:
        self.data = folder / "node"
        folder = DataDir(self.data)
        folder.create()
        shutil.copyfile(store, folder.database)
        os.chmod(folder.database, 0o600)
        self.view_url = f"http://127.0.0.1:{_free_port()}"

    def __enter__(self) -> Node:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAZIBAO_")}
        env.update(DAZIBAO_SYNC_INTERVAL_S="3600", DAZIBAO_LOG_LEVEL="warning",
                   DAZIBAO_PUBLIC_VIEW_LISTEN=self.view_url.removeprefix("http://"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dazibao.node", "--data-dir", str(self.data), "run",
             "--gossip-listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 600
        while True:
            try:
                self.gossip_url = json.loads((self.data / "node.json").read_text())["gossip_url"]
                return self
            except (OSError, ValueError, KeyError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the node did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- measuring ------------------------------------------------------------------------------


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def http_times(url: str, readers: int, count: int, max_s: float, distinct: bool = False) -> list[float]:
    """Milliseconds of ``count`` GETs of ``url`` by ``readers`` clients at once (fewer if
    ``max_s`` runs out); each answer must be 200.  ``distinct``: each request adds a query
    parameter of its own that the page ignores, so that no two ask for the same address and
    the public view's page cache never answers (every request is rendered)."""
    times: list[float] = []
    left = count
    stop = time.monotonic() + max_s
    sep = "&" if "?" in url else "?"

    async def reader(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0 and time.monotonic() < stop:
            left -= 1
            address = f"{url}{sep}r={left}" if distinct else url
            t = time.perf_counter()
            async with session.get(address) as resp:
                body = await resp.read()
                if resp.status != 200 or len(body) < 200:
                    raise RuntimeError(f"{url}: {resp.status}")
            times.append((time.perf_counter() - t) * 1000)

    async with aiohttp.ClientSession() as session:
        await session.get(url)  # warm: the first answer also opens the connection
        await asyncio.gather(*(reader(session) for _ in range(readers)))
    return times


def sql_times(conn: sqlite3.Connection, queries: list[tuple[str, tuple]], count: int, max_s: float) -> list[float]:
    """Milliseconds of running ``queries`` (all rows fetched) ``count`` times."""
    times: list[float] = []
    stop = time.monotonic() + max_s
    for sql, params in queries:  # warm the page cache as the node's has been
        conn.execute(sql, params).fetchall()
    while len(times) < count and time.monotonic() < stop:
        t = time.perf_counter()
        for sql, params in queries:
            conn.execute(sql, params).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return times


_THREADS_SQL = (f"SELECT {POST_COLUMNS_P}, t.replies, t.last_at_ms FROM threads AS t JOIN posts AS p ON p.seq = t.seq"
                " WHERE t.board = ? {where} ORDER BY t.last_at_ms DESC, t.id DESC LIMIT ?")
_OLD_THREADS_SQL = (f"SELECT {POST_COLUMNS_P}, count(r.seq), max(p.created_at_ms, coalesce(max(r.created_at_ms), 0))"
                    " AS last_at FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'"
                    " WHERE p.board = ? AND p.kind = 'post' GROUP BY p.seq ORDER BY last_at DESC, p.id DESC"
                    " LIMIT ? OFFSET ?")
_INFO_SQL = "SELECT board, last_at_ms FROM board_stats ORDER BY last_at_ms DESC, board LIMIT 1025"
_OLD_INFO_SQL = "SELECT board, count(*), max(created_at_ms) FROM posts GROUP BY board ORDER BY board"
_REPLIES_SQL = ("SELECT seq, id, kind, board, author, created_at_ms, parent, body, raw, received_at_ms, source"
                " FROM posts WHERE parent = ? AND parent IS NOT NULL AND kind = 'reply'"
                " ORDER BY created_at_ms, id LIMIT 101")  # ui_thread_page_replies + 1, as the page reads


def measure(size: int, quick: bool, folder: Path) -> dict[str, float]:
    path = build_store(size)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    threads = conn.execute("SELECT count(*) FROM threads WHERE board = ?", (BIG,)).fetchone()[0]
    deep = max(2, min(DEEP_PAGE, -(-threads // THREADS_PER_PAGE)))
    cursor = conn.execute("SELECT last_at_ms, id FROM threads WHERE board = ? ORDER BY last_at_ms DESC, id DESC"
                          " LIMIT 1 OFFSET ?", (BIG, (deep - 1) * THREADS_PER_PAGE - 1)).fetchone()
    long_root = conn.execute("SELECT id FROM threads WHERE board = ? ORDER BY replies DESC LIMIT 1",
                             (BIG,)).fetchone()[0]
    n_http, n_sql, max_s = (60, 60, 15.0) if quick else (200, 200, 40.0)
    old_reps = 3 if quick else 5
    pages = {
        "board_p1": (f"/b/{BIG}", [(_THREADS_SQL.format(where=""), (BIG, THREADS_PER_PAGE + 1))]),
        "board_deep": (f"/b/{BIG}?page={deep}&at={cursor[0]}&after={bytes(cursor[1]).hex()}",
                       [(_THREADS_SQL.format(where="AND (t.last_at_ms, t.id) < (?, ?)"),
                         (BIG, cursor[0], cursor[1], THREADS_PER_PAGE + 1))]),
        "thread": (f"/p/{bytes(long_root).hex()}",
                   [("SELECT * FROM posts WHERE id = ?", (long_root,)), (_REPLIES_SQL, (long_root,))]),
        "info": ("/v1/info?limits=0", [(_INFO_SQL, ())]),
    }
    old = {
        "board_p1": [(_OLD_THREADS_SQL, (BIG, THREADS_PER_PAGE + 1, 0))],
        "board_deep": [(_OLD_THREADS_SQL, (BIG, THREADS_PER_PAGE + 1, (deep - 1) * THREADS_PER_PAGE))],
        "info": [(_OLD_INFO_SQL, ())],
    }
    out: dict[str, float] = {}
    print(f"store of {size:,} posts, {threads:,} threads on {BIG!r}; deep page = {deep}")
    for name, queries in old.items():
        t = sql_times(conn, queries, old_reps, 120.0)
        out[f"{size}_{name}_before_sql_p50_ms"] = statistics.median(t)
        print(f"  {name:10s} before (old query, raw SQL) p50 {statistics.median(t):9.1f} ms")
    with Node(path, folder / str(size)) as node:
        for name, (url_path, queries) in pages.items():
            raw = sql_times(conn, queries, n_sql, max_s)
            raw_p50, raw_p95 = _p(raw, 0.5), _p(raw, 0.95)
            base = node.gossip_url if name == "info" else node.view_url
            # The same address again and again (what many readers of one busy page do: the
            # public view renders it once, then serves the kept page), and a new address each
            # time (every request rendered: what the rendering itself costs).
            for distinct in ((False,) if name == "info" else (False, True)):
                label = "new address" if distinct else "same"
                for readers in (1, 8):
                    count = n_http * (1 if readers == 1 else 2)
                    if name == "info":
                        # The gossip API lets one address burst max_request_burst requests, then
                        # max_requests_per_s: stay inside, as peers do, after the bucket refills.
                        count = min(count, limits.MAX_REQUEST_BURST // 2)
                        time.sleep(limits.MAX_REQUEST_BURST / limits.MAX_REQUESTS_PER_S)
                    cpu0 = _cpu_s(node.proc.pid)
                    t = asyncio.run(http_times(base + url_path, readers, count, max_s, distinct))
                    cpu = (_cpu_s(node.proc.pid) - cpu0) / len(t) * 1000
                    p50, p95 = _p(t, 0.5), _p(t, 0.95)
                    key = f"{size}_{name}{'_distinct' if distinct else ''}_r{readers}"
                    out.update({f"{key}_p50_ms": p50, f"{key}_p95_ms": p95, f"{key}_p50_over_sql": p50 / raw_p50,
                                f"{key}_node_cpu_ms": cpu})
                    print(f"  {name:10s} {label:11s} {readers} reader{'s' if readers > 1 else ' '}: p50 {p50:7.1f} ms"
                          f"  p95 {p95:7.1f} ms  node CPU {cpu:5.2f} ms/request  ({len(t)} requests; raw SQL p50 "
                          f"{raw_p50:.2f} ms, p95 {raw_p95:.2f} ms; p50 {p50 / raw_p50:.0f}x raw)")
            out[f"{size}_{name}_sql_p50_ms"] = raw_p50
    out.update(body_times(conn, long_root, n_sql))
    conn.close()
    return out


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system, all threads) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body_times(conn: sqlite3.Connection, root: bytes, count: int) -> dict[str, float]:
    """Milliseconds of rendering the bodies of the long thread's first page (Markdown, the
    sanitizer, the language) against taking them from the kept HTML (node/web/bodycache.py),
    in this process."""
    try:
        from dazibao.node.web.bodycache import BodyCache
    except ImportError:  # an older tree measured for a before/after comparison
        return {}
    rows = conn.execute("SELECT id, body FROM posts WHERE id = ? OR (parent = ? AND kind = 'reply')"
                        " ORDER BY created_at_ms LIMIT 101", (root, root)).fetchall()
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(max(3, count // 10)):
        cache = BodyCache()
        t = time.perf_counter()
        for pid, body in rows:
            cache.get(pid, body)
        cold.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        for pid, body in rows:
            cache.get(pid, body)
        warm.append((time.perf_counter() - t) * 1000)
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"  bodies     {len(rows)} bodies of the thread page: rendered {c:.2f} ms, kept {w:.3f} ms ({c / w:.0f}x)")
    return {"bodies_rendered_ms": c, "bodies_kept_ms": w}


def main(quick: bool) -> dict[str, float]:
    sizes = (20_000, 100_000) if quick else (100_000, 1_000_000)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dazibao-serve-") as tmp:
        for size in sizes:
            out.update(measure(size, quick, Path(tmp)))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return out
