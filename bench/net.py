"""How fast posts spread through twelve real nodes, each told one or two peers one way.

Twelve ``dazibao run`` processes on 127.0.0.1, each with its own data folder and its own port,
are started with one or two ``--peer`` URLs drawn from a seeded random directed topology (a
node knows the peers it is told; nobody is told about it).  Settings are the defaults, except
``allow_private_peers = true``, without which peer exchange refuses the loopback addresses of
the other nodes.

Once every node has synced at least once, signed posts made in this process are pushed
(``POST /v1/posts``) into random nodes at random moments, and each node's SQLite file is read
(read-only) until every node holds the post: that time is the post's spread time.  Then the
same again with one node frozen by SIGSTOP (posts injected at live nodes, "all" meaning every
live node).  A post that has not reached every node within ``POST_BOUND_S`` counts as not
reached; in the median and the maximum it counts as ``POST_BOUND_S`` (a lower bound of its
real time).

The deterministic simulation (protocol/simulation.py) runs the same topology with the same
frozen node, when it offers a function for that (:func:`simulate`); the ratio of simulated to
real seconds says how far the model is from the processes.

Targets: median under 5 s and slowest under 15 s; with one node frozen, median under 5 s; the
simulation within 2x of the real figures.

Two environment variables serve comparisons (docs/performance.md, "net"): ``BENCH_NET_NODE_SOURCE``
runs the nodes from another copy of the code, ``BENCH_NET_PUBLIC_URL=1`` sets each node's
``public_url`` to its own gossip URL.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dazibao.protocol import identity, messages, posts

NODES = 12
SEED = 1
#: How long one post may take to reach every node before it counts as not reached.
POST_BOUND_S = 60.0
#: How often every node's store is asked which of the pending posts it holds.  The figures are
#: no finer than this.
POLL_S = 0.02
#: How long a node may take to start, and the network to finish its first syncs.
START_BOUND_S = 120.0
#: A node stopped with SIGTERM has this long to exit before it is killed.
STOP_BOUND_S = 30.0
BOARD = "labor"
TARGET_MEDIAN_S = 5.0
TARGET_MAX_S = 15.0
#: A folder holding a ``dazibao/`` package (``dazibao/node``, ``dazibao/protocol``) for the node
#: processes to run instead of the installed one, e.g. an older revision to compare with.
NODE_SOURCE_ENV = "BENCH_NET_NODE_SOURCE"
#: Set to 1 to give every node its own gossip URL as ``public_url`` (off by default: the
#: benchmark runs default settings), for a node that tells the peers it calls where it is.
PUBLIC_URL_ENV = "BENCH_NET_PUBLIC_URL"


# --- the topology -------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """``peers[i]``: the nodes node ``i`` is told (its ``--peer`` URLs); links go one way."""

    peers: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return len(self.peers)

    def forward(self, start: int) -> set[int]:
        """The nodes reached from ``start`` by following links the way they were given."""
        seen, todo = {start}, [start]
        while todo:
            for nxt in self.peers[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def connected(self, without: int | None = None) -> bool:
        """Whether the nodes other than ``without`` form one piece when links are taken both
        ways (an anti-entropy sync moves posts both ways along the link it uses)."""
        both: dict[int, set[int]] = {i: set() for i in range(self.size) if i != without}
        for i, told in enumerate(self.peers):
            for j in told:
                if without not in (i, j):
                    both[i].add(j)
                    both[j].add(i)
        start = next(iter(both))
        seen, todo = {start}, [start]
        while todo:
            for nxt in both[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return len(seen) == len(both)

    def forward_fraction(self) -> float:
        """The share of ordered pairs (a, b), a != b, where b is reached from a by following
        links the way they were given: the pairs an eager push can serve when a node knows only
        the peers it was told and those they know."""
        n = self.size
        return sum(len(self.forward(a)) - 1 for a in range(n)) / (n * (n - 1))


def make_topology(n: int, rng: random.Random) -> Topology:
    """A random directed topology in which every node has one or two peers and every node is
    reachable: a random tree in which each node is told one node placed before it (so every
    node has a path to the first), the first node told one random node, and every node told a
    second random peer with probability one half."""
    order = list(range(n))
    rng.shuffle(order)
    told: dict[int, list[int]] = {i: [] for i in range(n)}
    told[order[0]].append(rng.choice(order[1:]))
    for pos in range(1, n):
        told[order[pos]].append(order[rng.randrange(pos)])
    for i in range(n):
        if rng.random() < 0.5:
            told[i].append(rng.choice([j for j in range(n) if j != i and j not in told[i]]))
    return Topology(tuple(tuple(sorted(told[i])) for i in range(n)))


def choose_frozen(topology: Topology, rng: random.Random) -> int:
    """A random node whose freezing leaves the others in one piece, so that every live node
    can still receive every post."""
    candidates = [i for i in range(topology.size) if topology.connected(without=i)]
    return rng.choice(candidates)


# --- the simulation's counterpart ------------------------------------------------------------


def simulate(topology: Topology, frozen: int | None, count: int, gap_s: float, seed: int,
             latency_ms: tuple[int, int] = (1, 10)) -> list[float | None] | None:
    """Per-post spread times, in simulated seconds, of the deterministic simulation run on
    ``topology`` with node ``frozen`` hung (None for a post that did not reach every live node
    within POST_BOUND_S); None when protocol/simulation.py cannot be imported or offers no
    ``run_topology``.  Errors inside the simulation propagate."""
    try:
        from dazibao.protocol import simulation

        run = simulation.run_topology
    except (ImportError, AttributeError) as exc:
        print(f"  simulation unavailable: {exc}")
        return None
    told = [(f"n{i}", [f"n{j}" for j in peers]) for i, peers in enumerate(topology.peers)]
    # Posts are pushed in over HTTP here, so the simulated node takes them at once (pickup 0),
    # not up to a second later as it would a post written by `dazibao post`.
    times = run(told, random.Random(seed), frozen=None if frozen is None else f"n{frozen}", posts=count,
                gap_s=gap_s, limit_s=POST_BOUND_S,
                config=simulation.SimConfig(pickup_ms=0, latency_ms=latency_ms))
    return [t if math.isfinite(t) else None for t in times]


# --- the processes ---------------------------------------------------------------------------


def _free_port() -> int:
    # The OS picks a free port; the node binds it a moment later.  Another program could take
    # it in between: the node then exits at once and the network is started again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeExited(RuntimeError):
    """A node process ended on its own (e.g. its port was taken)."""


@dataclass
class RealNode:
    index: int
    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    frozen: bool = False
    _db: sqlite3.Connection | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.data.name}.log"

    def start(self, peers: Sequence[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAZIBAO_")}
        env["DAZIBAO_ALLOW_PRIVATE_PEERS"] = "true"
        if os.environ.get(PUBLIC_URL_ENV) == "1":
            env["DAZIBAO_PUBLIC_URL"] = self.url
        source = os.environ.get(NODE_SOURCE_ENV)
        if source:
            # Ahead of the installed package, so the nodes run that copy of the code.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        args = [sys.executable, "-m", "dazibao.node", "--data-dir", str(self.data), "run",
                "--gossip-listen", f"127.0.0.1:{self.port}", "--ui-listen", "127.0.0.1:0"]
        for peer in peers:
            args += ["--peer", peer]
        (self.data / "node.json").unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def started(self) -> bool:
        """Whether the node has written node.json.  Raises NodeExited if it has ended."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise NodeExited(f"node {self.index} exited with {self.proc.returncode}: {self.tail()}")
        try:
            return bool(json.loads((self.data / "node.json").read_text())["gossip_url"] == self.url)
        except (OSError, ValueError, KeyError):
            return False

    def tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-3:])
        except OSError:
            return ""

    def db(self) -> sqlite3.Connection:
        # Read-only, so this process can never write to a node's store; the node's WAL mode
        # lets it read while the node writes.
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.data / 'dazibao.db'}?mode=ro", uri=True,
                                       isolation_level=None, timeout=5)
        return self._db

    def holding(self, ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``ids`` the node has stored."""
        marks = ",".join("?" * len(ids))
        return {row[0] for row in self.db().execute(f"SELECT id FROM posts WHERE id IN ({marks})", list(ids))}

    def received_at_ms(self, pid: bytes) -> int:
        """When the node stored post ``pid`` (its own clock, ms since the epoch)."""
        row = self.db().execute("SELECT received_at_ms FROM posts WHERE id = ?", (pid,)).fetchone()
        return int(row[0])

    def synced(self) -> bool:
        """Whether the node has synced with at least one peer since it started."""
        return self.db().execute("SELECT 1 FROM peers WHERE last_ok_at_ms IS NOT NULL LIMIT 1").fetchone() is not None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.proc is not None and self.frozen:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def signal_stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_BOUND_S)
        self.proc = None


def wait_for(predicate: Callable[[], bool], what: str, bound: float) -> None:
    """Poll ``predicate`` until it holds.  Raises RuntimeError after ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"net: timed out after {bound:.0f} s waiting for {what}")
        time.sleep(0.1)


