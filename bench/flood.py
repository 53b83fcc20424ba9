"""A flood of valid posts from fresh keys through a network of real nodes that follow a moderator.

The issue's acceptance, measured with real ``dazibao run`` processes on 127.0.0.1:

* **Flood.**  Five nodes (each its own data folder, port and SQLite file) in a two-way ring,
  default settings except ``allow_private_peers = true``, every node following the moderator
  key M on ``labor`` (``moderators``) and a stranger quota set LOW (``stranger_posts_per_day =
  5``) so that the bound "quota x keys" means something.  An attacker with 1,000 fresh keys
  pushes 100,000 valid signed posts on ``labor`` (100 per key, signed before the timed part)
  into node 0 only, from its own address (127.0.1.1), with ``POST /v1/posts`` in full batches,
  two requests in flight, as fast as the node takes them.  The keys come in waves of 50: each
  wave's posts go round robin over its keys, so keys keep appearing during the flood.  As they
  appear -- once a key's first post is seen stored in node 0's SQLite -- the harness signs a
  ``block author flood`` statement by M and pushes it into node 0 (from 127.0.2.1); gossip
  carries it on.  During the flood, 20 honest posts (half by a key M vouched for before the
  flood, more than the quota; half by strangers under quota) are pushed into random nodes (from
  127.0.3.1) and timed until all five nodes hold them.
* **Afterwards.**  Flood posts stored per node (sampled every 0.25 s, final, and at most ever:
  node 0 stored what it accepted, the others what is still there plus what a block removed; the
  bound is quota x keys), every node's refusals by code, every page of every node's member UI
  board (``GET /b/labor``) searched for the flood's marker, and node 0's CPU time
  (``/proc/PID/stat`` utime + stime, all threads) over the flood divided by the flood posts it
  handled, against single-core Ed25519 verification of the same posts measured in this run, in
  this thread's CPU time (libsodium, the node's verifier; ``check_post``, the whole check of a
  post from outside, is shown too).
* **Reconciliation after the flood.**  ``dazibao sync`` (the node's own sync code, in its own
  process) from each node's data folder to each of its ring peers, through a counting HTTP proxy
  on loopback: reconciliation round trips, HTTP requests, bytes on the wire both ways with
  headers (``GET /v1/info`` included).  Twice: a first sync may mark ids carried (refused ids a
  peer still holds in its set).  And each node against itself before and after (its folder to
  its own running node): one round trip unless the running index drifted from the store.
* **Reconciliation after a retention purge.**  Two nodes both hold 100,000 old posts (and 1 %
  recent ones) on ``archive``, pushed in over HTTP.  The purger is restarted with
  ``retention_days = { archive = 1 }`` and its retention purges the 100,000.  Then the purger's
  folder syncs with the keeper twice (the first sync may cost: it learns which purged ids the
  keeper still holds), and the keeper's folder syncs with the restarted purger once.  Targets:
  1 round trip and under 2 KB for the second sync and the reverse one.

``--quick``: 100 keys x 20 posts, 10,000 posts purged.  Every loop is bounded, every process is
stopped (SIGTERM, then SIGKILL) on the way out, everything stays on 127.0.0.0/8.  Settings the
running code does not know are left out and said so; what then fails is printed and reported as
figures (``*_ok = 0``) rather than hidden.  ``BENCH_FLOOD_KEEP=FOLDER`` keeps the nodes' data
folders and logs there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import http.client
import importlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nacl.bindings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nodes import NodeExited, NodeProc, free_port  # noqa: E402  (bench/ is on sys.path)

from dazibao.node import config as node_config
from dazibao.protocol import identity, limits, messages, posts

BOARD = "labor"
PURGE_BOARD = "archive"
SEED = 11
DAY_MS = 86_400_000
MSGPACK = "application/x-msgpack"
#: Source addresses (all loopback, each its own /24, so that the node's per-address and per-/24
#: rate limits meet each party separately, as they would on a real network).
ATTACKER_ADDRESS = "127.0.1.1"
MODERATOR_ADDRESS = "127.0.2.1"
HONEST_ADDRESS = "127.0.3.1"
LOADER_ADDRESSES = ("127.0.4.1", "127.0.5.1")
#: Bounds on every wait.
START_BOUND_S = 120.0
STOP_BOUND_S = 30.0
HONEST_BOUND_S = 120.0
SETTLE_BOUND_S = 180.0
PURGE_BOUND_S = 900.0
PUSH_BOUND_S = 1800.0
CLI_BOUND_S = 900.0
MAX_UI_PAGES = 400
SAMPLE_S = 0.25
TARGET_CPU_RATIO = 1.5
TARGET_SYNC_ROUNDS = 1
TARGET_SYNC_BYTES = 2048
#: Set to a folder to keep the nodes' data folders and logs there (they are deleted otherwise).
KEEP_ENV = "BENCH_FLOOD_KEEP"
_FILLER = ("workers overtime contract strike meeting rights wages night shift union notice "
           "加班 工资 合同 劳动 罢工").split()


@dataclass(frozen=True)
class Scale:
    nodes: int = 5
    keys: int = 1_000
    per_key: int = 100
    #: Keys that start posting together; a wave's posts go round robin over its keys.
    wave: int = 50
    honest: int = 20
    #: stranger_posts_per_day on every flood node.
    quota: int = 5
    purge: int = 100_000
    purge_authors: int = 1_000
    #: None: the default (30 s), as a node runs unless told otherwise.
    sync_interval_s: int | None = None


FULL = Scale()
QUICK = Scale(keys=100, per_key=20, wave=10, purge=10_000, purge_authors=100)


# --- small helpers ----------------------------------------------------------------------------


def known_settings() -> set[str]:
    return {s.name for s in node_config.SETTINGS}


def supported(settings: dict[str, Any], missing: set[str]) -> dict[str, Any]:
    """``settings`` without those the running code does not know (config.toml refuses unknown
    settings); their names are added to ``missing``."""
    known = known_settings()
    missing.update(k for k in settings if k not in known)
    return {k: v for k, v in settings.items() if k in known}


def ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to a node's store: this process can never write to it."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10,
                           check_same_thread=False)


def has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def count_marked(db: sqlite3.Connection, board: str, marker: str) -> int:
    return int(db.execute("SELECT count(*) FROM posts WHERE board = ? AND instr(body, ?) > 0",
                          (board, marker)).fetchone()[0])


def count_board(db: sqlite3.Connection, board: str) -> int:
    return int(db.execute("SELECT count(*) FROM posts WHERE board = ?", (board,)).fetchone()[0])


class Refused(RuntimeError):
    """A push answered with an HTTP error."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


