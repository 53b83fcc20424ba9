"""Attacks on the node's listeners from one address (docs/security.md, sections 2, 3 and 10).

The attacker is 127.0.0.1; a probe from 127.0.0.2 (another client to the node) must still be
answered promptly.  Real `dazibao run` processes where the attack needs one; in-process
servers with small bounds for the deadlines that are too long to wait for.  Every loop is
bounded in count and time, and only 127.0.0.0/8 is ever touched.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from dazibao.node.listeners import ClientLogFilter, Guard, client_key, make_runner, start_listener, subnet_key
from dazibao.protocol import identity, limits, messages, posts
from tests.node.attack import peak_rss_kib
from tests.node.procs import NodeProcess

ATTACKER = "127.0.0.1"
PROBER = "127.0.0.2"
MIB = 1024 * 1024
KEY = identity.SigningKey(bytes([11]) * 32)


# --- tools -------------------------------------------------------------------------------------


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def attacker_socket(url: str, *, rcvbuf: int | None = None, timeout: float = 5.0) -> socket.socket:
    """A connection to ``url`` from the attacker's address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Set before connecting, so that the kernel does not take the answer for us.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((ATTACKER, 0))
    sock.settimeout(timeout)
    sock.connect(address(url))
    return sock


def probe(url: str, path: str = "/v1/info", timeout: float = 30.0) -> tuple[float, int]:
    """Seconds one GET from the probe's address takes, and its status."""
    host, port = address(url)
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(PROBER, 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return time.monotonic() - start, resp.status
    finally:
        conn.close()


def post_body(url: str, path: str, body: bytes, source: str = ATTACKER) -> tuple[int, dict | bytes]:
    host, port = address(url)
    conn = http.client.HTTPConnection(host, port, timeout=60, source_address=(source, 0))
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/x-msgpack"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if resp.getheader("Content-Type", "").startswith("application/json")
                             else data)
    except OSError as exc:
        return 0, {"error": {"code": type(exc).__name__}}
    finally:
        conn.close()