class Network:
    """Twelve real nodes wired by a topology.  Use as a context manager: every process is
    resumed (SIGCONT) and stopped (SIGTERM, then SIGKILL) on the way out, whatever happened."""

    def __init__(self, topology: Topology, folder: Path) -> None:
        self.topology = topology
        self.folder = folder
        self.nodes: list[RealNode] = []

    def __enter__(self) -> Network:
        try:
            for attempt in range(3):
                try:
                    self._start(attempt)
                    break
                except NodeExited:
                    # Most likely a port taken between _free_port and the node's bind.
                    self._stop()
                    if attempt == 2:
                        raise
            wait_for(lambda: all(n.synced() for n in self.nodes), "every node's first sync", START_BOUND_S)
        except BaseException:
            self._stop()
            raise
        return self

    def _start(self, attempt: int) -> None:
        self.nodes = []
        for i in range(self.topology.size):
            data = self.folder / f"try{attempt}-node{i:02d}"
            data.mkdir()
            self.nodes.append(RealNode(i, data, _free_port()))
        for node, told in zip(self.nodes, self.topology.peers, strict=True):
            node.start([self.nodes[j].url for j in told])
        wait_for(lambda: all(n.started() for n in self.nodes), "the nodes to start", START_BOUND_S)

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        for node in self.nodes:
            node.thaw()
        for node in self.nodes:
            node.signal_stop()
        deadline = time.monotonic() + STOP_BOUND_S
        for node in self.nodes:
            node.reap(deadline)