class Pusher:
    """``POST /v1/posts`` to one node over one kept-alive connection from a chosen source address."""

    def __init__(self, url: str, source: str | None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.source = source
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120,
                                                   source_address=(self.source, 0) if self.source else None)
        return self.conn

    def push_body(self, body: bytes) -> messages.PushResult:
        """Push one encoded PostBatch.  Raises Refused (an HTTP error) or OSError."""
        conn = self._connection()
        try:
            conn.request("POST", "/v1/posts", body=body, headers={"Content-Type": MSGPACK})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status != 200:
            raise Refused(resp.status, data)
        return messages.decode_push_result(data)

    def push(self, raws: Sequence[bytes], attempts: int = 50) -> messages.PushResult:
        """Push posts, waiting and trying again when the node says 429 or 503 (bounded)."""
        body = messages.encode_posts(list(raws))
        for attempt in range(attempts):
            try:
                return self.push_body(body)
            except Refused as exc:
                if exc.status not in (429, 503) or attempt == attempts - 1:
                    raise
            except (OSError, http.client.HTTPException):
                if attempt == attempts - 1:
                    raise
            time.sleep(0.2)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- the node processes -----------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], what: str, bound: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"flood: timed out after {bound:.0f} s waiting for {what}")
        time.sleep(every)


def start_all(nodes: Sequence[NodeProc], peers_of: Callable[[int], Sequence[int]]) -> None:
    """Start the nodes, each told the gossip URLs of ``peers_of(i)``; try again with new ports
    if one exits at once (a port taken meanwhile).  Raises NodeExited or RuntimeError."""
    for attempt in range(3):
        for node in nodes:
            node.port = free_port()
        try:
            for i, node in enumerate(nodes):
                node.start([nodes[j].url for j in peers_of(i)])
            wait_for(lambda: all(n.started() for n in nodes), "the nodes to start", START_BOUND_S)
            return
        except NodeExited:
            stop_all(nodes)
            if attempt == 2:
                raise


def stop_all(nodes: Sequence[NodeProc]) -> None:
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        node.stop()


@contextlib.contextmanager
def stopped_on_exit(nodes: Sequence[NodeProc]) -> Iterator[None]:
    try:
        yield
    finally:
        stop_all(nodes)


# --- counting what a sync costs -----------------------------------------------------------------


@dataclass
class Exchange:
    """One HTTP request and its answer as they crossed the proxy, bytes counted with headers."""

    method: str
    path: str
    request_bytes: int
    response_bytes: int = 0
    status: int = 0


async def _read_message(reader: asyncio.StreamReader, response: bool) -> tuple[bytes, bytes, str] | None:
    """One HTTP/1.1 message: (head, body, first line); None at a clean end of the stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        for _ in range(1_000_000):
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            parts.append(size_line + await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(parts)
    elif response:
        status = int(lines[0].split()[1])
        if status >= 200 and status not in (204, 304):
            body = await reader.read()
    return head, body, lines[0]


class CountingProxy:
    """A loopback HTTP proxy in front of one node that records every exchange (bytes with
    headers, both ways).  Runs its own event loop on a thread; use as a context manager."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flood-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def mark(self) -> int:
        with self._lock:
            return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges[mark:])

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client_w.close()
            return
        pending: collections.deque[Exchange] = collections.deque()

        async def forward_requests() -> None:
            while True:
                msg = await _read_message(client_r, response=False)
                if msg is None:
                    break
                head, body, first = msg
                method, path = (first.split() + ["", ""])[:2]
                exchange = Exchange(method, path, len(head) + len(body))
                pending.append(exchange)
                with self._lock:
                    self.exchanges.append(exchange)
                up_w.write(head + body)
                await up_w.drain()
            if up_w.can_write_eof():
                up_w.write_eof()

        async def forward_responses() -> None:
            while True:
                msg = await _read_message(up_r, response=True)
                if msg is None:
                    break
                head, body, first = msg
                if pending:
                    exchange = pending.popleft()
                    exchange.response_bytes = len(head) + len(body)
                    exchange.status = int(first.split()[1])
                client_w.write(head + body)
                await client_w.drain()

        try:
            await asyncio.gather(forward_requests(), forward_responses())
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            for writer in (up_w, client_w):
                writer.close()


@dataclass
class SyncFigures:
    ok: bool
    error: str = ""
    rounds: int = 0
    reconcile_bytes: int = 0
    requests: int = 0
    reconcile_requests: int = 0
    wire_bytes: int = 0
    reconcile_wire_bytes: int = 0
    received: int = 0
    sent: int = 0
    skipped: int = 0
    skipped_refused: int = 0
    carried: int = 0
    seconds: float = 0.0
    paths: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """Whether the sync met the target: one round trip, under 2 KB on the wire."""
        return self.ok and self.rounds <= TARGET_SYNC_ROUNDS and self.wire_bytes < TARGET_SYNC_BYTES

    def line(self) -> str:
        if not self.ok:
            return f"FAILED: {self.error}"
        return (f"{self.rounds} reconcile round trip(s), {self.requests} HTTP requests "
                f"({', '.join(self.paths)}), {self.wire_bytes} bytes on the wire with headers "
                f"({self.reconcile_wire_bytes} of them /v1/reconcile; reconcile messages alone "
                f"{self.reconcile_bytes}); moved: received {self.received}, sent {self.sent}, "
                f"skipped {self.skipped} tombstoned and {self.skipped_refused} refused, {self.carried} marked "
                f"carried; {self.seconds:.1f} s")

    def figures(self, prefix: str) -> dict[str, float]:
        out: dict[str, float] = {f"{prefix}_ok": int(self.ok)}
        if self.ok:
            out.update({f"{prefix}_rounds": self.rounds, f"{prefix}_requests": self.requests,
                        f"{prefix}_bytes": self.wire_bytes, f"{prefix}_reconcile_wire_bytes": self.reconcile_wire_bytes,
                        f"{prefix}_reconcile_message_bytes": self.reconcile_bytes,
                        f"{prefix}_received": self.received, f"{prefix}_sent": self.sent,
                        f"{prefix}_skipped": self.skipped, f"{prefix}_carried": self.carried})
        return out


