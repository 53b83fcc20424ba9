"""How fast search is on a large board, and whether the rest of a node stays responsive meanwhile.

A store with a board ``big`` of 50,000 posts and 50,000 more posts over 49 other boards
(quick: 10,000 and 10,000), English and Chinese text alike, fully indexed.  Measured:

* **board-scoped searches** (``Store.search_page``, the code the search page runs: the page of
  25 hits, their count up to ``max_search_results`` and the thread titles) for a common and a
  rare word, in English and in Chinese, one and two terms, and a two-character Chinese word
  (below the trigram minimum, so found by scanning): p50 and p95 of each;
* against, in the same run on a plain ``sqlite3`` connection to the same file, the **raw FTS
  query** (every match of the words in the whole index, ``SELECT rowid FROM posts_fts WHERE
  posts_fts MATCH ?``): the least work any index-driven search of those words does;
* and, for the record, the **query the page ran before** (the board's rows walked newest first,
  the index asked about each), bounded by the same ``search_timeout_ms`` interrupt;
* **responsiveness**: a real node (`dazibao run` on a copy of the store, its public view on
  127.0.0.1) serves ``/b/big`` alone, then while two clients search the board back to back;
  the page's p50 and p95 latency with searches running, against alone.

The store is built once by inserting signed posts in bulk and cached in the system's temporary
folder, keyed by size and a digest of the schema, so reruns start at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import quote

import aiohttp
from _nodes import NodeProc, free_port  # bench/ is on sys.path (bench/run.py)

from dazibao.node.store import Store
from dazibao.node.store.schema import INSERT_POST, POST_COLUMNS_P
from dazibao.node.store.search import parse_query
from dazibao.protocol import identity, limits, posts

BIG = "big"
T0_MS = 1_700_000_000_000
_LAYOUT = 1  # bump when the generated store changes, so that an old cache is not used
_EN = ["workers", "overtime", "contract", "strike", "meeting", "rights", "wages", "union", "shift", "boss"]
_ZH = ["劳动", "加班", "工资", "合同", "罢工", "会议", "权利", "工会", "老板", "值班"]
_RARE = {"en": "grievance", "zh": "劳动仲裁委员会"}  # in about one post of 1,000
#: (label, query): what members type, punctuation included.
QUERIES = [
    ("en common", "overtime,"),
    ("en rare", "grievance"),
    ("en two words", "unpaid wages"),
    ("zh common", "加班费？"),
    ("zh rare", "劳动仲裁委员会"),
    ("zh two characters", "工资"),
]


def _body(rng: random.Random) -> str:
    if rng.random() < 0.5:
        words = [rng.choice(_EN) for _ in range(rng.randint(10, 40))]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), "unpaid")
        if rng.random() < 0.001:
            words.insert(rng.randrange(len(words)), _RARE["en"])
        return " ".join(words).capitalize() + "."
    words = [rng.choice(_ZH) for _ in range(rng.randint(10, 40))]
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), "加班费")
    if rng.random() < 0.001:
        words.insert(rng.randrange(len(words)), _RARE["zh"])
    return "，".join("".join(words[i : i + 4]) for i in range(0, len(words), 4)) + "。"


def _sign_chunk(args: tuple[int, list[tuple[int, str]]]) -> list[tuple]:
    seed, chunk = args
    rng = random.Random(seed)
    keys = [identity.SigningKey(bytes([k + 1]) * 32) for k in range(50)]
    rows = []
    for index, board in chunk:
        at = T0_MS + index * 1_000
        post = posts.create_post(keys[index % 50], kind="post", board=board, body=_body(rng), created_at_ms=at)
        rows.append((post.id, post.kind, post.board, post.author, post.created_at_ms, post.parent, post.body,
                     post.raw, at, "import"))
    return rows


def _schema_digest() -> str:
    with Store.memory() as store:
        sql = sorted(str(r[0]) for r in store._conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
    return hashlib.sha256("\n".join(sql).encode()).hexdigest()[:12]


def build_store(board_posts: int) -> Path:
    """The path of a cached store with ``board_posts`` posts on ``big`` and as many elsewhere."""
    folder = Path(tempfile.gettempdir()) / "dazibao-bench-search"
    folder.mkdir(exist_ok=True)
    path = folder / f"store-{board_posts}-l{_LAYOUT}-{_schema_digest()}.db"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    t = time.perf_counter()
    plan = [(i, BIG if i % 2 == 0 else f"b{i % 49:02d}") for i in range(2 * board_posts)]
    chunks = [plan[i : i + 5_000] for i in range(0, len(plan), 5_000)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        store = Store(partial, max_bytes=0)
        try:
            for rows in pool.map(_sign_chunk, [(n, c) for n, c in enumerate(chunks)]):
                with store._write() as conn:
                    conn.executemany(INSERT_POST, rows)
            while store.update_search_index(50_000):
                pass
            store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            store.close()
    os.replace(partial, path)
    for suffix in ("-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    print(f"  built a store of {2 * board_posts:,} posts in {time.perf_counter() - t:.0f} s: {path}")
    return path


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _time(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _before(conn: sqlite3.Connection, words: list[str]) -> float:
    """The query the search page ran before: ms, or -1 if ``search_timeout_ms`` interrupted it."""
    match = " ".join('"' + w + '"' for w in words if len(w) >= 3)
    sql = (f"SELECT {POST_COLUMNS_P} FROM posts_fts JOIN posts AS p ON p.seq = posts_fts.rowid"
           " WHERE posts_fts MATCH ? AND p.kind IN ('post', 'reply') AND p.board = ?"
           " ORDER BY p.created_at_ms DESC, p.id DESC LIMIT 26")
    deadline = time.monotonic() + limits.SEARCH_TIMEOUT_MS / 1000
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    t = time.perf_counter()
    try:
        conn.execute(sql, (match, BIG)).fetchall()
    except sqlite3.OperationalError:
        return -1.0
    finally:
        conn.set_progress_handler(None, 0)
    return (time.perf_counter() - t) * 1000


def measure_queries(path: Path, rounds: int) -> dict[str, float]:
    result: dict[str, float] = {}
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    store = Store(path)
    try:
        for label, text in QUERIES:
            query = parse_query(text)
            found = store.search_page(query, BIG, 26)
            ours = _time(lambda q=query: store.search_page(q, BIG, 26), rounds)
            long_terms = [t for t in query.terms if len(t) >= 3]
            line = f"  {label:18} {text!r:16} {found.total:>4}{'+' if found.capped else ' '} hits"
            p50, p95 = _quantiles(ours)
            key = label.replace(" ", "_")
            result[f"{key}_p50_ms"] = round(p50, 2)
            result[f"{key}_p95_ms"] = round(p95, 2)
            line += f"  search p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
            if long_terms:
                match = " ".join('"' + t + '"' for t in long_terms)
                base = _time(lambda m=match: raw.execute(
                    "SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?", (m,)).fetchall(), rounds)
                b50, b95 = _quantiles(base)
                result[f"{key}_p95_vs_raw_fts"] = round(p95 / b95, 2)
                before = _before(raw, long_terms)
                result[f"{key}_before_ms"] = round(before, 1)
                was = f">{limits.SEARCH_TIMEOUT_MS} ms (interrupted)" if before < 0 else f"{before:.0f} ms"
                line += f"  | raw FTS p95 {b95:6.1f} ms (x{p95 / b95:.2f})  | before: {was}"
            print(line)
        worst = max(v for k, v in result.items() if k.endswith("_p95_ms"))
        result["worst_p95_ms"] = round(worst, 2)
        print(f"  worst p95 of a board-scoped search: {worst:.1f} ms (target < 200 ms)")
    finally:
        store.close()
        raw.close()
    return result


async def _page_latencies(url: str, seconds: float, searching: list[str]) -> list[float]:
    """Latencies of GET ``url`` for ``seconds``, while one client per ``searching`` URL searches."""
    stop = time.monotonic() + seconds
    searches = 0

    async def searcher(session: aiohttp.ClientSession, target: str) -> None:
        nonlocal searches
        while time.monotonic() < stop:
            async with session.get(target) as resp:
                await resp.read()
                searches += 1

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(searcher(session, s)) for s in searching]
        out = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)
    if searching:
        print(f"    ({searches} searches meanwhile)")
    return out


def measure_responsiveness(path: Path, seconds: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="dazibao-bench-search-"))
    node = NodeProc("search", work / "node")
    port = free_port()
    try:
        node.configure({"public_view_listen": f"127.0.0.1:{port}", "sync_interval_s": 3600})
        shutil.copy(path, node.db_path)
        node.start()
        deadline = time.monotonic() + 120
        while not node.started():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start: {node.tail()}")
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        page = f"{base}/b/{BIG}"
        searches = [f"{base}/search?q={quote(text)}&board={BIG}" for _, text in QUERIES]
        asyncio.run(_page_latencies(page, 2, []))  # warm up
        alone = asyncio.run(_page_latencies(page, seconds, []))
        busy = asyncio.run(_page_latencies(page, seconds, searches[:2] + searches[3:4]))
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    a50, a95 = _quantiles(alone)
    b50, b95 = _quantiles(busy)
    print(f"  /b/{BIG} alone: p50 {a50:.1f} ms p95 {a95:.1f} ms; while searching: p50 {b50:.1f} ms "
          f"p95 {b95:.1f} ms (x{b50 / a50:.2f} p50, x{b95 / a95:.2f} p95)")
    return {"page_p50_alone_ms": round(a50, 2), "page_p95_alone_ms": round(a95, 2),
            "page_p50_searching_ms": round(b50, 2), "page_p95_searching_ms": round(b95, 2),
            "page_p50_ratio": round(b50 / a50, 2), "page_p95_ratio": round(b95 / a95, 2)}


def main(quick: bool) -> dict[str, float]:
    size = 10_000 if quick else 50_000
    print(f"search: a board of {size:,} posts among {2 * size:,}")
    path = build_store(size)
    result = {"board_posts": float(size)}
    result.update(measure_queries(path, rounds=10 if quick else 40))
    result.update(measure_responsiveness(path, seconds=5 if quick else 20))
    return result
