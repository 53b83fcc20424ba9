"""How fast a running node absorbs posts pushed to it over HTTP.

A real node (`dazibao run`, its own process, real SQLite file, 127.0.0.1) receives batches of
signed posts through ``POST /v1/posts`` from this process, two requests in flight.  Its rate is
compared with two baselines measured in the same run on the same posts:

* the raw single-core Ed25519 verify rate (libsodium, the node's verifier);
* the raw ``executemany`` insert rate of the same rows into a bare SQLite table (WAL).

The verify baseline of each node figure is measured again right before and after it (the load of a
shared machine changes during a run).  Measured on a fresh store, and on a store already holding
``prefill`` posts (500,000; quick: 50,000).  The full run also reports the resident memory of a
node holding 1,000,000 posts.  Each node figure comes with the node's CPU time per post (from
/proc).  With ``DAZIBAO_BENCH_PROFILE=FOLDER`` (and py-spy installed) the node is recorded with
py-spy while it ingests, here and in bench/single.py, and the run prints where its CPU went
(decode, screen, verify, store, index, thread hops, HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nacl.bindings

from dazibao.node.store import Store
from dazibao.protocol import identity, limits, messages, posts

BOARDS = ["labor", "劳动法", "news", "overtime", "996", "meetings"]
WORDS = ["workers", "overtime", "contract", "劳动", "加班", "工资", "合同", "strike", "meeting", "rights"]


def make_posts(n: int, seed: int, start_ms: int) -> list[posts.Post]:
    rng = random.Random(seed)
    keys = [identity.SigningKey(rng.randbytes(32)) for _ in range(50)]
    out = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
        out.append(posts.create_post(rng.choice(keys), kind="post", board=rng.choice(BOARDS), body=body,
                                     created_at_ms=start_ms + i * 7))
    return out


def raw_verify_rate(sample: list[posts.Post]) -> float:
    pairs = [(p.signature + posts.POST_SIGNATURE_TAG + p.id, p.author) for p in sample]
    t = time.perf_counter()
    for signed, pk in pairs:
        nacl.bindings.crypto_sign_open(signed, pk)
    return len(pairs) / (time.perf_counter() - t)


def raw_insert_rate(sample: list[posts.Post], folder: Path) -> float:
    db = sqlite3.connect(folder / "raw.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE posts (id BLOB PRIMARY KEY, board TEXT, created_at_ms INTEGER, body TEXT, raw BLOB)")
    rows = [(p.id, p.board, p.created_at_ms, p.body, p.raw) for p in sample]
    t = time.perf_counter()
    for i in range(0, len(rows), 512):
        with db:
            db.executemany("INSERT INTO posts VALUES (?, ?, ?, ?, ?)", rows[i : i + 512])
    rate = len(rows) / (time.perf_counter() - t)
    db.close()
    return rate


def prefill(data: Path, n: int, seed: int) -> None:
    """Store ``n`` valid posts directly (no HTTP), older than the measured ones."""
    store = Store(str(data / "dazibao.db"))
    try:
        start = 1_600_000_000_000
        step = 50_000
        for i in range(0, n, step):
            batch = make_posts(min(step, n - i), seed + i, start + i * 7)
            for j in range(0, len(batch), 5_000):
                store.ingest(batch[j : j + 5_000], source="bench", now_ms=int(time.time() * 1000))
        while store.update_search_index(50_000):
            pass
    finally:
        store.close()


#: The insert triggers that keep the reading tables for writes outside the ingest room
#: (node/store/schema.py, migration 4); the ingest room keeps the tables per batch instead.
READING_INSERT_TRIGGERS = ("board_stats_insert", "threads_insert_post", "threads_insert_reply")


def store_tables_cost(data: Path, folder: Path, n: int, rounds: int) -> dict[str, float]:
    """What keeping ``threads`` and ``board_stats`` costs ``Store.ingest`` into a copy of the
    store in ``data``: ``n`` new posts (a fifth of them replies to stored threads) in batches of
    a push, with the tables kept (as the node does) and with them not kept at all (their insert
    triggers dropped, the per-batch statements skipped), alternately on fresh copies.  Per post:
    wall time, CPU time of this process, and pages written to the WAL (exact, unlike time)."""
    import shutil
    import statistics

    from dazibao.node.store import ingest as ingest_room

    source = data / "dazibao.db"
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    roots = [(bytes(r[0]), r[1]) for r in conn.execute("SELECT id, board FROM threads ORDER BY seq DESC LIMIT 2000")]
    conn.close()
    rng = random.Random(11)
    keys = [identity.SigningKey(rng.randbytes(32)) for _ in range(50)]
    start = int(time.time() * 1000) - 1_800_000
    sample = []
    for i in range(n):
        parent, board = rng.choice(roots) if i % 5 == 0 else (None, rng.choice(BOARDS))
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
        sample.append(posts.create_post(rng.choice(keys), kind="reply" if parent else "post", board=board,
                                        body=body, parent=parent, created_at_ms=start + i * 7))
    keep = ingest_room.keep_reading_tables
    figures: dict[str, list[tuple[float, float, float]]] = {"kept": [], "bare": []}
    try:
        for r in range(rounds):
            for name in ("kept", "bare") if r % 2 == 0 else ("bare", "kept"):
                copy = folder / "tables.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(str(copy) + suffix).unlink(missing_ok=True)
                shutil.copyfile(source, copy)
                store = Store(str(copy), max_bytes=0)
                try:
                    for k, signer in enumerate(keys):  # local pseudonyms: no stranger quota
                        store.add_identity(f"k{k}", signer.public_key, start)
                    if name == "bare":
                        for trigger in READING_INSERT_TRIGGERS:
                            store._conn.execute(f"DROP TRIGGER {trigger}")
                    ingest_room.keep_reading_tables = keep if name == "kept" else (lambda conn, last: None)
                    store._conn.execute("PRAGMA wal_autocheckpoint = 0")
                    wall = cpu = 0.0
                    pages = 0
                    for i in range(0, n, limits.MAX_POSTS_PER_BATCH):
                        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        t, c = time.perf_counter(), time.process_time()
                        store.ingest(sample[i : i + limits.MAX_POSTS_PER_BATCH], source="http://peer.bench",
                                     now_ms=start + n * 7)
                        wall += time.perf_counter() - t
                        cpu += time.process_time() - c
                        pages += store._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                    figures[name].append((wall / n * 1e6, cpu / n * 1e6, pages / n))
                finally:
                    store.close()
    finally:
        ingest_room.keep_reading_tables = keep
    out: dict[str, float] = {}
    for name, rows in figures.items():
        wall, cpu, pages = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"  Store.ingest, reading tables {name:4s}       {1e6 / wall:10.0f} posts/s  "
              f"({wall:.0f} us wall, {cpu:.0f} us CPU, {pages:.2f} WAL pages a post)")
        out.update({f"store_tables_{name}_per_s": round(1e6 / wall, 1), f"store_tables_{name}_cpu_us": round(cpu, 1),
                    f"store_tables_{name}_pages_per_post": round(pages, 3)})
    ratios = [b[0] / k[0] for k, b in zip(figures["kept"], figures["bare"], strict=True)]
    out["ratio_store_tables_kept_to_bare"] = round(statistics.median(ratios), 3)
    print(f"  kept / not kept: {out['ratio_store_tables_kept_to_bare']:.2f} (median of per-round ratios)")
    return out


class NodeUnderTest:
    def __init__(self, data: Path) -> None:
        self.data = data

    def __enter__(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAZIBAO_")}
        env["DAZIBAO_SYNC_INTERVAL_S"] = "3600"
        env["DAZIBAO_LOG_LEVEL"] = "warning"
        (self.data / "node.json").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dazibao.node", "--data-dir", str(self.data), "run",
             "--gossip-listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 600
        while True:
            try:
                self.url = json.loads((self.data / "node.json").read_text())["gossip_url"]
                return self
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the node did not start") from None
                time.sleep(0.1)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def node_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has used so far (Linux /proc): a figure the
    other load of a shared machine changes far less than a rate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled(pid: int, name: str):
    """With ``DAZIBAO_BENCH_PROFILE`` set to a folder, record the node process ``pid`` with py-spy
    while the block runs (raw collapsed stacks, one line a stack, every thread, sampled
    while running or ready to run) into ``FOLDER/NAME.txt``; otherwise do nothing.  py-spy must be installed."""
    folder = os.environ.get("DAZIBAO_BENCH_PROFILE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                            "--threads", "--nonblocking", "-o", str(Path(folder) / f"{name}.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


#: Where the node's CPU goes, by the first of these frames found in a sampled stack (innermost
#: first): the name of the share, and the function names that put a sample in it.
PROFILE_SHARES = (
    ("verify (libsodium)", ("crypto_sign_open",)),
    ("thread hops", ("submit", "set_result", "_write_to_self", "_read_from_self", "run_in_executor", "_worker")),
    ("decode", ("decode_each", "decode_posts", "_decode_push")),
    ("screen", ("prescreen_each",)),
    ("store", ("ingest_many",)),
    ("reconciliation index", ("_update_index", "_update_index_each")),
    ("gossip policy", ("pushed", "_on_new_posts")),
    ("push pipeline on the loop", ("check_and_ingest", "verify_groups", "ingest_groups", "_after_store")),
    ("HTTP, listener and API", ("_handle_request", "finish_response", "data_received", "_read_ready")),
    ("event loop", ("_run_once",)),
)


def profile_shares(path: Path) -> dict[str, float]:
    """The share of the samples of a py-spy raw profile (see :func:`profiled`) in each of
    :data:`PROFILE_SHARES`, the rest as 'other'.  The samples are those of threads running or
    ready to run (not waiting), so the shares split the node's CPU time, with the time a thread
    woken on a loaded machine waits for a core counted where it waits."""
    counts: dict[str, int] = {name: 0 for name, _ in PROFILE_SHARES}
    counts["other"] = 0
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        names = [frame.split(" (", 1)[0] for frame in stack.split(";")[1:]]
        share = next((name for frame in reversed(names) for name, marks in PROFILE_SHARES if frame in marks),
                     "other")
        counts[share] += int(n)
        total += int(n)
    return {name: count / max(total, 1) for name, count in counts.items()}


def print_shares(name: str) -> None:
    """Print the shares of the profile ``name`` recorded by :func:`profiled`, if one was."""
    folder = os.environ.get("DAZIBAO_BENCH_PROFILE")
    if folder and (Path(folder) / f"{name}.txt").exists():
        shares = profile_shares(Path(folder) / f"{name}.txt")
        print(f"    node CPU ({name}): " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))


async def push_all(url: str, sample: list[posts.Post]) -> float:
    batches = [messages.encode_posts([p.raw for p in sample[i : i + limits.MAX_POSTS_PER_BATCH]])
               for i in range(0, len(sample), limits.MAX_POSTS_PER_BATCH)]
    queue = list(reversed(batches))
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            async with session.post(url + "/v1/posts", data=body) as resp:
                result = messages.decode_push_result(await resp.read())
                accepted += result.accepted

    async with aiohttp.ClientSession() as session:
        t = time.perf_counter()
        await asyncio.gather(worker(session), worker(session))
        elapsed = time.perf_counter() - t
    if accepted != len(sample):
        raise RuntimeError(f"node accepted {accepted} of {len(sample)} posts")
    return len(sample) / elapsed


def main(quick: bool) -> dict[str, float]:
    n, n_prefill = (4_000, 50_000) if quick else (20_000, 500_000)
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dazibao-bench-") as tmp:
        folder = Path(tmp)
        now_ms = int(time.time() * 1000) - 3_600_000
        t = time.perf_counter()
        sample = make_posts(n, 1, now_ms)
        print(f"ingest: {n} signed posts made in {time.perf_counter() - t:.1f} s")
        verify = raw_verify_rate(sample)
        insert = raw_insert_rate(sample, folder)
        print(f"  raw single-core verify (libsodium)      {verify:10.0f} posts/s")
        print(f"  raw executemany insert (bare table)     {insert:10.0f} rows/s")
        result.update(raw_verify_per_s=round(verify, 1), raw_insert_per_s=round(insert, 1))

        fresh = folder / "fresh"
        fresh.mkdir()
        with NodeUnderTest(fresh) as node:
            before = raw_verify_rate(sample[:2_000])
            with profiled(node.proc.pid, "ingest_fresh"):
                cpu = node_cpu_s(node.proc.pid)
                rate = asyncio.run(push_all(node.url, sample))
                cpu_us = (node_cpu_s(node.proc.pid) - cpu) / len(sample) * 1e6
            # The machine's load changes during a run: the baseline of each figure is measured
            # right before and right after it, with the node idle, and averaged.
            verify = (before + raw_verify_rate(sample[:2_000])) / 2
        print(f"  node, fresh store                       {rate:10.0f} posts/s  "
              f"= {rate / verify:.2f} x verify ({verify:.0f}/s around it), {rate / insert:.3f} x insert; "
              f"node CPU {cpu_us:.0f} us a post")
        print_shares("ingest_fresh")
        result.update(fresh_posts_per_s=round(rate, 1), fresh_verify_per_s=round(verify, 1),
                      fresh_node_cpu_us_per_post=round(cpu_us, 1),
                      ratio_fresh_to_verify=round(rate / verify, 3),
                      ratio_fresh_to_insert=round(rate / insert, 4))

        full = folder / "full"
        full.mkdir()
        t = time.perf_counter()
        prefill(full, n_prefill, 1000)
        print(f"  prefilled {n_prefill} posts in {time.perf_counter() - t:.0f} s")
        with NodeUnderTest(full) as node:
            before = raw_verify_rate(sample[:2_000])
            with profiled(node.proc.pid, "ingest_prefilled"):
                cpu = node_cpu_s(node.proc.pid)
                rate = asyncio.run(push_all(node.url, sample))
                cpu_us = (node_cpu_s(node.proc.pid) - cpu) / len(sample) * 1e6
            rss = node.rss_mib()
            verify = (before + raw_verify_rate(sample[:2_000])) / 2
        print(f"  node, store holding {n_prefill:>7}            {rate:10.0f} posts/s  "
              f"= {rate / verify:.2f} x verify ({verify:.0f}/s around it), {rate / insert:.3f} x insert; "
              f"resident {rss:.0f} MiB; node CPU {cpu_us:.0f} us a post")
        print_shares("ingest_prefilled")
        result.update(prefilled_posts=n_prefill, prefilled_posts_per_s=round(rate, 1),
                      prefilled_node_cpu_us_per_post=round(cpu_us, 1),
                      prefilled_verify_per_s=round(verify, 1),
                      ratio_prefilled_to_verify=round(rate / verify, 3),
                      ratio_prefilled_to_insert=round(rate / insert, 4),
                      rss_mib_prefilled=round(rss, 1))
        # In-process, on the same prefilled store: what the reading tables cost the store.
        result.update(store_tables_cost(full, folder, 2_000 if quick else 10_000, 2 if quick else 4))
        if not quick:
            # Top the store up to a million posts and see what a node holding them occupies.
            prefill(full, 1_000_000 - n_prefill - n, 5000)
            with NodeUnderTest(full) as node:
                time.sleep(2)
                rss = node.rss_mib()
            print(f"  resident memory of a node holding 1,000,000 posts: {rss:.0f} MiB")
            result["rss_mib_1m_posts"] = round(rss, 1)
    print("  target: fresh and prefilled >= 0.7 x raw single-core verify")
    return result
