"""What one hostile address costs an honest peer: resource attacks side by side with a sync.

A real node (`dazibao run`, its own process, a real SQLite file, 127.0.0.1) holds a board of
posts.  An honest newcomer (`dazibao sync`, its own process) fetches all of them, twice:

* **unattacked**: nothing else talks to the node;
* **attacked**, twice: meanwhile an attacker process, first from one other loopback address
  (127.0.1.1), then from 64 addresses of one /24 (127.0.1.0/24), runs every resource attack of
  docs/security.md at once, reconnecting whenever the node refuses or cuts a connection: slow 4 MiB bodies on many
  connections, ``/v1/fetch`` answers that are never read, slowloris request heads, endless
  chunked bodies, bodies of four million empty arrays, and idle connections.

The figures are ratios of each attacked run to the unattacked run measured in the same
invocation: the honest sync's slow-down, the node's peak resident memory (VmHWM) and the
latency of a ``GET /v1/info`` probe.  Both runs start from identical copies of the data folder.

Every attack loop is bounded in count and in time and aims only at 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ingest import NodeUnderTest

from dazibao.node.config import DataDir
from dazibao.node.store import Store
from dazibao.protocol import identity, messages, posts

BOARD = "labor"
#: The one hostile address (docs/security.md, "The attacker"), in a /24 other than the honest
#: sync's (127.0.0.1), so that the node's per-address and per-/24 bounds are what it meets.
ONE_ADDRESS = ["127.0.1.1"]
#: A whole /24 of attackers: 64 addresses, which the per-/24 bounds must hold together.
ONE_24 = [f"127.0.1.{i}" for i in range(1, 65)]
MIB = 1 << 20


def make_store(data: Path, n: int, seed: int) -> list[bytes]:
    """A store of ``n`` posts with bodies of about 3 KB (so that a fetch answer is large)."""
    rng = random.Random(seed)
    keys = [identity.SigningKey(rng.randbytes(32)) for _ in range(20)]
    now_ms = int(time.time() * 1000) - 3_600_000
    made = [
        posts.create_post(rng.choice(keys), kind="post", board=BOARD,
                          body=" ".join(rng.choice(["workers", "overtime", "加班", "工资", "strike"])
                                        for _ in range(500)),
                          created_at_ms=now_ms + i)
        for i in range(n)
    ]
    DataDir(data).create()
    store = Store(str(data / "dazibao.db"))
    try:
        for i in range(0, len(made), 2_000):
            store.ingest(made[i : i + 2_000], source="bench", now_ms=now_ms + 3_600_000)
    finally:
        store.close()
    return [p.id for p in made]


# --- the attacker (its own process) ----------------------------------------------------------


class _Tally:
    """What the attacker managed: connections opened, and how they ended."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


async def _connect(host: str, port: int, source: str):
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def _hold(tally: _Tally, host: str, port: int, source: str, head: bytes, dribble: bytes, every_s: float,
                stop: asyncio.Event) -> None:
    """Open a connection, send ``head``, then ``dribble`` every ``every_s``; when the node
    refuses or cuts the connection, open another (as a real attacker would), until ``stop``."""
    while not stop.is_set():
        try:
            reader, writer = await _connect(host, port, source)
        except OSError:
            tally.add("connect_failed")
            await asyncio.sleep(0.2)
            continue
        tally.add("connections")
        try:
            writer.write(head)
            await writer.drain()
            while not stop.is_set():
                if dribble:
                    writer.write(dribble)
                    await writer.drain()
                    tally.add("bytes_sent", len(dribble))
                try:
                    answer = await asyncio.wait_for(reader.read(4096), timeout=every_s)
                except TimeoutError:
                    continue
                if not answer:
                    tally.add("closed_by_node")
                    break
                if b" 503 " in answer[:20]:
                    tally.add("answered_busy")
                    break
        except (OSError, ConnectionError):
            tally.add("cut_by_node")
        finally:
            writer.close()
        await asyncio.sleep(0.2)


