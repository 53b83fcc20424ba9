"""Single-post requests: many clients each pushing one fresh post per ``POST /v1/posts``.

A real node (``dazibao run``, its own process, real SQLite file, 127.0.0.1) is sent one signed
post per request by ``clients`` concurrent clients for a bounded time; the figures are posts/s
(every post is checked as accepted) and the p50/p95 latency of a request.  Baselines measured in
the same run, with the same clients:

* a trivial aiohttp server (its own process) whose handler only reads the body and answers a
  few fixed bytes: what HTTP alone costs on this machine, the ceiling of any node;
* the node's own rate for the same kind of posts pushed in batches of 512 (two requests in
  flight), the path of a syncing peer.

Members push from their own addresses, so the clients do too: each client spreads its
requests over source addresses of 127.0.0.0/8 in distinct /24s (one keep-alive connection
each), as many members' nodes would, which keeps every address within the gossip API's rate
limit (max_requests_per_s) without changing the node's settings.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from dazibao.protocol import identity, limits, messages, posts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import NodeUnderTest, print_shares, profiled, push_all  # noqa: E402  (a benchmark beside this one)

#: Posts/s of other relays for the same scenario, measured once on the same 2-core machine
#: (not re-run here): nostr-relay (Python) and strfry (C++).
REFERENCE = {"nostr-relay": 716.0, "strfry": 3_468.0}
#: Source addresses, each in a /24 of its own; fewer than max_connections (512) connections.
ADDRESSES = [f"127.{10 + k // 200}.{k % 200}.1" for k in range(256)]
#: Posts one author adds to one board at most: well inside the stranger quota.
POSTS_PER_KEY = 100

TRIVIAL_SERVER = """
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.Response(body=b"\\x83", content_type="application/x-msgpack")
app = web.Application()
app.router.add_post("/v1/posts", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def make_posts(n: int, seed: int) -> list[posts.Post]:
    """``n`` fresh, valid posts, one author per ``POSTS_PER_KEY`` posts, on one board."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) - 60_000
    out = []
    key = identity.SigningKey(rng.randbytes(32))
    for i in range(n):
        if i and i % POSTS_PER_KEY == 0:
            key = identity.SigningKey(rng.randbytes(32))
        body = f"one post of a member, number {i}: " + " ".join(rng.choice(("workers", "加班", "meeting", "工资"))
                                                                for _ in range(20))
        out.append(posts.create_post(key, kind="post", board="labor", body=body, created_at_ms=now_ms + i))
    return out


async def push_singles(url: str, sample: list[posts.Post], clients: int, seconds: float,
                       check: bool = True) -> tuple[float, float, float, int]:
    """Push ``sample`` one post per request from ``clients`` clients for at most ``seconds``;
    (posts/s, p50 ms, p95 ms, posts sent).  ``check``: every answer must accept its post."""
    bodies = [messages.encode_posts([p.raw]) for p in sample]
    queue = list(reversed(bodies))
    latencies: list[float] = []
    refused: list[str] = []
    deadline = 0.0

    async def client(c: int) -> None:
        mine = ADDRESSES[c::clients]
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(a, 0), limit=1))
                    for a in mine]
        try:
            i = 0
            while queue and time.perf_counter() < deadline:
                body = queue.pop()
                session = sessions[i % len(sessions)]
                i += 1
                t = time.perf_counter()
                async with session.post(url + "/v1/posts", data=body) as resp:
                    answer = await resp.read()
                latencies.append(time.perf_counter() - t)
                if check:
                    result = messages.decode_push_result(answer) if resp.status == 200 else None
                    if result is None or result.accepted != 1:
                        refused.append(f"{resp.status} {answer[:200]!r}")
        finally:
            for session in sessions:
                await session.close()

    t0 = time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - t0
    if refused:
        raise RuntimeError(f"{len(refused)} single-post pushes were not accepted, e.g. {refused[0]}")
    sent = len(latencies)
    cuts = statistics.quantiles(latencies, n=20) if sent >= 20 else [float("nan")] * 19
    return sent / elapsed, statistics.median(latencies) * 1000, cuts[18] * 1000, sent


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, url: str, sample: list[posts.Post], clients: int, seconds: float,
             check: bool = True) -> tuple[float, float, float, int, float]:
    """:func:`push_singles`, and the server's CPU time per request in microseconds: a figure
    that other load on the machine changes far less than the rate."""
    before = cpu_s(pid)
    rate, p50, p95, sent = asyncio.run(push_singles(url, sample, clients, seconds, check))
    return rate, p50, p95, sent, (cpu_s(pid) - before) / max(sent, 1) * 1e6


class TrivialServer:
    """The HTTP-only baseline: an aiohttp server that reads the body and answers, nothing else."""

    def __enter__(self) -> TrivialServer:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the trivial server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main(quick: bool) -> dict[str, float]:
    seconds = 6.0 if quick else 20.0
    concurrency = [32] if quick else [8, 32, 64]
    # Enough posts for any rate this machine can reach in the time given (checked below).
    per_run = 30_000 if quick else 100_000
    result: dict[str, float] = {}
    t = time.perf_counter()
    pool = make_posts(per_run * len(concurrency) + 2 * limits.MAX_POSTS_PER_BATCH * 8, seed=7)
    print(f"single: {len(pool)} signed posts made in {time.perf_counter() - t:.1f} s; "
          f"{seconds:.0f} s per run, one post per request")
    for name, rate in REFERENCE.items():
        print(f"  reference: {name:<12} {rate:8.0f} posts/s (measured separately on the same machine)")
    with tempfile.TemporaryDirectory(prefix="dazibao-bench-") as tmp, TrivialServer() as trivial, \
            NodeUnderTest(Path(tmp)) as node:
        taken = 0
        batch = pool[: 8 * limits.MAX_POSTS_PER_BATCH]
        taken += len(batch)
        batch_rate = asyncio.run(push_all(node.url, batch))
        print(f"  node, batches of {limits.MAX_POSTS_PER_BATCH} (2 in flight)     {batch_rate:8.0f} posts/s")
        result["batch_posts_per_s"] = round(batch_rate, 1)
        for clients in concurrency:
            http, h50, h95, _, http_cpu = measured(trivial.proc.pid, trivial.url, pool[:per_run], clients, seconds,
                                                   check=False)
            sample = pool[taken : taken + per_run]
            taken += per_run
            with profiled(node.proc.pid, f"single_c{clients}"):
                rate, p50, p95, sent, cpu = measured(node.proc.pid, node.url, sample, clients, seconds)
            if sent >= len(sample):
                print("  (the run used every post prepared: the rate is a floor)")
            print(f"  {clients:2d} clients: trivial aiohttp handler {http:8.0f} requests/s  p50 {h50:5.1f} ms  "
                  f"p95 {h95:5.1f} ms  {http_cpu:5.0f} us CPU/request")
            print(f"  {clients:2d} clients: node, one post/request  {rate:8.0f} posts/s     p50 {p50:5.1f} ms  "
                  f"p95 {p95:5.1f} ms  {cpu:5.0f} us CPU/post = {cpu / http_cpu:.1f} x HTTP's CPU")
            print(f"      = {rate / http:.2f} x HTTP, {rate / batch_rate:.2f} x batches, "
                  + ", ".join(f"{rate / ref:.2f} x {name}" for name, ref in REFERENCE.items()))
            print_shares(f"single_c{clients}")
            result.update({
                f"c{clients}_http_per_s": round(http, 1),
                f"c{clients}_http_cpu_us": round(http_cpu, 1),
                f"c{clients}_posts_per_s": round(rate, 1),
                f"c{clients}_node_cpu_us_per_post": round(cpu, 1),
                f"c{clients}_p50_ms": round(p50, 2),
                f"c{clients}_p95_ms": round(p95, 2),
                f"c{clients}_ratio_to_http": round(rate / http, 3),
                f"c{clients}_ratio_to_batches": round(rate / batch_rate, 3),
                f"c{clients}_ratio_to_strfry": round(rate / REFERENCE["strfry"], 3),
            })
    print(f"  (load average {os.getloadavg()[0]:.1f}; target: one post per request >= strfry's "
          f"{REFERENCE['strfry']:.0f} posts/s)")
    return result