def measured_sync(data: Path, proxy: CountingProxy) -> SyncFigures:
    """One ``dazibao sync`` from ``data`` to the node behind ``proxy``, in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAZIBAO_")}
    env["DAZIBAO_LOG_LEVEL"] = "warning"
    mark = proxy.mark()
    t = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "dazibao.node", "--data-dir", str(data), "sync",
                               proxy.url, "--json"], capture_output=True, text=True, env=env, timeout=CLI_BOUND_S)
    except subprocess.TimeoutExpired:
        return SyncFigures(False, f"dazibao sync did not end within {CLI_BOUND_S:.0f} s")
    seconds = time.monotonic() - t
    if proc.returncode != 0:
        return SyncFigures(False, (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return SyncFigures(False, f"dazibao sync printed no JSON: {proc.stdout[:200]!r}")
    exchanges = proxy.since(mark)
    recon = [e for e in exchanges if e.path.startswith("/v1/reconcile")]
    return SyncFigures(
        ok=True, rounds=int(report.get("rounds", 0)),
        reconcile_bytes=int(report.get("reconcile_bytes_sent", 0)) + int(report.get("reconcile_bytes_received", 0)),
        requests=len(exchanges), reconcile_requests=len(recon),
        wire_bytes=sum(e.request_bytes + e.response_bytes for e in exchanges),
        reconcile_wire_bytes=sum(e.request_bytes + e.response_bytes for e in recon),
        received=int(report.get("received", 0)), sent=int(report.get("sent", 0)),
        skipped=int(report.get("skipped_tombstoned", 0)), skipped_refused=int(report.get("skipped_refused", 0)),
        carried=int(report.get("carried", 0)), seconds=seconds,
        paths=[f"{e.method} {e.path.split('?')[0]}" for e in exchanges])


# --- the posts ----------------------------------------------------------------------------------


def _body(rng: random.Random, head: str, size: int) -> str:
    words = [head]
    length = len(head.encode())
    while length < size:
        word = rng.choice(_FILLER)
        words.append(word)
        length += len(word.encode()) + 1
    return " ".join(words)


def make_flood(scale: Scale, keys: Sequence[identity.SigningKey], marker: str, rng: random.Random,
               start_ms: int) -> list[posts.Post]:
    """The attacker's posts, in the order they are pushed: waves of ``scale.wave`` keys, each
    wave's posts round robin over its keys.  Dated in the recent past, one ms apart."""
    order = [(k, j) for w in range(0, len(keys), scale.wave)
             for j in range(scale.per_key) for k in range(w, min(w + scale.wave, len(keys)))]
    first_ms = start_ms - len(order) - 1000
    return [posts.create_post(keys[k], kind="post", board=BOARD, created_at_ms=first_ms + n,
                              body=_body(rng, f"{marker} k{k} p{j}", rng.randint(80, 400)))
            for n, (k, j) in enumerate(order)]


def _moderation() -> Any:
    try:
        return importlib.import_module("dazibao.protocol.moderation")
    except ImportError:
        return None


def statement(key: identity.SigningKey, action: str, target: bytes, reason: str) -> posts.Post:
    """A moderation statement by ``key`` about author ``target`` on BOARD (contract 1a)."""
    now_ms = int(time.time() * 1000)
    moderation = _moderation()
    if moderation is not None:
        made: posts.Post = moderation.create_statement(key, board=BOARD, action=action, subject="author",
                                                       target=target, reason=reason, created_at_ms=now_ms)
        return made
    # The same bytes by hand, for a protocol/ that does not have moderation.py yet.
    return posts.create_post(key, kind="moderation", board=BOARD, body=f"{action} author {reason}",
                             created_at_ms=now_ms, parent=target)


@dataclass
class Baseline:
    """Single-core rates (per second) on the same posts, in interleaved rounds: raw libsodium
    verification and the whole check of a post from outside (``check_post``), each timed both in
    this thread's CPU time (comparable with a node's CPU time: waiting for a busy machine's cores
    enters neither) and in wall-clock time (comparable with the flood's intake rate)."""

    verify_cpu: list[float] = field(default_factory=list)
    check_cpu: list[float] = field(default_factory=list)
    verify_wall: list[float] = field(default_factory=list)

    def measure(self, sample: Sequence[posts.Post], rounds: int = 5) -> None:
        pairs = [(p.signature + posts.POST_SIGNATURE_TAG + p.id, p.author) for p in sample]
        raws = [p.raw for p in sample]
        now = time.time() + 60
        open_ = nacl.bindings.crypto_sign_open
        check = posts.check_post

        def verify_loop() -> int:
            for signed, pk in pairs:
                open_(signed, pk)
            return len(pairs)

        def check_loop() -> int:
            for raw in raws:
                check(raw, now)
            return len(raws)

        for r in range(rounds):
            for name in (("verify", "check") if r % 2 == 0 else ("check", "verify")):
                gc.collect()
                gc.disable()
                try:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    n = verify_loop() if name == "verify" else check_loop()
                    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                finally:
                    gc.enable()
                if name == "verify":
                    self.verify_cpu.append(n / cpu)
                    self.verify_wall.append(n / wall)
                else:
                    self.check_cpu.append(n / cpu)


# --- the parties of the flood -----------------------------------------------------------------


class FloodPush:
    """The attacker: pre-encoded batches pushed into one node, ``workers`` requests in flight."""

    def __init__(self, url: str, batches: list[bytes], workers: int = 2) -> None:
        self.url = url
        self.batches = batches
        self.workers = workers
        self.done = 0
        self.accepted = 0
        self.duplicates = 0
        self.codes: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.retries = 0
        self._next = 0
        self._lock = threading.Lock()

    def progress(self) -> float:
        return self.done / max(1, len(self.batches))

    def _worker(self) -> None:
        pusher = Pusher(self.url, ATTACKER_ADDRESS)
        try:
            while True:
                with self._lock:
                    if self._next >= len(self.batches) or len(self.errors) > 10:
                        return
                    body = self.batches[self._next]
                    self._next += 1
                result = None
                for _ in range(100):
                    try:
                        result = pusher.push_body(body)
                        break
                    except Refused as exc:
                        if exc.status not in (429, 503):
                            with self._lock:
                                self.errors.append(str(exc))
                            break
                    except (OSError, http.client.HTTPException) as exc:
                        with self._lock:
                            self.errors.append(f"{type(exc).__name__}: {exc}")
                    with self._lock:
                        self.retries += 1
                    time.sleep(0.1)
                with self._lock:
                    self.done += 1
                    if result is not None:
                        self.accepted += result.accepted
                        self.duplicates += result.duplicates
                        self.codes.update(code for _, code in result.rejected)
        finally:
            pusher.close()

    def run(self) -> float:
        threads = [threading.Thread(target=self._worker, name=f"flood-push-{i}", daemon=True)
                   for i in range(self.workers)]
        t = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=PUSH_BOUND_S)
        return time.monotonic() - t