# --- one measurement ---------------------------------------------------------------------------


def inject(node: RealNode, post: posts.Post) -> None:
    """Push one post into ``node`` as a peer would.  Raises RuntimeError if it is not accepted."""
    request = urllib.request.Request(node.url + "/v1/posts", data=messages.encode_posts([post.raw]),
                                     headers={"Content-Type": "application/x-msgpack"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        result = messages.decode_push_result(resp.read())
    if result.accepted != 1:
        raise RuntimeError(f"net: node {node.index} did not accept a post: {result}")


def hop_latency_ms(net: Network, topology: Topology, key: identity.SigningKey,
                   samples: int = 12) -> tuple[int, int]:
    """The simulation's link latency, measured on this machine in this run.

    A post pushed into node a is timed until node b, a peer a was told, holds it: one hop,
    which is four messages in the simulation (announce, its answer, the push, its answer).
    Each hop's time is measured by polling b's store every millisecond; the quartiles of a
    quarter of it become ``latency_ms``.  The link latency is the model's one physical
    parameter; what the comparison then tests is the policy: who is told what, and when."""
    a = next(i for i, told in enumerate(topology.peers) if told)
    b = topology.peers[a][0]
    hops = []
    for n in range(samples):
        post = posts.create_post(key, kind="post", board=BOARD, body=f"hop probe {n}",
                                 created_at_ms=int(time.time() * 1000))
        start = time.perf_counter()
        inject(net.nodes[a], post)
        deadline = start + 10
        while not net.nodes[b].holding([post.id]) and time.perf_counter() < deadline:
            time.sleep(0.001)
        hops.append((time.perf_counter() - start) * 1000)
        time.sleep(0.2)  # let the probe finish spreading before the next one
    q1, _, q3 = statistics.quantiles(hops, n=4)
    return max(1, round(q1 / 4)), max(1, round(q3 / 4))


@dataclass
class Phase:
    """The spread times of one phase: None for a post that did not reach every live node."""

    times: list[float | None]

    @property
    def reached(self) -> int:
        return sum(t is not None for t in self.times)

    def censored(self) -> list[float]:
        return [POST_BOUND_S if t is None else t for t in self.times]

    @property
    def median(self) -> float:
        return statistics.median(self.censored())

    @property
    def slowest(self) -> float:
        return max(self.censored())


def measure(net: Network, live: list[RealNode], count: int, window_s: float, rng: random.Random,
            key: identity.SigningKey) -> Phase:
    """Inject ``count`` posts at random live nodes at random moments of ``window_s`` seconds;
    time each until every live node holds it (at most POST_BOUND_S).  A post's time runs from
    just before its push to the latest ``received_at_ms`` the live nodes stored it with, so the
    polling interval does not enter it."""
    plan = sorted(((rng.uniform(0, window_s), rng.choice(live)) for _ in range(count)),
                  key=lambda item: item[0], reverse=True)
    injected: dict[bytes, float] = {}
    pushed_at_ms: dict[bytes, float] = {}
    times: list[float | None] = []
    start = time.monotonic()
    while plan or injected:
        now = time.monotonic()
        while plan and now - start >= plan[-1][0]:
            _, node = plan.pop()
            post = posts.create_post(key, kind="post", board=BOARD,
                                     body=f"net benchmark post {len(times) + len(injected) + 1}",
                                     created_at_ms=int(time.time() * 1000))
            injected[post.id] = time.monotonic()
            pushed_at_ms[post.id] = time.time() * 1000
            inject(node, post)
        if injected:
            pending = list(injected)
            missing: set[bytes] = set()
            for node in live:
                missing |= set(pending) - node.holding(pending)
            now = time.monotonic()
            for pid in pending:
                if pid not in missing:
                    # Exact, not rounded up to the polling interval: every node records when it
                    # stored the post, on this machine's one clock.
                    last = max(node.received_at_ms(pid) for node in live)
                    times.append(max(0.0, last - pushed_at_ms[pid]) / 1000)
                    injected.pop(pid)
                elif now - injected[pid] > POST_BOUND_S:
                    times.append(None)
                    injected.pop(pid)
        for node in net.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise NodeExited(f"node {node.index} exited with {node.proc.returncode}: {node.tail()}")
        time.sleep(POLL_S)
    return Phase(times)


def _line(name: str, phase: Phase, count: int) -> str:
    return (f"  {name:28} median {phase.median:6.2f} s   slowest {phase.slowest:6.2f} s   "
            f"reached all: {phase.reached}/{count}")


def main(quick: bool, seed: int = SEED) -> dict[str, float]:
    """Run both phases and the simulation; print the figures and return them.

    Raises RuntimeError if the nodes do not start or first sync within START_BOUND_S or a post
    is refused, NodeExited if a node process ends during the run; every process is stopped
    either way.
    """
    count, window_s = (8, 20.0) if quick else (30, 150.0)
    rng = random.Random(seed)
    topology = make_topology(NODES, rng)
    frozen = choose_frozen(topology, rng)
    key = identity.SigningKey(rng.randbytes(32))
    print(f"net: {NODES} real nodes on 127.0.0.1, seed {seed}; each told (one way):")
    print("  " + "  ".join(f"{i}->{','.join(map(str, told))}" for i, told in enumerate(topology.peers)))
    print(f"  pairs (a, b) with a one-way path from a to b: {topology.forward_fraction():.0%}; "
          f"frozen later: node {frozen}")
    print(f"  {count} posts per phase at random nodes over {window_s:.0f} s; "
          f"a post not everywhere within {POST_BOUND_S:.0f} s counts as {POST_BOUND_S:.0f} s")
    result: dict[str, float] = {"nodes": NODES, "posts": count, "seed": seed,
                                "forward_pairs_fraction": round(topology.forward_fraction(), 3)}
    source = os.environ.get(NODE_SOURCE_ENV)
    print(f"  nodes run the code in {source or 'the installed dazibao package'}; public_url "
          f"{'set to their own URL' if os.environ.get(PUBLIC_URL_ENV) == '1' else 'unset (the default)'}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dazibao-net-") as tmp, Network(topology, Path(tmp)) as net:
        print(f"  started, every node synced once: {time.monotonic() - t0:.1f} s")
        latency = hop_latency_ms(net, topology, key)
        print(f"  one hop between two nodes takes {4 * latency[0]}-{4 * latency[1]} ms here (quartiles): "
              f"the simulation's link latency is a quarter of it, {latency[0]}-{latency[1]} ms a message")
        real = measure(net, net.nodes, count, window_s, rng, key)
        print(_line("all twelve nodes", real, count))
        net.nodes[frozen].freeze()
        live = [n for n in net.nodes if not n.frozen]
        cold = measure(net, live, count, window_s, rng, key)
        print(_line(f"node {frozen} frozen (SIGSTOP)", cold, count))
    # The simulation of the same topology, with the link latency measured on this machine.
    sim_real = simulate(topology, None, count, window_s / count, seed, latency)
    sim_cold = simulate(topology, frozen, count, window_s / count, seed, latency)
    sim = None if sim_real is None else Phase(sim_real)
    simc = None if sim_cold is None else Phase(sim_cold)
    if sim is not None and simc is not None:
        print(_line("simulation, all nodes", sim, count))
        print(_line(f"simulation, node {frozen} hung", simc, count))
    result.update(sim_latency_ms_low=latency[0], sim_latency_ms_high=latency[1])
    result.update(real_median_s=round(real.median, 3), real_max_s=round(real.slowest, 3),
                  real_reached=real.reached, frozen_median_s=round(cold.median, 3),
                  frozen_max_s=round(cold.slowest, 3), frozen_reached=cold.reached)
    if sim is None or simc is None:
        print("  simulation: comparison pending")
        result["sim_available"] = 0
    else:
        result.update(sim_available=1, sim_median_s=round(sim.median, 3), sim_max_s=round(sim.slowest, 3),
                      sim_reached=sim.reached, sim_frozen_median_s=round(simc.median, 3),
                      sim_frozen_max_s=round(simc.slowest, 3), sim_frozen_reached=simc.reached,
                      ratio_sim_to_real_median=round(sim.median / real.median, 4),
                      ratio_sim_to_real_max=round(sim.slowest / real.slowest, 4),
                      ratio_sim_to_real_frozen_median=round(simc.median / cold.median, 4),
                      ratio_sim_to_real_frozen_max=round(simc.slowest / cold.slowest, 4))
        print(f"  simulated / real seconds: median {sim.median / real.median:.3f}, slowest "
              f"{sim.slowest / real.slowest:.3f}; frozen: median {simc.median / cold.median:.3f}, "
              f"slowest {simc.slowest / cold.slowest:.3f}")
    print(f"  targets: median < {TARGET_MEDIAN_S:.0f} s and slowest < {TARGET_MAX_S:.0f} s; frozen median "
          f"< {TARGET_MEDIAN_S:.0f} s; simulation within 2x; {time.monotonic() - t0:.0f} s in all")
    return result