async def _empty_arrays(tally: _Tally, host: str, port: int, source: str, stop: asyncio.Event) -> None:
    """Bodies of four million empty msgpack arrays, one after another."""
    count = 4 * MIB - 5
    body = b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count
    head = (f"POST /v1/posts HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-msgpack\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    while not stop.is_set():
        try:
            reader, writer = await _connect(host, port, source)
            writer.write(head + body)
            await writer.drain()
            await asyncio.wait_for(reader.read(65536), timeout=30)
            tally.add("empty_array_bodies")
            writer.close()
        except (OSError, ConnectionError, TimeoutError):
            tally.add("cut_by_node")
            await asyncio.sleep(0.1)


async def _attack(url: str, fetch_ids: list[bytes], sources: list[str], scale: float,
                  stop_flag: Any) -> dict[str, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tally = _Tally()
    stop = asyncio.Event()
    fetch_body = messages.encode_ids(fetch_ids)

    def src(i: int) -> str:
        return sources[i % len(sources)]

    def post(path: str, length: int) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-msgpack\r\n"
                f"Content-Length: {length}\r\n\r\n").encode()

    chunked_head = (f"POST /v1/posts HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n").encode()
    jobs = []
    # Slow 4 MiB bodies: 64 KiB a second each.
    jobs += [_hold(tally, host, port, src(i), post("/v1/posts", 4 * MIB), b"\x00" * 65536, 1.0, stop)
             for i in range(max(1, int(190 * scale)))]
    # Fetch answers that are never read (the request is sent again on every new connection).
    jobs += [_hold(tally, host, port, src(i), post("/v1/fetch", len(fetch_body)) + fetch_body, b"", 5.0, stop)
             for i in range(max(1, int(100 * scale)))]
    # Slowloris: a request head one byte a second.
    jobs += [_hold(tally, host, port, src(i), b"GET /v1/info HTTP/1.1\r\n", b"X", 1.0, stop)
             for i in range(max(1, int(100 * scale)))]
    # Endless chunked bodies.
    jobs += [_hold(tally, host, port, src(i), chunked_head, b"400\r\n" + b"\x00" * 1024 + b"\r\n", 0.05, stop)
             for i in range(max(1, int(50 * scale)))]
    # Idle connections.
    jobs += [_hold(tally, host, port, src(i), b"", b"", 1.0, stop) for i in range(max(1, int(200 * scale)))]
    # Four million empty arrays, eight at once.
    jobs += [_empty_arrays(tally, host, port, src(i), stop) for i in range(8)]

    async def watch_stop() -> None:
        # Bounded: the measurement sets the flag when it is done, and never later than this.
        deadline = time.monotonic() + 900
        while not stop_flag.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()

    await asyncio.gather(watch_stop(), *jobs)
    return tally.counts


def _attacker(url: str, fetch_ids: list[bytes], sources: list[str], scale: float, stop_flag: Any,
              report: Any) -> None:
    report.put(asyncio.run(_attack(url, fetch_ids, sources, scale, stop_flag)))


# --- the measurement -------------------------------------------------------------------------


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _honest_sync(url: str, folder: Path) -> tuple[float, bool]:
    """Seconds a fresh node takes for one `dazibao sync` of everything the node holds, and
    whether it succeeded (under attack it may not: that is a figure too)."""
    shutil.rmtree(folder, ignore_errors=True)
    DataDir(folder).create()
    env = {"PATH": "/usr/bin:/bin", "DAZIBAO_LOG_LEVEL": "warning"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dazibao.node", "--data-dir", str(folder), "sync", url, "--json"],
                          capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"  honest sync failed after {elapsed:.1f} s: {proc.stderr.strip()}")
    return elapsed, proc.returncode == 0


class _Prober:
    """Probes ``GET /v1/info`` every half second from 127.0.0.2, recording latencies."""

    def __init__(self, url: str) -> None:
        self.url = url + "/v1/info"
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as resp:
                    resp.read()
                self.latencies.append(time.perf_counter() - t)
            except OSError:
                self.latencies.append(30.0)
            self._stop.wait(0.5)

    def __enter__(self) -> _Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _run(data: Path, honest: Path, attack: tuple[list[bytes], list[str]] | None, scale: float,
         syncs: int) -> dict[str, Any]:
    with NodeUnderTest(data) as node:
        attacker = None
        ctx = multiprocessing.get_context("spawn")
        stop_flag, report = ctx.Event(), ctx.Queue()
        if attack is not None:
            fetch_ids, sources = attack
            attacker = ctx.Process(target=_attacker, args=(node.url, fetch_ids, sources, scale, stop_flag, report),
                                   daemon=True)
            attacker.start()
            time.sleep(3.0)  # let the attack reach its full strength first
        tally: dict[str, int] = {}
        try:
            with _Prober(node.url) as prober:
                runs = [_honest_sync(node.url, honest) for _ in range(syncs)]
            rss_now = node.rss_mib()
            peak = _peak_rss_mib(node.proc.pid)
        finally:
            if attacker is not None:
                stop_flag.set()
                try:
                    tally = report.get(timeout=60)
                finally:
                    attacker.join(timeout=30)
                    if attacker.is_alive():
                        attacker.terminate()
    return {
        "sync_s": statistics.median(t for t, _ in runs),
        "sync_failures": sum(1 for _, ok in runs if not ok),
        "peak_rss_mib": peak,
        "rss_mib": rss_now,
        "probe_p50_s": statistics.median(prober.latencies) if prober.latencies else float("nan"),
        "probe_max_s": max(prober.latencies) if prober.latencies else float("nan"),
        "tally": tally,
    }


def main(quick: bool) -> dict[str, float]:
    n, scale, syncs = (1_500, 0.5, 1) if quick else (5_000, 1.0, 3)
    result: dict[str, float] = {"posts": n, "attack_scale": scale}
    with tempfile.TemporaryDirectory(prefix="dazibao-bench-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        ids = make_store(folder / "seed", n, 7)
        print(f"attack: a node holding {n} posts of ~3 KB made in {time.perf_counter() - t:.1f} s")
        shutil.copytree(folder / "seed", folder / "calm")
        calm = _run(folder / "calm", folder / "honest", None, scale, syncs)
        print(f"  unattacked:        honest sync {calm['sync_s']:.2f} s, node peak RSS "
              f"{calm['peak_rss_mib']:.0f} MiB, probe p50 {calm['probe_p50_s'] * 1000:.0f} ms")
        result.update(calm_sync_s=round(calm["sync_s"], 3), calm_peak_rss_mib=round(calm["peak_rss_mib"], 1))
        for name, sources in (("one_address", ONE_ADDRESS), ("one_24", ONE_24)):
            shutil.copytree(folder / "seed", folder / name)
            hit = _run(folder / name, folder / "honest", (ids[:1024], sources), scale, syncs)
            tally = hit["tally"]
            print(f"  attacked from {name.replace('_', ' ')}: honest sync {hit['sync_s']:.2f} s"
                  f" ({hit['sync_failures']} failed), node peak RSS {hit['peak_rss_mib']:.0f} MiB, probe p50 "
                  f"{hit['probe_p50_s'] * 1000:.0f} ms, max {hit['probe_max_s'] * 1000:.0f} ms")
            print("    the attacker: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
            result.update({
                f"{name}_sync_s": round(hit["sync_s"], 3),
                f"{name}_sync_failures": hit["sync_failures"],
                f"{name}_sync_slowdown_ratio": round(hit["sync_s"] / calm["sync_s"], 3),
                f"{name}_peak_rss_mib": round(hit["peak_rss_mib"], 1),
                f"{name}_peak_rss_ratio": round(hit["peak_rss_mib"] / calm["peak_rss_mib"], 3),
                f"{name}_probe_p50_ratio": round(hit["probe_p50_s"] / calm["probe_p50_s"], 3),
                f"{name}_probe_max_s": round(hit["probe_max_s"], 3),
                f"{name}_attack_connections": tally.get("connections", 0),
            })
    print("  ratios are attacked / unattacked, measured in this run")
    return result