class Moderator(threading.Thread):
    """Blocks each attacker key once its first post is seen stored on node 0 ("as they appear")."""

    def __init__(self, node: NodeProc, key: identity.SigningKey, attackers: set[bytes], start_seq: int) -> None:
        super().__init__(name="flood-moderator", daemon=True)
        self.node, self.key, self.attackers, self.start_seq = node, key, attackers, start_seq
        self.stop = threading.Event()
        self.seen: dict[bytes, float] = {}
        self.pushed = 0
        self.accepted = 0
        self.codes: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.reaction_s: list[float] = []

    def run(self) -> None:
        db = ro(self.node.db_path)
        pusher = Pusher(self.node.url, MODERATOR_ADDRESS)
        last = self.start_seq
        deadline = time.monotonic() + PUSH_BOUND_S + SETTLE_BOUND_S
        try:
            while time.monotonic() < deadline:
                rows = db.execute("SELECT seq, author FROM posts WHERE seq > ? ORDER BY seq LIMIT 50000",
                                  (last,)).fetchall()
                if rows:
                    last = rows[-1][0]
                now = time.monotonic()
                fresh = []
                for _, author in rows:
                    if author in self.attackers and author not in self.seen:
                        self.seen[author] = now
                        fresh.append(author)
                for i in range(0, len(fresh), limits.MAX_POSTS_PER_BATCH):
                    chunk = fresh[i : i + limits.MAX_POSTS_PER_BATCH]
                    made = [statement(self.key, "block", author, "flood") for author in chunk]
                    try:
                        result = pusher.push([p.raw for p in made])
                    except (Refused, OSError, http.client.HTTPException) as exc:
                        self.errors.append(str(exc))
                        continue
                    self.pushed += len(made)
                    self.accepted += result.accepted
                    self.codes.update(code for _, code in result.rejected)
                    done = time.monotonic()
                    self.reaction_s += [done - self.seen[a] for a in chunk]
                if self.stop.is_set() and not rows:
                    return
                time.sleep(0.05)
        finally:
            pusher.close()
            db.close()


class Sampler(threading.Thread):
    """The most flood posts each node held at once (every SAMPLE_S seconds)."""

    def __init__(self, nodes: Sequence[NodeProc], marker: str) -> None:
        super().__init__(name="flood-sampler", daemon=True)
        self.nodes, self.marker = nodes, marker
        self.peak = [0] * len(nodes)
        self.stop = threading.Event()

    def run(self) -> None:
        dbs = [ro(n.db_path) for n in self.nodes]
        deadline = time.monotonic() + PUSH_BOUND_S + SETTLE_BOUND_S
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                for i, db in enumerate(dbs):
                    self.peak[i] = max(self.peak[i], count_marked(db, BOARD, self.marker))
                self.stop.wait(SAMPLE_S)
        finally:
            for db in dbs:
                db.close()


@dataclass
class HonestResult:
    token: str
    node: int
    vouched: bool
    pushed_ms: float
    spread_s: float | None = None
    refused: str = ""


class Honest(threading.Thread):
    """Honest posts pushed into random nodes while the flood runs (at evenly spread points of its
    progress), each timed until every node holds it: from just before its push to the latest
    ``received_at_ms`` the nodes stored it with (one machine, one clock)."""

    def __init__(self, nodes: Sequence[NodeProc], vouched: identity.SigningKey,
                 strangers: Sequence[identity.SigningKey], count: int, run_id: str, rng: random.Random,
                 progress: Callable[[], float]) -> None:
        super().__init__(name="flood-honest", daemon=True)
        self.nodes, self.progress = nodes, progress
        self.plan = [((i + 0.5) / count, rng.randrange(len(nodes)), i % 2 == 0) for i in range(count)]
        self.vouched, self.strangers, self.run_id = vouched, list(strangers), run_id
        self.results: list[HonestResult] = []
        self.errors: list[str] = []
        self.rng = rng

    def run(self) -> None:
        dbs = [ro(n.db_path) for n in self.nodes]
        pushers = [Pusher(n.url, HONEST_ADDRESS) for n in self.nodes]
        pending: dict[bytes, tuple[HonestResult, float]] = {}
        deadline = time.monotonic() + PUSH_BOUND_S + HONEST_BOUND_S
        try:
            i = 0
            while (i < len(self.plan) or pending) and time.monotonic() < deadline:
                if i < len(self.plan) and self.progress() >= self.plan[i][0]:
                    _, node, vouched = self.plan[i]
                    key = self.vouched if vouched else self.strangers.pop()
                    token = f"honest{self.run_id}n{i}"
                    post = posts.create_post(key, kind="post", board=BOARD, created_at_ms=int(time.time() * 1000),
                                             body=_body(self.rng, f"{token} an honest post during the flood", 120))
                    result = HonestResult(token, node, vouched, time.time() * 1000)
                    self.results.append(result)
                    try:
                        answer = pushers[node].push([post.raw])
                        if answer.accepted == 1:
                            pending[post.id] = (result, time.monotonic())
                        else:
                            result.refused = ",".join(c for _, c in answer.rejected) or "duplicate"
                    except (Refused, OSError, http.client.HTTPException) as exc:
                        result.refused = str(exc)
                    i += 1
                    continue
                for pid, (result, at) in list(pending.items()):
                    stamps = [db.execute("SELECT received_at_ms FROM posts WHERE id = ?", (pid,)).fetchone()
                              for db in dbs]
                    if all(s is not None for s in stamps):
                        result.spread_s = max(0.0, max(s[0] for s in stamps if s) - result.pushed_ms) / 1000
                        del pending[pid]
                    elif time.monotonic() - at > HONEST_BOUND_S:
                        del pending[pid]
                time.sleep(0.02)
        finally:
            for p in pushers:
                p.close()
            for db in dbs:
                db.close()


def ui_scan(node: NodeProc, marker: str, tokens: Sequence[str]) -> tuple[int, set[str], int]:
    """Every page of the board in the node's member UI: how often the flood's marker appears,
    which honest tokens appear, and how many pages there were."""
    hits, seen = 0, set()
    for page in range(1, MAX_UI_PAGES + 1):
        url = node.ui_url + "b/" + BOARD + (f"?page={page}" if page > 1 else "")
        with urllib.request.urlopen(url, timeout=60) as resp:
            html = resp.read().decode("utf-8", "replace")
        hits += html.count(marker)
        seen |= {t for t in tokens if t in html}
        if f"?page={page + 1}" not in html:
            return hits, seen, page
    return hits, seen, MAX_UI_PAGES


