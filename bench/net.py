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
real seconds says how far the model is from the processes.  The twelve processes share the
machine's cores, so the simulation models that too (``SimConfig.cores``): each node does its work
one piece at a time, every piece waits for one of the machine's cores, and what each message
costs is measured in the same run, before the network starts, on two nodes of their own
(:func:`calibrate`) -- a caller's CPU per request, a node's CPU to answer an announcement and to
take a pushed post, and the latency left of a hop once its CPU is taken off.  The CPU the twelve
nodes spend per post in each phase (from /proc, their idle use taken off) is printed beside the
simulation's, as a check of the costs and of the number of messages, and so is the CPU other
processes on the machine used meanwhile (other jobs slow the real nodes; the simulation assumes
the cores are the nodes' own).  The simulation runs both phases on one network, as the real
nodes ran them (:func:`simulate_history`); each phase on a fresh network, as this benchmark
compared them before, is printed too.

Targets: median under 5 s and slowest under 15 s; with one node frozen, median under 5 s; the
simulation within 2x of the real figures.

Two environment variables serve comparisons (docs/performance.md, "net"): ``BENCH_NET_NODE_SOURCE``
runs the nodes from another copy of the code, ``BENCH_NET_PUBLIC_URL=1`` sets each node's
``public_url`` to its own gossip URL.
"""

from __future__ import annotations

import http.client
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nodes import NodeExited, NodeProc, free_port  # noqa: E402  (bench/ is on sys.path)

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


def _sim_config(simulation: ModuleType, latency_ms: tuple[float, float], costs: Costs | None, cores: int) -> Any:
    # Posts are pushed in over HTTP here, so the simulated node takes them at once (pickup 0),
    # not up to a second later as it would a post written by `dazibao post`.
    if costs is None or cores <= 0:
        return simulation.SimConfig(pickup_ms=0, latency_ms=latency_ms)
    return simulation.SimConfig(pickup_ms=0, latency_ms=latency_ms, cores=cores, cpu_call_ms=costs.call_ms,
                                cpu_announce_ms=costs.announce_ms, cpu_push_ms=costs.push_ms)


def _told(topology: Topology) -> list[tuple[str, list[str]]]:
    return [(f"n{i}", [f"n{j}" for j in peers]) for i, peers in enumerate(topology.peers)]


def simulate(topology: Topology, frozen: int | None, count: int, gap_s: float, seed: int,
             latency_ms: tuple[float, float] = (1, 10), costs: Costs | None = None, cores: int = 0,
             stats: dict[str, float] | None = None) -> list[float | None] | None:
    """Per-post spread times, in simulated seconds, of the deterministic simulation run on
    ``topology`` with node ``frozen`` hung (None for a post that did not reach every live node
    within POST_BOUND_S); None when protocol/simulation.py cannot be imported or offers no
    ``run_topology``.  With ``costs`` and ``cores`` the simulated nodes share ``cores`` CPUs and
    each message costs what ``costs`` says (``SimConfig.cores``); ``stats`` is filled with the
    run's counts (``run_topology``).  Errors inside the simulation propagate."""
    try:
        from dazibao.protocol import simulation

        run = simulation.run_topology
    except (ImportError, AttributeError) as exc:
        print(f"  simulation unavailable: {exc}")
        return None
    config = _sim_config(simulation, latency_ms, costs, cores)
    times = run(_told(topology), random.Random(seed), frozen=None if frozen is None else f"n{frozen}", posts=count,
                gap_s=gap_s, limit_s=POST_BOUND_S, config=config, stats=stats)
    return [t if math.isfinite(t) else None for t in times]


def simulate_history(topology: Topology, frozen: int, count: int, gap_s: float, seed: int,
                     latency_ms: tuple[float, float], costs: Costs, cores: int, warmup_s: float,
                     stats: list[dict[str, float]]) -> tuple[list[float | None], list[float | None]] | None:
    """:func:`simulate` with the real nodes' history: both phases on one simulated network,
    every node then node ``frozen`` hung, its first post ``warmup_s`` after its nodes start (as
    old as the real network then).  None when the simulation offers no ``run_phases``."""
    try:
        from dazibao.protocol import simulation

        run = simulation.run_phases
    except (ImportError, AttributeError):
        return None
    every, cold = run(_told(topology), random.Random(seed), [None, f"n{frozen}"], posts=count, warmup_s=warmup_s,
                      gap_s=gap_s, limit_s=POST_BOUND_S, config=_sim_config(simulation, latency_ms, costs, cores),
                      stats=stats)
    return ([t if math.isfinite(t) else None for t in every], [t if math.isfinite(t) else None for t in cold])


# --- the processes ---------------------------------------------------------------------------


@dataclass
class RealNode(NodeProc):
    """A node of the real network: ``index`` is its place in the topology."""

    index: int = 0
    frozen: bool = False

    def start(self, peers: Sequence[str] = ()) -> None:
        self.env["DAZIBAO_ALLOW_PRIVATE_PEERS"] = "true"
        if os.environ.get(PUBLIC_URL_ENV) == "1":
            self.env["DAZIBAO_PUBLIC_URL"] = self.url
        self.source = os.environ.get(NODE_SOURCE_ENV) or None
        super().start(peers)


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


def real_node(index: int, data: Path) -> RealNode:
    """Node ``index`` of the network, on a port that is free now."""
    return RealNode(str(index), data, free_port(), index=index)


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
                    # Most likely a port taken between free_port and the node's bind.
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
            self.nodes.append(real_node(i, data))
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


# --- CPU time and the costs of one message --------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by process ``pid``, all its threads: the sum of
    /proc/PID/task/*/schedstat (nanoseconds), or /proc/PID/stat (clock ticks) where the kernel
    keeps no schedstat.  Raises OSError if the process is gone."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                continue  # a thread that just ended
        if total:
            return total / 1e9
    except FileNotFoundError:
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all the machine's cores have been busy since it started, whoever used them
    (/proc/stat: user, nice, system, irq, softirq, and steal: time a hypervisor gave others)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds the given node processes used between :meth:`start` and :meth:`stop`, less
    what they use when nothing happens (``idle``: CPU seconds per second, per node); and how
    many cores other processes (other jobs on the machine) kept busy meanwhile."""

    def __init__(self, nodes: Sequence[RealNode], idle: Sequence[float] | None = None) -> None:
        self.nodes = list(nodes)
        self.idle = list(idle) if idle is not None else [0.0] * len(self.nodes)
        self._t0 = 0.0
        self._cpu0: list[float] = []
        self._busy0 = 0.0
        self._own0 = 0.0
        #: Cores kept busy on average by processes other than the nodes and this one, and the
        #: seconds from start to stop.
        self.others_cores = 0.0
        self.elapsed = 0.0

    def _read(self) -> list[float]:
        pids = [n.proc.pid for n in self.nodes if n.proc is not None]
        if len(pids) != len(self.nodes):
            raise RuntimeError("net: a node process is not running")
        return [cpu_seconds(pid) for pid in pids]

    def start(self) -> None:
        self._busy0 = machine_busy_seconds()
        self._own0 = time.process_time()
        self._cpu0 = self._read()
        self._t0 = time.monotonic()

    def stop(self) -> list[float]:
        """Each node's CPU seconds since start, its idle use taken off."""
        cpu = self._read()
        self.elapsed = elapsed = time.monotonic() - self._t0
        busy = machine_busy_seconds() - self._busy0
        others = busy - (time.process_time() - self._own0) - (sum(cpu) - sum(self._cpu0))
        self.others_cores = max(0.0, others) / elapsed
        return [b - a - rate * elapsed for a, b, rate in zip(self._cpu0, cpu, self.idle, strict=True)]


def idle_rates(nodes: Sequence[RealNode], seconds: float) -> list[float]:
    """Each node's CPU use (seconds per second) while nothing is sent to it: its timers and
    polls, taken off every later reading."""
    meter = CpuMeter(nodes)
    meter.start()
    time.sleep(seconds)
    spent = meter.stop()
    return [max(0.0, d) / meter.elapsed for d in spent]


class Client:
    """One kept-alive HTTP connection to a node, as a peer's client keeps one: each request
    then costs the node what a peer's request costs, without a new connection each time."""

    def __init__(self, node: RealNode, origin_port: int | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        self.headers = {"Content-Type": "application/x-msgpack"}
        if origin_port is not None:
            # What a node on loopback sends: "my gossip API is on this port of my address".
            self.headers["Dazibao-Peer"] = f"http://*:{origin_port}"

    def post(self, path: str, body: bytes) -> bytes:
        self.conn.request("POST", path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"net: {path} answered {resp.status}: {data[:200]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Costs:
    """What one message costs on this machine, measured in this run (see :func:`calibrate`)."""

    #: CPU of the caller of one request of a push (announce, or push of the posts wanted),
    #: answer read, ms.
    call_ms: float
    #: CPU of a node answering one announcement, ms.
    announce_ms: float
    #: CPU of a node taking one push of a post (check, store, hand to gossip), ms.
    push_ms: float
    #: The hop's quartiles, ms: a post pushed into Q until P has stored it.
    hop_ms: tuple[float, float, float]
    #: One message's latency, less its CPU: the quartiles of (hop - CPU on its path) / 4.
    latency_ms: tuple[float, float]
    #: Posts and announcements the costs were measured over.
    posts: int
    announcements: int

    @property
    def path_cpu_ms(self) -> float:
        """The CPU on one hop's path: Q takes the push, announces, pushes; P answers, takes it."""
        return 2 * self.push_ms + 2 * self.call_ms + self.announce_ms


#: Posts and announcements the costs are measured over.
CAL_POSTS = 40
CAL_ANNOUNCEMENTS = 80
#: Pause between calibration posts (each one is done in a few tens of ms) and announcements
#: (under max_requests_per_s, 50 a second from one address).
CAL_POST_GAP_S = 0.15
CAL_ANNOUNCE_GAP_S = 0.03
#: The shortest latency a message is given, ms (a loopback message is not free).
MIN_LATENCY_MS = 0.05
#: How long the twelve nodes' idle CPU use is measured before the first phase, s.
IDLE_S = 6.0


def calibrate(folder: Path, key: identity.SigningKey) -> Costs:
    """Measure the CPU cost of each message on two real nodes of their own, Q told P.

    Every post pushed into Q then makes exactly four requests: Q announces it to P, P wants it,
    Q pushes it, P stores it and announces it back to Q (Q has it and wants nothing).  So, per
    post, Q spends ``push + 2 call + announce`` (it takes the post, calls P twice, answers P's
    announcement) and P ``announce + push + call``: Q's CPU less P's is ``call``.  Announcements
    sent to P directly, of posts P holds, give ``announce``; then ``push`` follows from P's.
    Each reading has the node's idle use taken off.  The hop, push into Q to the post stored at
    P, less its CPU (Q takes it, calls twice, P answers and takes it), is four messages'
    latency (at least MIN_LATENCY_MS each).  Raises RuntimeError or NodeExited if a node does not
    start, sync or take the posts; both nodes are stopped either way."""
    p = real_node(100, folder / "cal-p")
    q = real_node(101, folder / "cal-q")
    for node in (p, q):
        node.data.mkdir()
    try:
        p.start([])
        wait_for(p.started, "calibration node P to start", START_BOUND_S)
        q.start([p.url])
        wait_for(q.started, "calibration node Q to start", START_BOUND_S)
        wait_for(q.synced, "calibration node Q's first sync", START_BOUND_S)
        # P learns Q from Q's call (Dazibao-Peer), and announces what it stores back to it.
        wait_for(lambda: p.db().execute("SELECT 1 FROM peers").fetchone() is not None, "P to learn Q",
                 START_BOUND_S)
        # Both clients send what a node on loopback sends (Dazibao-Peer); Q's own address to Q,
        # which Q then ignores, so that each request costs what a peer's request costs.
        into_q = Client(q, origin_port=q.port)
        to_p = Client(p, origin_port=q.port)
        try:
            def push_one(body: str) -> tuple[bytes, float]:
                post = posts.create_post(key, kind="post", board=BOARD, body=body,
                                         created_at_ms=int(time.time() * 1000))
                at_ms = time.time() * 1000
                result = messages.decode_push_result(into_q.post("/v1/posts?index=1",
                                                                  messages.encode_posts([post.raw])))
                if result.accepted != 1:
                    raise RuntimeError(f"net: calibration node Q did not accept a post: {result}")
                return post.id, at_ms

            # Warm up: connections opened both ways, every code path run once.
            warm = []
            for n in range(3):
                warm.append(push_one(f"calibration warm-up {n}")[0])
                time.sleep(CAL_POST_GAP_S)
            wait_for(lambda: len(p.holding(warm)) == len(warm), "the warm-up posts to reach P", 10)
            idle = idle_rates([q, p], 2.0)
            meter = CpuMeter([q, p], idle)
            meter.start()
            pushed = []
            for n in range(CAL_POSTS):
                pushed.append(push_one(f"calibration post {n}"))
                time.sleep(CAL_POST_GAP_S)
            spent_q, spent_p = meter.stop()
            missing = [pid for pid, _ in pushed if not p.holding([pid])]
            if missing:
                raise RuntimeError(f"net: {len(missing)} calibration posts did not reach P")
            hops = [p.received_at_ms(pid) - at_ms for pid, at_ms in pushed]
            ids = [pid for pid, _ in pushed]
            meter = CpuMeter([p], idle[1:])
            meter.start()
            for n in range(CAL_ANNOUNCEMENTS):
                to_p.post("/v1/announce", messages.encode_announcement([(BOARD, [ids[n % len(ids)]])]))
                time.sleep(CAL_ANNOUNCE_GAP_S)
            (spent_announce,) = meter.stop()
        finally:
            into_q.close()
            to_p.close()
    finally:
        for node in (p, q):
            node.signal_stop()
        deadline = time.monotonic() + STOP_BOUND_S
        for node in (p, q):
            node.reap(deadline)
    # Never below zero, which only a reading thrown off by another job could give.
    announce_ms = max(0.0, 1000 * spent_announce / CAL_ANNOUNCEMENTS)
    call_ms = max(0.0, 1000 * (spent_q - spent_p) / CAL_POSTS)
    push_ms = max(0.0, 1000 * spent_p / CAL_POSTS - announce_ms - call_ms)
    q1, q2, q3 = statistics.quantiles(hops, n=4)
    cpu = 2 * push_ms + 2 * call_ms + announce_ms
    latency = (max(MIN_LATENCY_MS, (q1 - cpu) / 4), max(MIN_LATENCY_MS, (q3 - cpu) / 4))
    return Costs(call_ms=call_ms, announce_ms=announce_ms, push_ms=push_ms, hop_ms=(q1, q2, q3),
                 latency_ms=latency, posts=CAL_POSTS, announcements=CAL_ANNOUNCEMENTS)


# --- one measurement ---------------------------------------------------------------------------


def inject(node: RealNode, post: posts.Post) -> None:
    """Push one post into ``node`` as a peer would.  Raises RuntimeError if it is not accepted."""
    request = urllib.request.Request(node.url + "/v1/posts", data=messages.encode_posts([post.raw]),
                                     headers={"Content-Type": "application/x-msgpack"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        result = messages.decode_push_result(resp.read())
    if result.accepted != 1:
        raise RuntimeError(f"net: node {node.index} did not accept a post: {result}")


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


def _cpu_line(name: str, real_ms: float, sim_ms: float) -> str:
    return f"  CPU per post, {name:22} real {real_ms:6.1f} ms   simulation {sim_ms:6.1f} ms"


def main(quick: bool, seed: int = SEED) -> dict[str, float]:
    """Measure the message costs on a pair of nodes, run both phases on the twelve and the
    simulation with the measured costs; print the figures and return them.

    Raises RuntimeError if the nodes do not start or first sync within START_BOUND_S or a post
    is refused, NodeExited if a node process ends during the run; every process is stopped
    either way.
    """
    count, window_s = (8, 20.0) if quick else (30, 150.0)
    rng = random.Random(seed)
    topology = make_topology(NODES, rng)
    frozen = choose_frozen(topology, rng)
    key = identity.SigningKey(rng.randbytes(32))
    cores = len(os.sched_getaffinity(0))
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
    load = os.getloadavg()
    print(f"  {cores} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dazibao-net-") as tmp:
        costs = calibrate(Path(tmp), key)
        print(f"  message costs, measured on two nodes of their own ({costs.posts} posts, {costs.announcements} "
              f"announcements): a call {costs.call_ms:.2f} ms of the caller's CPU, answering an announcement "
              f"{costs.announce_ms:.2f} ms, taking a push {costs.push_ms:.2f} ms")
        print(f"  one hop takes {costs.hop_ms[0]:.1f}-{costs.hop_ms[2]:.1f} ms (quartiles), "
              f"{costs.path_cpu_ms:.1f} ms of it CPU: the simulation's latency is "
              f"{costs.latency_ms[0]:.2f}-{costs.latency_ms[1]:.2f} ms a message, on {cores} shared cores")
        started = time.monotonic()
        with Network(topology, Path(tmp)) as net:
            print(f"  started, every node synced once: {time.monotonic() - started:.1f} s")
            idle = idle_rates(net.nodes, IDLE_S)
            # The simulated network is as old at its first post as the real one.
            age_s = time.monotonic() - started
            meter = CpuMeter(net.nodes, idle)
            meter.start()
            bench_cpu = time.process_time()
            real = measure(net, net.nodes, count, window_s, rng, key)
            real_cpu = sum(meter.stop())
            real_others = meter.others_cores
            bench_cpu = time.process_time() - bench_cpu
            print(_line("all twelve nodes", real, count))
            net.nodes[frozen].freeze()
            live = [n for n in net.nodes if not n.frozen]
            meter = CpuMeter(live, [rate for n, rate in zip(net.nodes, idle, strict=True) if not n.frozen])
            meter.start()
            cold = measure(net, live, count, window_s, rng, key)
            cold_cpu = sum(meter.stop())
            cold_others = meter.others_cores
            print(_line(f"node {frozen} frozen (SIGSTOP)", cold, count))
    load = os.getloadavg()
    print(f"  nodes idle: {1000 * sum(idle):.1f} ms of CPU a second in all; this process's polling: "
          f"{1000 * bench_cpu / window_s:.0f} ms a second; other processes on the machine kept "
          f"{real_others:.2f} and {cold_others:.2f} cores busy on average during the two phases; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    # The simulation of the same topology and history: both phases one after the other on one
    # network, as old at its first post as the real one, with the costs and latency measured
    # here.  Then each phase on a fresh network, as this benchmark compared them before.
    counts: list[dict[str, float]] = []
    history = simulate_history(topology, frozen, count, window_s / count, seed, costs.latency_ms, costs, cores,
                               age_s, counts)
    fresh: dict[str, float] = {}
    fresh_cold: dict[str, float] = {}
    fresh_real = simulate(topology, None, count, window_s / count, seed, costs.latency_ms, costs, cores, fresh)
    fresh_frozen = simulate(topology, frozen, count, window_s / count, seed, costs.latency_ms, costs, cores,
                            fresh_cold)
    result.update(cores=cores, cost_call_ms=round(costs.call_ms, 3), cost_announce_ms=round(costs.announce_ms, 3),
                  cost_push_ms=round(costs.push_ms, 3), hop_ms=round(costs.hop_ms[1], 2),
                  sim_latency_ms_low=round(costs.latency_ms[0], 3), sim_latency_ms_high=round(costs.latency_ms[1], 3),
                  real_cpu_per_post_ms=round(1000 * real_cpu / count, 2),
                  frozen_cpu_per_post_ms=round(1000 * cold_cpu / count, 2),
                  others_cores=round(real_others, 3), frozen_others_cores=round(cold_others, 3),
                  sim_warmup_s=round(age_s, 1),
                  load_average_1min_end=round(load[0], 2))
    result.update(real_median_s=round(real.median, 3), real_max_s=round(real.slowest, 3),
                  real_reached=real.reached, frozen_median_s=round(cold.median, 3),
                  frozen_max_s=round(cold.slowest, 3), frozen_reached=cold.reached)
    if history is None:
        print("  simulation: comparison pending")
        result["sim_available"] = 0
    else:
        sim, simc = Phase(history[0]), Phase(history[1])
        print(f"  simulation of both phases on one network (its first post {age_s:.0f} s after start, as here):")
        print(_line("simulation, all nodes", sim, count))
        print(_line(f"simulation, node {frozen} hung", simc, count))
        print(_cpu_line("all twelve nodes", 1000 * real_cpu / count, counts[0]["cpu_ms"] / count))
        print(_cpu_line(f"node {frozen} frozen", 1000 * cold_cpu / count, counts[1]["cpu_ms"] / count))
        print(f"  simulated / real seconds: median {sim.median / real.median:.3f}, slowest "
              f"{sim.slowest / real.slowest:.3f}; frozen: median {simc.median / cold.median:.3f}, "
              f"slowest {simc.slowest / cold.slowest:.3f}")
        result.update(sim_available=1, sim_median_s=round(sim.median, 3), sim_max_s=round(sim.slowest, 3),
                      sim_reached=sim.reached, sim_frozen_median_s=round(simc.median, 3),
                      sim_frozen_max_s=round(simc.slowest, 3), sim_frozen_reached=simc.reached,
                      sim_cpu_per_post_ms=round(counts[0]["cpu_ms"] / count, 2),
                      sim_frozen_cpu_per_post_ms=round(counts[1]["cpu_ms"] / count, 2),
                      ratio_sim_to_real_median=round(sim.median / real.median, 4),
                      ratio_sim_to_real_max=round(sim.slowest / real.slowest, 4),
                      ratio_sim_to_real_frozen_median=round(simc.median / cold.median, 4),
                      ratio_sim_to_real_frozen_max=round(simc.slowest / cold.slowest, 4))
        if fresh_real is not None and fresh_frozen is not None:
            # The frozen phase on a fresh network meets nodes that have carried no post yet, and
            # know few callers; the real frozen phase follows the first phase's posts.
            every, hung = Phase(fresh_real), Phase(fresh_frozen)
            print("  each phase on a fresh simulated network instead (its first post 10 s after start):")
            print(_line("  simulation, all nodes", every, count))
            print(_line(f"  simulation, node {frozen} hung", hung, count))
            print(f"    simulated / real seconds: median {every.median / real.median:.3f}, slowest "
                  f"{every.slowest / real.slowest:.3f}; frozen: median {hung.median / cold.median:.3f}, "
                  f"slowest {hung.slowest / cold.slowest:.3f}; CPU per post {fresh['cpu_ms'] / count:.1f} and "
                  f"{fresh_cold['cpu_ms'] / count:.1f} ms")
            result.update(sim_fresh_median_s=round(every.median, 3), sim_fresh_max_s=round(every.slowest, 3),
                          sim_fresh_frozen_median_s=round(hung.median, 3),
                          sim_fresh_frozen_max_s=round(hung.slowest, 3),
                          ratio_fresh_median=round(every.median / real.median, 4),
                          ratio_fresh_max=round(every.slowest / real.slowest, 4),
                          ratio_fresh_frozen_median=round(hung.median / cold.median, 4),
                          ratio_fresh_frozen_max=round(hung.slowest / cold.slowest, 4))
    print(f"  targets: median < {TARGET_MEDIAN_S:.0f} s and slowest < {TARGET_MAX_S:.0f} s; frozen median "
          f"< {TARGET_MEDIAN_S:.0f} s; simulation within 2x; {time.monotonic() - t0:.0f} s in all")
    return result