def is_closed(sock: socket.socket) -> bool:
    """True once the peer has closed or reset ``sock`` (without waiting)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        sock.setblocking(False)
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture
def node(tmp_path):
    with NodeProcess(tmp_path / "node") as proc:
        probe(proc.url)  # warm up: the first answer imports and opens what it needs
        yield proc


# --- 2. memory ---------------------------------------------------------------------------------


def slow_bodies(url: str, connections: int = 100, budget_s: float = 60.0) -> int:
    """Open ``connections`` connections that each send all but the last byte of a 4 MiB push;
    returns how many sent their body in full (the others were refused).  Keeps them open."""
    size = limits.MAX_REQUEST_BYTES
    head = (f"POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-msgpack\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    body = memoryview(b"\x00" * (size - 1))
    held, sent = [], 0
    deadline = time.monotonic() + budget_s
    for _ in range(connections):
        if time.monotonic() > deadline:
            break
        try:
            sock = attacker_socket(url, timeout=3.0)
            held.append(sock)
            sock.sendall(head)
            sock.sendall(body)
            sent += 1
        except OSError:
            continue  # refused (503 and closed) or the node stopped reading: both are fine
    slow_bodies.held = held  # kept open by the caller's test until it has measured
    return sent


@pytest.mark.slow
def test_slow_bodies_on_many_connections_stay_bounded(node):
    # Unpatched: every one of 100 connections got its 4 MiB read into memory (peak RSS +400 MiB
    # and more, never returned).  Now one address has max_body_bytes_in_flight_per_client.
    pid = node.proc.pid
    before = peak_rss_kib(pid)
    sent = slow_bodies(node.url, 100)
    try:
        time.sleep(1.0)
        took, status = probe(node.url)
        grown_mib = (peak_rss_kib(pid) - before) / 1024
        assert status == 200 and took < 1.5, took
        assert grown_mib < 150, f"peak RSS grew by {grown_mib:.0f} MiB ({sent} bodies sent in full)"
    finally:
        for sock in slow_bodies.held:
            sock.close()


def store_big_posts(url: str, count: int = 64) -> list[bytes]:
    """Push ``count`` posts of 16 KB each (from the probe's address) and return their ids."""
    now = int(time.time() * 1000) - 5000
    made = [posts.create_post(KEY, kind="post", board="labor", body=f"{i} " + "x" * 16_000,
                              created_at_ms=now + i) for i in range(count)]
    for batch in messages.post_batches([p.raw for p in made]):
        status, data = post_body(url, "/v1/posts", messages.encode_posts(batch), source=PROBER)
        assert status == 200, data
    return [p.id for p in made]


def unread_fetches(url: str, ids: list[bytes], connections: int = 100) -> list[socket.socket]:
    """Ask for a full fetch answer on each of ``connections`` connections and never read it."""
    wanted = (ids * (limits.MAX_IDS_PER_REQUEST // len(ids) + 1))[: limits.MAX_IDS_PER_REQUEST]
    body = messages.encode_ids(wanted)
    request = (f"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-msgpack\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    held = []
    for _ in range(connections):
        try:
            sock = attacker_socket(url, rcvbuf=4096, timeout=3.0)
            held.append(sock)
            sock.sendall(request)
        except OSError:
            continue
    return held


@pytest.mark.slow
def test_unread_fetch_answers_stay_bounded(node):
    # Unpatched: each 35 KB request queued a 4 MiB answer; 100 of them grew the node by
    # hundreds of MiB.  Now an answer is at most max_fetch_answer_bytes and an address with
    # max_unread_answer_bytes_per_client unread is answered 503 busy.
    ids = store_big_posts(node.url)
    pid = node.proc.pid
    time.sleep(0.5)
    before = peak_rss_kib(pid)
    held = unread_fetches(node.url, ids)
    try:
        time.sleep(3.0)
        took, status = probe(node.url)
        grown_mib = (peak_rss_kib(pid) - before) / 1024
        assert status == 200 and took < 1.5, took
        assert grown_mib < 100, f"peak RSS grew by {grown_mib:.0f} MiB"
    finally:
        for sock in held:
            sock.close()


@pytest.mark.slow
def test_slowloris_idle_and_endless_chunked_connections_are_cut(node):
    # Unpatched: a head dribbled a line at a time, an idle connection and a chunked body that
    # never ends all stayed open past 100 s.  Now: listener_head_timeout_s,
    # listener_idle_timeout_s, and listener_min_body_rate after the first
    # listener_head_timeout_s, each checked once a second.
    start = time.monotonic()
    loris = [attacker_socket(node.url) for _ in range(8)]
    idle = [attacker_socket(node.url) for _ in range(8)]
    chunked = [attacker_socket(node.url) for _ in range(4)]
    for sock in loris:
        sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
    for sock in chunked:
        sock.sendall(b"POST /v1/posts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    closed_at: dict[int, float] = {}
    slowest_probe = 0.0
    deadline = start + 40
    n = 0
    while time.monotonic() < deadline and len(closed_at) < 20:
        n += 1
        for sock in loris + chunked + idle:
            if id(sock) in closed_at:
                continue
            if is_closed(sock):
                closed_at[id(sock)] = time.monotonic() - start
                continue
            try:
                if sock in loris:
                    sock.sendall(f"X-Drip-{n}: 1\r\n".encode())
                elif sock in chunked:
                    sock.sendall(b"1\r\n\x00\r\n")
            except OSError:
                closed_at[id(sock)] = time.monotonic() - start
        took, status = probe(node.url)
        assert status == 200
        slowest_probe = max(slowest_probe, took)
        time.sleep(max(0.0, 1.0 - took))
    for sock in loris + chunked + idle:
        sock.close()
    head_s, idle_s = limits.LISTENER_HEAD_TIMEOUT_S, limits.LISTENER_IDLE_TIMEOUT_S
    slack = 6.0  # the watchdog's second, and a noisy machine
    assert all(id(s) in closed_at for s in loris + idle + chunked), "a connection stayed open for 40 s"
    assert max(closed_at[id(s)] for s in loris) < head_s + slack
    assert max(closed_at[id(s)] for s in idle) < idle_s + slack
    # A body below listener_min_body_rate is cut a moment after the grace period.
    assert max(closed_at[id(s)] for s in chunked) < head_s + 2 + slack
    assert slowest_probe < 1.5, slowest_probe


# --- 3. event-loop stalls ----------------------------------------------------------------------


def empty_arrays_body(count: int = 4_000_000) -> bytes:
    """``[1, [[], [], ...]]`` with ``count`` empty arrays: 4 MB that decode to 4 million lists."""
    return b"\x92\x01\xdd" + count.to_bytes(4, "big") + b"\x90" * count


@pytest.mark.slow
def test_four_million_empty_arrays_eight_at_once(node):
    # Unpatched: each such body stopped the event loop for 2-5 s, eight at once for 19 s.
    # Now the count is read from the array header and refused before a single item is built.
    body = empty_arrays_body()
    assert len(body) <= limits.MAX_REQUEST_BYTES
    for path in ("/v1/posts", "/v1/fetch", "/v1/announce"):
        status, data = post_body(node.url, path, body)
        assert (status, data["error"]["code"]) == (413, "too_large"), data
    results: list[tuple[int, dict]] = []

    async def flood() -> float:
        loop = asyncio.get_running_loop()
        senders = [loop.run_in_executor(None, post_body, node.url, path, body)
                   for path in ("/v1/posts", "/v1/fetch", "/v1/announce", "/v1/posts") * 2]
        slowest = 0.0
        while not all(s.done() for s in senders):
            took, status = await loop.run_in_executor(None, probe, node.url)
            assert status == 200
            slowest = max(slowest, took)
            await asyncio.sleep(0.05)
        results.extend(await asyncio.gather(*senders))
        return slowest

    slowest = asyncio.run(flood())
    assert slowest < 1.0, f"a probe took {slowest:.2f} s"
    # Each body is refused: too_large, or busy when this address already has bodies in flight.
    for status, data in results:
        assert (status, data["error"]["code"]) in {(413, "too_large"), (503, "busy")}, (status, data)
    assert any(status == 413 for status, _ in results)


# --- 10. logs ----------------------------------------------------------------------------------


def test_malformed_requests_log_no_traceback(node):
    # Unpatched: a malformed head was logged at ERROR with a traceback, one per request.
    bad = [
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nBad\x00Header: 1\r\n\r\n",
        b"GET /v1/info HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /v1/info HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET /v1/info HTTP/1.1\r\n" + b"X: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\nGET /%% HTTP/1.1\r\nHost: \x01\r\n\r\n",
    ]
    for _ in range(20):
        for request in bad:
            with attacker_socket(node.url) as sock:
                sock.sendall(request)
                sock.settimeout(5)
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
    _, status = probe(node.url)
    assert status == 200
    log = node.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log
    assert " ERROR " not in log
    assert len(log.splitlines()) < 20


def test_client_log_filter_caps_lines_per_minute():
    import logging

    logger = logging.getLogger("dazibao.test.flood")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger.addHandler(Keep())
    logger.propagate = False
    logger.addFilter(ClientLogFilter(per_minute=10))
    for i in range(1000):
        logger.error("bug %d", i, exc_info=(RuntimeError, RuntimeError("x"), None))
    from aiohttp.http_exceptions import BadHttpMessage

    logger.error("bad", exc_info=(BadHttpMessage, BadHttpMessage("bad"), None))
    assert len(records) <= 11
    assert all(r.getMessage() != "bad" for r in records)


# --- 10. rate limits: keys ---------------------------------------------------------------------


def test_client_keys():
    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("127.0.0.2") == "127.0.0.2"                      # loopback: per address
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"          # IPv4-mapped
    a, b = client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert a == b == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != a                         # the next /64
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("") == "" and client_key("unix") == "unix"
    assert subnet_key("198.51.100.7") == subnet_key("198.51.100.200") == "198.51.100.0/24"
    assert subnet_key("::ffff:198.51.100.7") == "198.51.100.0/24"
    assert subnet_key("2001:db8::1") is None


# --- the guard's deadlines and caps, in process with small bounds ------------------------------


async def _guarded_server(guard: Guard, answer: bytes = b"ok"):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer)

    app = web.Application(client_max_size=limits.MAX_REQUEST_BYTES)
    app.router.add_route("*", "/", handler)
    runner = make_runner(app)
    await runner.setup()
    site = await start_listener(runner, "127.0.0.1", 0, guard=guard)
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_connection_caps_answer_busy():
    runner, url = await _guarded_server(Guard(max_connections_per_client=2))
    try:
        loop = asyncio.get_running_loop()
        held = [await loop.run_in_executor(None, attacker_socket, url) for _ in range(2)]
        third = await loop.run_in_executor(None, attacker_socket, url)
        third.settimeout(5)
        answer = await loop.run_in_executor(None, third.recv, 4096)
        assert answer.startswith(b"HTTP/1.1 503")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "busy"
        # Another address is not affected.
        _, status = await loop.run_in_executor(None, probe, url, "/")
        assert status == 200
        for sock in held + [third]:
            sock.close()
    finally:
        await runner.cleanup()


async def test_body_budget_and_unread_answers():
    guard = Guard(max_body_bytes_per_client=2 * MIB, answer_timeout_s=1.0, max_unread_per_client=256 * 1024)
    runner, url = await _guarded_server(guard, answer=b"\x00" * (8 * MIB))
    loop = asyncio.get_running_loop()
    try:
        # A body that would pass the client's budget is refused before it is read.
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/", data=b"\x00" * (3 * MIB)) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"]["code"] == "busy"
        # An 8 MiB answer that is never read: the connection is cut after answer_timeout_s.
        sock = await loop.run_in_executor(None, lambda: attacker_socket(url, rcvbuf=4096))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.5)
        # While it is unread, the address's next request is refused.
        other = await loop.run_in_executor(None, attacker_socket, url)
        other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        other.settimeout(5)
        assert (await loop.run_in_executor(None, other.recv, 64)).startswith(b"HTTP/1.1 503")
        other.close()
        for _ in range(40):
            await asyncio.sleep(0.2)
            if guard.refused["unread_answer"]:
                break
        assert guard.refused["unread_answer"] == 1
        assert await loop.run_in_executor(None, is_closed, sock)
        sock.close()
    finally:
        await runner.cleanup()


async def test_a_trickled_body_is_cut_at_the_body_deadline():
    guard = Guard(head_timeout_s=0.5, body_timeout_s=2.0, min_body_rate=1)
    runner, url = await _guarded_server(guard)
    loop = asyncio.get_running_loop()
    try:
        sock = await loop.run_in_executor(None, attacker_socket, url)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        start = loop.time()
        while loop.time() - start < 6:
            await asyncio.sleep(0.2)
            if await loop.run_in_executor(None, is_closed, sock):
                break
            try:
                sock.sendall(b"10\r\n" + b"\x00" * 16 + b"\r\n")   # above the (tiny) minimum rate
            except OSError:
                break
        assert guard.refused["slow_body"] == 1
        assert loop.time() - start < 4.5
        sock.close()
    finally:
        await runner.cleanup()


def test_large_bodies_of_others_never_starve_a_small_request():
    # The first guard let a few addresses holding slow 4 MiB bodies fill the shared budget, and
    # an honest sync from elsewhere was answered busy (bench/run.py attack, from one /24).
    from types import SimpleNamespace

    guard = Guard(max_body_bytes=8 * MIB, max_body_bytes_per_client=4 * MIB,
                  max_body_bytes_per_subnet=6 * MIB, small_body_bytes=64 * 1024)
    big = SimpleNamespace(content_length=4 * MIB, body_exists=True)
    chunked = SimpleNamespace(content_length=None, body_exists=True)
    small = SimpleNamespace(content_length=2_000, body_exists=True)
    # One /24 holds what its budget allows; a second large body from it is refused.
    assert guard.begin("10.0.0.1", big, "10.0.0.0/24")[1] is None
    assert guard.begin("10.0.0.2", big, "10.0.0.0/24")[1] is not None
    # Another network fills the rest of the shared budget; then nobody's large body fits...
    assert guard.begin("10.0.1.1", big, "10.0.1.0/24")[1] is None
    assert guard.begin("192.0.2.1", chunked, "192.0.2.0/24")[1] is not None
    # ...but a small request from anyone, the attackers' own /24 included, still is admitted.
    reserved, why = guard.begin("192.0.2.1", small, "192.0.2.0/24")
    assert why is None and reserved == 2_000
    assert guard.begin("10.0.0.3", small, "10.0.0.0/24")[1] is None
    guard.end("192.0.2.1", reserved, "192.0.2.0/24")
    guard.end("10.0.0.1", 4 * MIB, "10.0.0.0/24")
    # Released: the first /24 may send a large body again.
    assert guard.begin("10.0.0.2", big, "10.0.0.0/24")[1] is None