def refusals_by_code(db: sqlite3.Connection) -> dict[str, int]:
    if not has_table(db, "refusals"):
        return {}
    return {code: n for code, n in db.execute("SELECT code, count(*) FROM refusals GROUP BY code")}


def carried_counts(db: sqlite3.Connection) -> tuple[int, int]:
    """Refused and purged ids this node keeps in its reconciliation set (marked carried)."""
    refusals = tombstones = 0
    if has_table(db, "refusals") and "carried" in {r[1] for r in db.execute("PRAGMA table_info(refusals)")}:
        refusals = int(db.execute("SELECT count(*) FROM refusals WHERE carried = 1").fetchone()[0])
    if "carried" in {r[1] for r in db.execute("PRAGMA table_info(tombstones)")}:
        tombstones = int(db.execute("SELECT count(*) FROM tombstones WHERE carried = 1").fetchone()[0])
    return refusals, tombstones


def statements_on(db: sqlite3.Connection, moderator: bytes) -> int:
    return int(db.execute("SELECT count(*) FROM posts WHERE board = ? AND kind = 'moderation' AND author = ?",
                          (BOARD, moderator)).fetchone()[0])


def self_check(nodes: Sequence[NodeProc], when: str) -> int:
    """How many nodes' running reconciliation index differs from the set their own store gives:
    a sync from each node's folder to the node itself must take one round trip."""
    drifted = 0
    for node in nodes:
        with CountingProxy(node.url) as proxy:
            figures = measured_sync(node.data, proxy)
        if not figures.ok or figures.rounds != 1:
            drifted += 1
            print(f"    {node.name}'s running index differs from its store ({when}): {figures.line()}")
    print(f"  running index = stored set on {len(nodes) - drifted} of {len(nodes)} nodes {when} "
          "(a sync from each node's folder to the node itself)")
    return drifted


# --- the flood ----------------------------------------------------------------------------------


def run_flood(scale: Scale, folder: Path, rng: random.Random, missing: set[str]) -> dict[str, float]:
    result: dict[str, float] = {}
    run_id = rng.randbytes(4).hex()
    marker = f"floodmark{run_id}"
    n_flood = scale.keys * scale.per_key
    bound = scale.quota * scale.keys
    attackers = [identity.SigningKey(rng.randbytes(32)) for _ in range(scale.keys)]
    mod_key = identity.SigningKey(rng.randbytes(32))
    vouched = identity.SigningKey(rng.randbytes(32))
    strangers = [identity.SigningKey(rng.randbytes(32)) for _ in range(scale.honest)]
    print(f"flood: {scale.nodes} real nodes on 127.0.0.1 in a two-way ring; an attacker with {scale.keys} fresh keys "
          f"pushes {n_flood} valid posts ({scale.per_key} per key, waves of {scale.wave} keys) into node 0; "
          f"stranger quota {scale.quota} posts/day, so at most {bound} flood posts per node")

    t = time.perf_counter()
    flood = make_flood(scale, attackers, marker, rng, int(time.time() * 1000))
    sign_s = time.perf_counter() - t
    batches = [messages.encode_posts([p.raw for p in flood[i : i + limits.MAX_POSTS_PER_BATCH]])
               for i in range(0, len(flood), limits.MAX_POSTS_PER_BATCH)]
    print(f"  signed {n_flood} posts in {sign_s:.1f} s ({n_flood / sign_s:.0f}/s, before the timed part); "
          f"{len(batches)} batches of up to {limits.MAX_POSTS_PER_BATCH}")
    sample = flood[:: max(1, len(flood) // 5000)][:5000]
    baseline = Baseline()
    baseline.measure(sample)
    result.update(nodes=scale.nodes, keys=scale.keys, posts_per_key=scale.per_key, flood_posts=n_flood,
                  quota_posts_per_day=scale.quota, bound_quota_x_keys=bound, sign_s=round(sign_s, 2),
                  sign_per_s=round(n_flood / sign_s, 1))

    wanted: dict[str, Any] = {"allow_private_peers": True, "stranger_posts_per_day": scale.quota,
                              "moderators": {BOARD: [mod_key.public_key.hex()]}}
    if scale.sync_interval_s is not None:
        wanted["sync_interval_s"] = scale.sync_interval_s
    settings = supported(wanted, missing)
    nodes = [NodeProc(f"node{i}", folder / f"node{i}") for i in range(scale.nodes)]
    for node in nodes:
        node.configure(settings)
    n = scale.nodes

    def ring(i: int) -> list[int]:
        return sorted({(i + 1) % n, (i - 1) % n} - {i})

    with stopped_on_exit(nodes):
        t = time.monotonic()
        start_all(nodes, ring)
        dbs = [ro(node.db_path) for node in nodes]
        wait_for(lambda: all(db.execute("SELECT 1 FROM peers WHERE last_ok_at_ms IS NOT NULL").fetchone()
                             for db in dbs), "every node's first sync", START_BOUND_S)
        print(f"  started, every node synced once: {time.monotonic() - t:.1f} s")

        # Before the flood: M vouches for one honest author, and the vouch reaches every node.
        vouch = statement(mod_key, "vouch", vouched.public_key, "trusted")
        with contextlib.closing(Pusher(nodes[0].url, MODERATOR_ADDRESS)) as once:
            answer = once.push([vouch.raw])
        if answer.accepted != 1:
            print(f"  the vouch was refused: {answer.rejected}")
        else:
            try:
                wait_for(lambda: all(db.execute("SELECT 1 FROM posts WHERE id = ?", (vouch.id,)).fetchone()
                                     for db in dbs), "the vouch to reach every node", HONEST_BOUND_S)
            except RuntimeError as exc:
                print(f"  {exc}")

        start_seq = int(dbs[0].execute("SELECT coalesce(max(seq), 0) FROM posts").fetchone()[0])
        pusher = FloodPush(nodes[0].url, batches)
        moderator = Moderator(nodes[0], mod_key, {k.public_key for k in attackers}, start_seq)
        sampler = Sampler(nodes, marker)
        honest = Honest(nodes, vouched, strangers, scale.honest, run_id, rng, pusher.progress)
        idle0 = nodes[0].cpu_s()
        time.sleep(2.0)
        idle_rate = (nodes[0].cpu_s() - idle0) / 2.0
        for thread in (moderator, sampler, honest):
            thread.start()
        cpu0 = nodes[0].cpu_s()
        cpu_all = sum(node.cpu_s() for node in nodes)
        flood_s = pusher.run()
        cpu0 = nodes[0].cpu_s() - cpu0
        cpu_all = sum(node.cpu_s() for node in nodes) - cpu_all
        for node in nodes:
            node.alive()
        print(f"  flood pushed in {flood_s:.1f} s ({n_flood / flood_s:.0f} posts/s); node 0 used {cpu0:.1f} CPU s "
              f"(idle before: {idle_rate * 100:.1f} % of a core); attacker answers: accepted {pusher.accepted}, "
              f"duplicates {pusher.duplicates}, refused {dict(pusher.codes.most_common())}, "
              f"retries after 429/503 {pusher.retries}")
        if pusher.errors:
            print(f"  attacker push errors: {pusher.errors[:3]}")

        honest.join(timeout=HONEST_BOUND_S + 30)
        # Settle: every block the moderator pushed is on every node, and the flood counts stop moving.
        moderator.stop.set()
        moderator.join(timeout=SETTLE_BOUND_S)
        expected = moderator.accepted
        t = time.monotonic()
        stable_since, last = time.monotonic(), [-1] * n
        settled = False
        while time.monotonic() - t < SETTLE_BOUND_S:
            counts = [count_marked(db, BOARD, marker) for db in dbs]
            if counts != last:
                stable_since, last = time.monotonic(), counts
            statements_ok = all(statements_on(db, mod_key.public_key) >= expected + (answer.accepted == 1)
                                for db in dbs)
            if statements_ok and (all(c == 0 for c in counts) or time.monotonic() - stable_since > 5):
                settled = True
                break
            time.sleep(0.25)
        sampler.stop.set()
        sampler.join(timeout=10)
        print(f"  settled {'in' if settled else 'NOT within'} {time.monotonic() - t:.1f} s after the flood; "
              f"blocks pushed {moderator.pushed}, accepted {moderator.accepted}, refused "
              f"{dict(moderator.codes)}; harness reaction to a new key median "
              f"{statistics.median(moderator.reaction_s) * 1000 if moderator.reaction_s else 0:.0f} ms")
        if moderator.errors:
            print(f"  moderator push errors: {moderator.errors[:3]}")

        final = [count_marked(db, BOARD, marker) for db in dbs]
        refusals = [refusals_by_code(db) for db in dbs]
        # The most flood posts a node can have held, sampling aside: node 0 stored exactly what it
        # accepted from the attacker; another node got them only from its peers, and each one it
        # stored is still there or was removed by a block into its refusals (code blocked).
        ever = [pusher.accepted] + [final[i] + refusals[i].get("blocked", 0) for i in range(1, n)]
        tokens = [r.token for r in honest.results]
        ui = [ui_scan(node, marker, tokens) for node in nodes]
        carried = [carried_counts(db) for db in dbs]
        print(f"  node | flood stored: sampled peak, final, at most ever (bound {bound}) | refusals remembered "
              "by code (carried) | UI: flood marker hits, honest posts shown, pages")
        for i in range(n):
            print(f"  {i:4} | {sampler.peak[i]:6} {final[i]:6} {ever[i]:6} | {refusals[i] or '(no refusals table)'} "
                  f"({carried[i][0]}) | {ui[i][0]}, {len(ui[i][1])}/{len(tokens)}, {ui[i][2]}")
        spreads = [r.spread_s for r in honest.results if r.spread_s is not None]
        for r in honest.results:
            if r.spread_s is None:
                print(f"  honest post {r.token} ({'vouched' if r.vouched else 'stranger'}, into node {r.node}) did not "
                      f"reach every node: {r.refused or f'not everywhere within {HONEST_BOUND_S:.0f} s'}")
        censored = [HONEST_BOUND_S if r.spread_s is None else r.spread_s for r in honest.results]
        print("  honest posts, seconds to every node (v: vouched author, s: stranger; @node): " + ", ".join(
            f"{'-' if r.spread_s is None else f'{r.spread_s:.2f}'}{'v' if r.vouched else 's'}@{r.node}"
            for r in honest.results))
        if censored:
            print(f"  honest posts during the flood: {len(spreads)}/{len(honest.results)} reached all {n} nodes; "
                  f"median {statistics.median(censored):.2f} s, slowest {max(censored):.2f} s")

        baseline.measure(sample)
        verify = statistics.median(baseline.verify_cpu)
        check = statistics.median(baseline.check_cpu)
        verify_wall = statistics.median(baseline.verify_wall)
        per_post = cpu0 / n_flood
        ratio = per_post * verify
        print(f"  single-core verify (libsodium) {verify:.0f}/s = {1e6 / verify:.1f} us of CPU a post "
              f"({verify_wall:.0f}/s by the wall clock); check_post {check:.0f}/s = {1e6 / check:.1f} us of CPU "
              "(same posts, before and after the flood)")
        print(f"  node 0 took the flood at {n_flood / flood_s:.0f} posts/s = {n_flood / flood_s / verify_wall:.2f} x "
              "single-core verification (wall clock)")
        print(f"  node 0 CPU per flood post {per_post * 1e6:.1f} us = {ratio:.2f} x a verification "
              f"(target <= {TARGET_CPU_RATIO}), {per_post * check:.2f} x a check_post; all {n} nodes together "
              f"{cpu_all / n_flood * 1e6:.1f} us = {cpu_all / n_flood * verify:.2f} x a verification")
        codes0 = collections.Counter(pusher.codes)
        result.update(
            flood_s=round(flood_s, 2), flood_posts_per_s=round(n_flood / flood_s, 1),
            ratio_flood_rate_to_verify=round(n_flood / flood_s / verify_wall, 3),
            verify_per_cpu_s=round(verify, 1), verify_per_s=round(verify_wall, 1), check_post_per_cpu_s=round(check, 1),
            node0_cpu_s=round(cpu0, 2), node0_idle_cpu_fraction=round(idle_rate, 4),
            cpu_per_flood_post_us=round(per_post * 1e6, 2), cpu_per_refused_over_verify=round(ratio, 3),
            cpu_per_refused_over_check=round(per_post * check, 3),
            all_nodes_cpu_per_flood_post_over_verify=round(cpu_all / n_flood * verify, 3),
            node0_peak_rss_mib=round(nodes[0].peak_rss_mib(), 1),
            attacker_accepted=pusher.accepted, attacker_duplicates=pusher.duplicates,
            attacker_refused=sum(codes0.values()), attacker_push_errors=len(pusher.errors),
            attacker_retries=pusher.retries,
            blocks_pushed=moderator.pushed, blocks_accepted=moderator.accepted, settled=int(settled),
            flood_stored_peak_max=max(sampler.peak), flood_stored_final_max=max(final),
            flood_stored_ever_max=max(ever), flood_bound_held=int(max(sampler.peak + final + ever) <= bound),
            ui_flood_marker_hits=sum(u[0] for u in ui), ui_honest_shown_min=min(len(u[1]) for u in ui),
            honest_posts=len(honest.results), honest_reached_all=len(spreads),
            honest_median_s=round(statistics.median(censored), 3) if censored else 0.0,
            honest_max_s=round(max(censored), 3) if censored else 0.0,
        )
        for code in ("blocked", "quota_posts", "quota_bytes", "pow_required"):
            result[f"attacker_refused_{code}"] = codes0.get(code, 0)
            result[f"node0_refusals_{code}"] = refusals[0].get(code, 0)
        result.update(carried_refusals_min=min(c[0] for c in carried), carried_refusals_max=max(c[0] for c in carried))

        # Reconciliation after the flood: every ring link, both ways, twice (a first sync may
        # mark ids carried that a peer still holds), and each node against itself before and after.
        result["index_drifted_nodes"] = self_check(nodes, "before the link syncs")
        links = [(i, j) for i in range(n) for j in ring(i)]
        print(f"  reconciliation after the flood: `dazibao sync` over each of the {len(links)} directed ring links, "
              "through a counting proxy, twice")
        for round_no, prefix in ((1, "after_flood_links"), (2, "after_flood_links_again")):
            figures = []
            for i, j in links:
                with CountingProxy(nodes[j].url) as proxy:
                    figures.append(measured_sync(nodes[i].data, proxy))
                if (i, j) == (0, 1):
                    print(f"    pass {round_no}, node0 -> node1: {figures[-1].line()}")
                    result.update(figures[-1].figures("after_flood_sync" if round_no == 1
                                                      else "after_flood_sync_again"))
                elif (i, j) == (1, 0):
                    result.update(figures[-1].figures("after_flood_sync_reverse" if round_no == 1
                                                      else "after_flood_sync_reverse_again"))
            good = [f for f in figures if f.ok]
            met = sum(f.met for f in figures)
            for (i, j), f in zip(links, figures, strict=True):
                if (i, j) != (0, 1) and not f.met:
                    print(f"    pass {round_no}, node{i} -> node{j}: {f.line()}")
            print(f"    pass {round_no}: {met} of {len(links)} links at 1 round trip and < {TARGET_SYNC_BYTES} B; "
                  f"rounds at most {max((f.rounds for f in good), default=0)}, bytes "
                  f"{min((f.wire_bytes for f in good), default=0)} to {max((f.wire_bytes for f in good), default=0)}"
                  f"{'; ' + str(len(figures) - len(good)) + ' failed' if len(good) < len(figures) else ''}")
            result.update({f"{prefix}": len(links), f"{prefix}_met": met, f"{prefix}_failed": len(figures) - len(good),
                           f"{prefix}_max_rounds": max((f.rounds for f in good), default=0),
                           f"{prefix}_max_bytes": max((f.wire_bytes for f in good), default=0)})
        result["index_drifted_nodes_after"] = self_check(nodes, "after the link syncs")
        result.update(quota_only(scale, nodes[0], dbs[0], rng, verify))
        for db in dbs:
            db.close()
    return result


def quota_only(scale: Scale, node: NodeProc, db: sqlite3.Connection, rng: random.Random,
               verify_cpu_per_s: float) -> dict[str, float]:
    """Last, on the same network: a flood that no moderator blocks, only the stranger quota caps
    (a fifth of the keys, as many posts each), into node 0; its CPU per post.  Its posts under
    quota stay stored and shown, as any stranger's would: it runs after every other check."""
    keys = [identity.SigningKey(rng.randbytes(32)) for _ in range(max(1, scale.keys // 5))]
    marker = f"quotaonly{rng.randbytes(4).hex()}"
    made = make_flood(replace(scale, keys=len(keys)), keys, marker, rng, int(time.time() * 1000))
    batches = [messages.encode_posts([p.raw for p in made[i : i + limits.MAX_POSTS_PER_BATCH]])
               for i in range(0, len(made), limits.MAX_POSTS_PER_BATCH)]
    pusher = FloodPush(node.url, batches)
    cpu = node.cpu_s()
    wall = pusher.run()
    cpu = node.cpu_s() - cpu
    stored = count_marked(db, BOARD, marker)
    ratio = cpu / len(made) * verify_cpu_per_s
    print(f"  quota only (no block): {len(keys)} more fresh keys push {len(made)} posts into node 0 in {wall:.1f} s; "
          f"accepted {pusher.accepted}, refused {dict(pusher.codes.most_common())}; node 0 stores {stored} "
          f"(bound {scale.quota * len(keys)}); CPU per post {cpu / len(made) * 1e6:.1f} us = {ratio:.2f} x a "
          "verification")
    return {"quota_only_posts": len(made), "quota_only_accepted": pusher.accepted, "quota_only_stored": stored,
            "quota_only_refused_quota_posts": pusher.codes.get("quota_posts", 0),
            "quota_only_cpu_per_post_over_verify": round(ratio, 3)}


# --- the retention purge -------------------------------------------------------------------------


def _load(node: NodeProc, made: Sequence[posts.Post], source: str, out: list[str]) -> None:
    pusher = Pusher(node.url, source)
    try:
        for i in range(0, len(made), limits.MAX_POSTS_PER_BATCH):
            answer = pusher.push([p.raw for p in made[i : i + limits.MAX_POSTS_PER_BATCH]])
            if answer.rejected:
                out.append(f"{node.name} refused {len(answer.rejected)}: {sorted({c for _, c in answer.rejected})}")
                return
    except (Refused, OSError, http.client.HTTPException) as exc:
        out.append(f"{node.name}: {exc}")
    finally:
        pusher.close()


def run_purge(scale: Scale, folder: Path, rng: random.Random, missing: set[str]) -> dict[str, float]:
    n_old, n_recent = scale.purge, max(1, scale.purge // 100)
    keys = [identity.SigningKey(rng.randbytes(32)) for _ in range(scale.purge_authors)]
    now_ms = int(time.time() * 1000)
    t = time.perf_counter()
    old = [posts.create_post(keys[i % len(keys)], kind="post", board=PURGE_BOARD, created_at_ms=now_ms - 3 * DAY_MS + i,
                             body=_body(rng, f"archived {i}", 100)) for i in range(n_old)]
    recent = [posts.create_post(keys[i % len(keys)], kind="post", board=PURGE_BOARD, created_at_ms=now_ms - 60_000 + i,
                                body=_body(rng, f"recent {i}", 100)) for i in range(n_recent)]
    print(f"purge: two nodes hold {n_old} posts 3 days old and {n_recent} recent ones on {PURGE_BOARD!r} "
          f"(signed in {time.perf_counter() - t:.1f} s); the purger's retention (1 day) purges the {n_old}")
    # Quotas off for this part (it is about reconciliation), where the setting exists.
    settings = supported({"stranger_posts_per_day": 1_000_000_000, "stranger_bytes_per_day": 1 << 50}, missing)
    purger = NodeProc("purger", folder / "purger")
    keeper = NodeProc("keeper", folder / "keeper")
    result: dict[str, float] = {"purge_posts": n_old, "purge_recent_posts": n_recent}
    with stopped_on_exit([purger, keeper]):
        for node in (purger, keeper):
            node.configure(settings)
        start_all([purger, keeper], lambda i: ())
        t = time.monotonic()
        errors: list[str] = []
        loaders = [threading.Thread(target=_load, args=(node, old + recent, src, errors), daemon=True)
                   for node, src in zip((purger, keeper), LOADER_ADDRESSES, strict=True)]
        for thread in loaders:
            thread.start()
        for thread in loaders:
            thread.join(timeout=PUSH_BOUND_S)
        load_s = time.monotonic() - t
        if errors:
            raise RuntimeError(f"purge: loading the posts failed: {errors}")
        for node in (purger, keeper):
            with contextlib.closing(ro(node.db_path)) as db:
                held = count_board(db, PURGE_BOARD)
            if held != n_old + n_recent:
                raise RuntimeError(f"purge: {node.name} holds {held} posts, not {n_old + n_recent}")
        print(f"  both loaded over HTTP in {load_s:.1f} s")
        purger.stop()
        purger.configure({**settings, "retention_days": {PURGE_BOARD: 1}})
        t = time.monotonic()
        start_all([purger], lambda i: ())
        with contextlib.closing(ro(purger.db_path)) as db:
            wait_for(lambda: count_board(db, PURGE_BOARD) == n_recent, "the retention purge", PURGE_BOUND_S, 0.2)
            tombs = int(db.execute("SELECT count(*) FROM tombstones WHERE reason = 'purged'").fetchone()[0])
        purge_s = time.monotonic() - t
        print(f"  purger restarted with retention_days = {{ {PURGE_BOARD} = 1 }}: {n_old} purged "
              f"({tombs} 'purged' tombstones) {purge_s:.1f} s after its start")
        purger.stop()
        result.update(purge_load_s=round(load_s, 2), purge_s=round(purge_s, 2))

        with CountingProxy(keeper.url) as proxy:
            first = measured_sync(purger.data, proxy)
            print(f"  purger -> keeper, first sync:  {first.line()}")
            second = measured_sync(purger.data, proxy)
            print(f"  purger -> keeper, second sync: {second.line()}")
        keeper.stop()
        start_all([purger], lambda i: ())
        with CountingProxy(purger.url) as proxy:
            reverse = measured_sync(keeper.data, proxy)
            print(f"  keeper -> purger (restarted):  {reverse.line()}")
        result.update(first.figures("purge_first_sync"))
        result.update(second.figures("purge_second_sync"))
        result.update(reverse.figures("purge_reverse_sync"))
    return result


# --- the benchmark --------------------------------------------------------------------------------


def _verdict(result: dict[str, float], prefix: str) -> str:
    if not result.get(f"{prefix}_ok"):
        return "failed"
    ok = result[f"{prefix}_rounds"] <= TARGET_SYNC_ROUNDS and result[f"{prefix}_bytes"] < TARGET_SYNC_BYTES
    return f"{int(result[f'{prefix}_rounds'])} round trip, {int(result[f'{prefix}_bytes'])} B: " + \
        ("met" if ok else "MISSED")


@contextlib.contextmanager
def _folder(prefix: str) -> Iterator[Path]:
    """A temporary folder, or one kept under $BENCH_FLOOD_KEEP (data folders and node logs)."""
    keep = os.environ.get(KEEP_ENV)
    if keep:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=keep))
        print(f"  keeping {path}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def run(scale: Scale, seed: int = SEED) -> dict[str, float]:
    """Run the flood and the purge at ``scale``; print the figures and return them."""
    rng = random.Random(seed)
    missing: set[str] = set()
    if _moderation() is None:
        print("flood: dazibao.protocol.moderation is missing: statements are signed by hand (contract 1a)")
    t0 = time.monotonic()
    result: dict[str, float] = {"seed": seed}
    with _folder("dazibao-flood-") as tmp:
        result.update(run_flood(scale, tmp, rng, missing))
    with _folder("dazibao-purge-") as tmp:
        result.update(run_purge(scale, tmp, rng, missing))
    if missing:
        print(f"  settings the running code does not know, left out: {', '.join(sorted(missing))}")
    result["settings_missing"] = len(missing)
    print("  targets: every node stores <= quota x keys of the flood "
          f"({'held' if result['flood_bound_held'] else 'MISSED'}); honest posts reach every node "
          f"({int(result['honest_reached_all'])}/{int(result['honest_posts'])}); no flood in any UI "
          f"({int(result['ui_flood_marker_hits'])} marker hits); CPU per refused post <= {TARGET_CPU_RATIO} x verify "
          f"({result['cpu_per_refused_over_verify']:.2f}: "
          f"{'met' if result['cpu_per_refused_over_verify'] <= TARGET_CPU_RATIO else 'MISSED'}); sync after the flood "
          f"(node0 -> node1 {_verdict(result, 'after_flood_sync')}; reverse "
          f"{_verdict(result, 'after_flood_sync_reverse')}; ring links at 1 round trip and < {TARGET_SYNC_BYTES} B: "
          f"{int(result['after_flood_links_met'])}/{int(result['after_flood_links'])}, then "
          f"{int(result['after_flood_links_again_met'])}/{int(result['after_flood_links_again'])}); second "
          f"sync after the purge ({_verdict(result, 'purge_second_sync')}; reverse "
          f"{_verdict(result, 'purge_reverse_sync')}); {time.monotonic() - t0:.0f} s in all")
    return result


def main(quick: bool) -> dict[str, float]:
    return run(QUICK if quick else FULL)


if __name__ == "__main__":  # pragma: no cover - run through bench/run.py
    print(json.dumps(run(replace(QUICK, keys=20, per_key=20, nodes=3, purge=500, purge_authors=10, sync_interval_s=5))))
