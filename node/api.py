"""The gossip HTTP API (docs/protocol.md, "Gossip HTTP API").

``GET /v1/info`` answers JSON; the other endpoints take and return canonical msgpack over
POST.  Every request body is bounded (max_request_bytes); bad input is answered with one JSON
error shape ``{"error": {"code": ..., "message": ...}}`` and an HTTP status, is counted, and
writes nothing.  The member web UI is never served here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from dazibao.protocol import gossip, limits, messages, posts, reconcile
from dazibao.protocol import peers as peer_policy
from dazibao.protocol.errors import RemoteProtocolError, TooLargeError

from . import __version__
from .listeners import client_key, subnet_key
from .pushes import PushBatcher
from .service import Decoded, NodeCore
from .store import BoardInfo, StorageFullError, Store

__all__ = ["make_gossip_app", "CORE", "MSGPACK", "error_response"]

log = logging.getLogger("dazibao.api")

CORE = web.AppKey("core", NodeCore)
MSGPACK = "application/x-msgpack"
PROTOCOL_VERSION = 1
PEER_FRESH_MS = 86_400_000


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one JSON error shape of the gossip API."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class _Buckets:
    """Token buckets by key, at most ``MAX_KEYS`` of them."""

    MAX_KEYS = 10_000

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - last) * self.rate)

    def set(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            # Forget the keys whose buckets are full again: they are owed nothing.
            self._buckets = {k: (t, last) for k, (t, last) in self._buckets.items()
                             if t + (now - last) * self.rate < self.burst}
        self._buckets[key] = (tokens, now)


class RateLimiter:
    """A token bucket per client (limits: max_requests_per_s, max_request_burst) and a looser
    one per IPv4 /24 (max_subnet_requests_per_s, max_subnet_request_burst).

    The caller passes the keys of node/listeners.py: an IPv4 address or an IPv6 /64 as
    ``client``, so that the addresses of one /64 share one budget, and the /24 as ``subnet``.
    """

    MAX_CLIENTS = _Buckets.MAX_KEYS

    def __init__(self, rate: float = limits.MAX_REQUESTS_PER_S, burst: float = limits.MAX_REQUEST_BURST,
                 subnet_rate: float = limits.MAX_SUBNET_REQUESTS_PER_S,
                 subnet_burst: float = limits.MAX_SUBNET_REQUEST_BURST) -> None:
        self.rate, self.burst = rate, burst
        self._clients = _Buckets(rate, burst)
        self._subnets = _Buckets(subnet_rate, subnet_burst)

    def allow(self, client: str, now: float, subnet: str | None = None) -> bool:
        """Take one token from the client's bucket and its subnet's; False (nothing taken) if
        either is empty."""
        tokens = self._clients.level(client, now)
        shared = self._subnets.level(subnet, now) if subnet is not None else 1.0
        if tokens < 1 or shared < 1:
            self._clients.set(client, tokens, now)
            return False
        self._clients.set(client, tokens - 1, now)
        if subnet is not None:
            self._subnets.set(subnet, shared - 1, now)
        return True

    def penalize(self, client: str, now: float, tokens: float, subnet: str | None = None) -> None:
        """Take ``tokens`` more (down to an empty bucket) from a client whose request was refused."""
        self._clients.set(client, max(0.0, self._clients.level(client, now) - tokens), now)
        if subnet is not None:
            self._subnets.set(subnet, max(0.0, self._subnets.level(subnet, now) - tokens), now)


LIMITER = web.AppKey("limiter", RateLimiter)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    core = request.app[CORE]
    limiter = request.app[LIMITER]
    client, subnet = client_key(request.remote or ""), subnet_key(request.remote or "")
    if not limiter.allow(client, asyncio.get_running_loop().time(), subnet):
        core.counters.rejected["rate_limited"] += 1
        return error_response(429, "rate_limited", "too many requests; slow down")
    resp = await _answer(request, handler, core)
    if 400 <= resp.status < 500:
        # A refused request costs more than a good one, so that an address that keeps sending
        # bad input is slowed down (backed off) sooner than one that gossips honestly.
        limiter.penalize(client, asyncio.get_running_loop().time(), limits.REFUSED_REQUEST_COST - 1, subnet)
    return resp


async def _answer(request: web.Request, handler: Handler, core: NodeCore) -> web.StreamResponse:
    try:
        return await handler(request)
    except RemoteProtocolError as exc:
        core.counters.rejected[exc.code] += 1
        # Counted always; logged at debug only, so that a hostile peer cannot flood the log.
        log.debug("refused %s from %s: %s", request.path, request.remote, exc)
        status = 413 if isinstance(exc, TooLargeError) else 400
        return error_response(status, exc.code, exc.message)
    except StorageFullError as exc:
        # Nothing was written and reads go on; said once in the log by the store thread, not
        # per request, so that a peer pushing at a full node cannot flood the log.
        core.counters.rejected[exc.code] += 1
        return error_response(507, exc.code, "this node has no room for new posts now; nothing was stored")
    except web.HTTPRequestEntityTooLarge:
        core.counters.rejected["too_large"] += 1
        return error_response(413, "too_large", f"request body exceeds {limits.MAX_REQUEST_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > limits.MAX_REQUEST_BYTES:
        raise TooLargeError(f"request body exceeds {limits.MAX_REQUEST_BYTES} bytes")
    return await request.read()


def _msgpack(data: bytes) -> web.Response:
    return web.Response(body=data, content_type=MSGPACK)


#: Seconds the board list of ``GET /v1/info`` is reused: peers ask at every sync (it reads one
#: short page of the maintained board table, but need not even do that each time).
INFO_CACHE_S = 5.0


class _InfoBoards:
    """The board part of ``/v1/info`` (names and completeness), computed at most every
    INFO_CACHE_S seconds, and again at once when a post arrives on a board it does not list
    (so that a peer syncing right after a first post on a new board is not told too little)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.value: tuple[list[str], bool] = ([], True)
        self._names: frozenset[str] = frozenset()
        self._lock = asyncio.Lock()

    def on_new_posts(self, new: Iterable[posts.Post], source: str | None = None) -> None:
        if self.at is not None and any(p.board not in self._names for p in new):
            self.at = None

    async def get(self, core: NodeCore) -> tuple[list[str], bool]:
        async with self._lock:
            now = asyncio.get_running_loop().time()
            if self.at is None or now - self.at > INFO_CACHE_S:
                rows = await core.reads.call(_info_rows, core.boards)
                self.value = _choose_boards(core.boards, rows)
                self._names = frozenset(self.value[0])
                self.at = asyncio.get_running_loop().time()
            return self.value


def _info_rows(store: Store, configured: Collection[str]) -> list[BoardInfo]:
    """The boards :func:`_choose_boards` needs to see, with their newest activity: none when
    the configured boards fit, else at most max_info_boards + 1 of the most recently active
    (of the configured ones, if any).  Reads that many rows of the maintained board table,
    however many posts and boards the store holds."""
    if configured and len(configured) <= limits.MAX_INFO_BOARDS:
        return []
    count = len(configured) if configured else limits.MAX_INFO_BOARDS + 1
    return [BoardInfo(b, 0, t) for b, t in store.active_boards(count, configured or None)]


def _choose_boards(configured: Collection[str], rows: Iterable[BoardInfo]) -> tuple[list[str], bool]:
    """At most max_info_boards board names, sorted, and whether that is all of them: the
    configured boards, or those with posts; past the cap, those with the newest activity."""
    newest = {r.board: r.last_at_ms for r in rows}
    names = list(configured) if configured else list(newest)
    if len(names) <= limits.MAX_INFO_BOARDS:
        return sorted(names), True
    names.sort(key=lambda b: (-(newest.get(b) or 0), b))
    return sorted(names[: limits.MAX_INFO_BOARDS]), False


INFO_BOARDS = web.AppKey("info_boards", _InfoBoards)


async def info(request: web.Request) -> web.Response:
    core = request.app[CORE]
    await core.refresh()
    boards, complete = await request.app[INFO_BOARDS].get(core)
    answer = {
        "protocol": PROTOCOL_VERSION,
        "software": f"dazibao/{__version__}",
        "all_boards": not core.boards,
        "boards": boards,
        # False when the node carries more than max_info_boards boards and lists only those
        # with the newest activity.
        "boards_complete": complete,
        "posts": len(core.index),
    }
    # A syncing peer asks without the limits table (it never changes while a node runs): half
    # the bytes of an idle sync went into sending it again at every sync.
    if request.query.get("limits") != "0":
        answer["limits"] = {limit.name: limit.value for limit in limits.PROTOCOL_TABLE}
    return web.json_response(answer)


async def peer_list(request: web.Request) -> web.Response:
    """Peers this node has reached lately, for peer exchange (docs/gossip.md)."""
    core = request.app[CORE]
    now = core.now_ms()
    rows = await core.db.call(Store.list_peers)
    healthy = [r for r in rows if r.failures == 0 and r.last_ok_at_ms is not None
               and now - r.last_ok_at_ms < PEER_FRESH_MS]
    healthy.sort(key=lambda r: -(r.last_ok_at_ms or 0))
    urls = [r.url for r in healthy]
    if not core.config.allow_private_peers:
        # Do not hand out this node's private-network neighbours to the world.
        urls = [u for u in urls if _shareable(u)]
    if core.config.public_url:
        urls.insert(0, core.config.public_url)
    return web.json_response({"peers": urls[: peer_policy.MAX_PEERS_PER_EXCHANGE]})


def _shareable(url: str) -> bool:
    try:
        peer_policy.check_learned_peer(url, allow_private=False)
    except RemoteProtocolError:
        return False
    return True


async def reconcile_round(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await _body(request)
    await core.refresh()
    # On the index's own thread: a heavy round on a large store must not stall the loop.
    reply = await core.on_index(reconcile.respond, body)
    return _msgpack(reply)


#: Ids looked up at a time when answering a fetch: the posts are read a slice at a time until
#: the answer is full, rather than all 1024 (up to 20 MiB) at once.
FETCH_SLICE = 64


async def fetch(request: web.Request) -> web.Response:
    """Answer with the first posts asked for that fit in max_fetch_answer_bytes (and one
    PostBatch); the asker fetches the rest again."""
    core = request.app[CORE]
    wanted = messages.decode_ids(await _body(request), "fetch request")
    # A post held in stem state is answered as one not held: until it is fluffed, nobody but
    # its stem may learn that this node has it (docs/gossip.md, "Stem, then fluff").
    ids = [i for i in wanted.ids if i not in core.stem_held]
    raws: list[bytes] = []
    size = 0
    for i in range(0, len(ids), FETCH_SLICE):
        for raw in await core.reads.call(Store.get_raw, ids[i : i + FETCH_SLICE]):
            raws.append(raw)
            size += len(raw)
        if size >= limits.MAX_FETCH_ANSWER_BYTES or len(raws) >= limits.MAX_POSTS_PER_BATCH:
            break
    batch = next(messages.post_batches(raws, max_bytes=limits.MAX_FETCH_ANSWER_BYTES), [])
    return _msgpack(messages.encode_posts(batch))


def _decode_push(body: bytes) -> tuple[messages.PostBatch, list[Decoded]]:
    """A push's body and what each of its posts decodes to; raises what decode_posts raises."""
    batch = messages.decode_posts(body, "push")
    return batch, posts.decode_each(batch.posts)


async def push(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await _body(request)
    # A large batch is decoded on a thread; the count and sizes are checked from the headers
    # first either way (messages.decode_posts), so no body is expensive to refuse.  Each post
    # is decoded once, here (posts.decode_each): in the same thread hop as the body, or, for a
    # push of a single post (bounded by max_post_bytes), on the loop, where a hop to a thread
    # would cost more than the decoding it moves (docs/performance.md, "single").
    if len(body) > limits.PUSH_DECODE_ON_LOOP_BYTES:
        batch, decoded = await asyncio.to_thread(_decode_push, body)
    else:
        batch = messages.decode_posts(body, "push")
        if len(batch.posts) <= limits.PUSH_DECODE_ON_LOOP_POSTS:
            decoded = posts.decode_each(batch.posts)
        else:
            decoded = await asyncio.to_thread(posts.decode_each, batch.posts)
    raws = batch.posts
    # Each post is checked on its own, so one bad post never refuses the others
    # (docs/protocol.md, "POST /v1/posts"), and every refusal names its place in the batch.
    # Checked and stored together with the pushes that arrive at the same moment (node/pushes.py),
    # answered once stored, each exactly as if it had been handled alone.
    if request.query.get("stem") == "1" or request.app[GOSSIP_STEM]:
        # The gossip policy hears of a stem push (docs/protocol.md, "POST /v1/posts") before its
        # posts are stored, and of an ordinary one as a sign that they are being fluffed.  The
        # ids are those of posts.refused_id: of every post that passed steps 1 to 8.
        claimed = declared_peer(request)
        request.app[GOSSIP].pushed(None if claimed == "peer" else claimed, client_key(request.remote or ""),
                                   [item.id for item in decoded if item.id is not None],
                                   request.query.get("stem") == "1")
    good, bad, report = await request.app[PUSHES].push(raws, decoded, declared_peer(request))
    checked, refused = _place(raws, good, bad)
    places: dict[bytes, list[int]] = {}
    for i, post in checked:
        places.setdefault(post.id, []).append(i)
    for pid, code in report.rejected:
        # The store refuses each id once; a copy repeated in the batch counts as a duplicate.
        index = places[pid].pop(0) if pid is not None and places.get(pid) else None
        refused.append((index, pid, code))
    refused.sort(key=lambda r: (r[0] is None, r[0] or 0))
    core.counters.received += len(raws)
    for _, _, code in refused:
        core.counters.rejected[code] += 1
    # Indices only when asked for (docs/protocol.md, "POST /v1/posts"): an older sender reads
    # only two-item refusals.
    return _msgpack(messages.encode_push_result(messages.PushResult(
        len(report.accepted), report.duplicates,
        tuple((pid, code) for _, pid, code in refused), tuple(i for i, _, _ in refused)),
        with_index=request.query.get("index") == "1"))


def _place(raws: Sequence[bytes], good: Sequence[posts.Post],
           bad: Sequence[tuple[bytes | None, str]]) -> tuple[list[tuple[int, posts.Post]],
                                                            list[tuple[int | None, bytes | None, str]]]:
    """Give every checked post and every refusal of ``NodeCore.verify`` its index in ``raws``.

    ``verify`` keeps both lists in batch order and every post lands in exactly one of them, so
    one walk places them: the post at index i is good exactly when it is the next good post's
    bytes (equal bytes always get the same verdict).  A refusal gets the id of its bytes
    whenever they are a canonical post (posts.refused_id), not only when they decode in full.
    """
    checked: list[tuple[int, posts.Post]] = []
    refused: list[tuple[int | None, bytes | None, str]] = []
    g = b = 0
    for i, raw in enumerate(raws):
        if g < len(good) and good[g].raw == raw:
            checked.append((i, good[g]))
            g += 1
        elif b < len(bad):
            refused.append((i, posts.refused_id(raw), bad[b][1]))
            b += 1
    if g != len(good) or b != len(bad):
        raise RuntimeError("the verdicts of a push do not match its posts")
    return checked, refused


async def announce(request: web.Request) -> web.Response:
    """Answer an announcement with the ids this node wants: those of boards it carries (all of
    an older announcement's, which names no board), that it neither has, nor has tombstoned,
    nor remembers refusing (docs/moderation.md), and that it has not already asked another
    announcer for (the gossip policy decides)."""
    core = request.app[CORE]
    offer = messages.decode_announcement(await _body(request))
    ids = list(dict.fromkeys(i for board, group in offer.groups if board is None or core.carries(board)
                             for i in group))
    have = await core.db.call(Store.has, ids)
    gone = await core.db.call(Store.tombstoned, ids)
    refused = await core.db.call(Store.refusals, ids)
    missing = [i for i in ids if i not in have and i not in gone and i not in refused]
    peer = request.headers.get(PEER_HEADER)
    if request.app[GOSSIP_STEM]:
        request.app[GOSSIP].heard(ids)
    return _msgpack(messages.encode_ids(request.app[GOSSIP].announced(peer, missing)))


#: The header in which a caller gives its own public gossip URL (docs/protocol.md, "Dazibao-Peer").
PEER_HEADER = "Dazibao-Peer"


class GossipHooks(Protocol):
    """What the gossip API tells the node's gossip policy (node/server.py implements it)."""

    def announced(self, peer: str | None, ids: Sequence[bytes]) -> list[bytes]:
        """Of ``ids`` (missing here), those to ask the announcer for."""

    def inbound(self, url: str) -> None:
        """A caller says it is reachable at ``url`` (untrusted)."""

    def pushed(self, peer: str | None, client: str, ids: Sequence[bytes], stem: bool) -> None:
        """A caller pushes posts with these ids, marked as stem or not, before they are stored."""

    def heard(self, ids: Sequence[bytes]) -> None:
        """A caller announced ``ids``."""


class _OwnGossip:
    """The policy of an API served on its own (tests, tools): no peers, only the in-flight set."""

    def __init__(self, core: NodeCore) -> None:
        self._core = core
        self._brain = gossip.Gossip(gossip.GossipConfig(), random.Random(), now=core.now_ms())

    def announced(self, peer: str | None, ids: Sequence[bytes]) -> list[bytes]:
        actions = self._brain.handle_event(gossip.Announced(peer, tuple(ids)), self._core.now_ms())
        return [i for a in actions if isinstance(a, gossip.Want) for i in a.ids]

    def inbound(self, url: str) -> None:
        pass

    def pushed(self, peer: str | None, client: str, ids: Sequence[bytes], stem: bool) -> None:
        pass

    def heard(self, ids: Sequence[bytes]) -> None:
        pass


GOSSIP = web.AppKey("gossip", GossipHooks)
#: Whether this node sends posts along a stem (the ``stem`` setting): only then does its policy
#: hear of every push and announcement.
GOSSIP_STEM = web.AppKey("gossip_stem", bool)
PUSHES = web.AppKey("pushes", PushBatcher)


@web.middleware
async def inbound_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the gossip policy of a caller that gave its address, once it was answered well:
    a node that only ever calls this one becomes a peer this one can push to."""
    resp = await handler(request)
    url = request.headers.get(PEER_HEADER)
    if url and resp.status < 400:
        url = callback_url(url[:512], request.remote or "")
        if url:
            request.app[GOSSIP].inbound(url)
    return resp


def declared_peer(request: web.Request) -> str:
    """What a pushed post's source is recorded as: the caller's own gossip URL as it declared it
    (``Dazibao-Peer``, checked like any learned URL), so that the post is not announced back to
    it; ``peer`` when it declared none.  Never the address the request came from: the store
    keeps no caller's IP address (docs/privacy.md)."""
    claimed = callback_url(request.headers.get(PEER_HEADER, "")[:512], request.remote or "")
    if claimed:
        try:
            return peer_policy.normalize_peer_url(claimed)
        except RemoteProtocolError:
            pass
    return "peer"


def callback_url(claimed: str, remote: str) -> str:
    """The URL a caller's ``Dazibao-Peer`` header names: as given, or, for the form
    ``http://*:PORT``, that port of the address the request came from ("" when the form is
    broken).  Either way it is then checked like any URL from peer exchange."""
    prefix = "http://*:"
    if not claimed.startswith(prefix):
        return claimed
    port = claimed[len(prefix):]
    if not (port.isdecimal() and 0 < int(port) < 65536) or not remote:
        return ""
    host = f"[{remote}]" if ":" in remote else remote
    return f"http://{host}:{int(port)}"


def make_gossip_app(core: NodeCore, hooks: GossipHooks | None = None) -> web.Application:
    """The aiohttp application of the gossip listener; ``hooks`` is the node's gossip policy."""
    app = web.Application(client_max_size=limits.MAX_REQUEST_BYTES,
                          middlewares=[errors_middleware, inbound_middleware])
    app[CORE] = core
    app[GOSSIP] = hooks if hooks is not None else _OwnGossip(core)
    app[GOSSIP_STEM] = hooks is not None and getattr(core.config, "stem", False)
    app[LIMITER] = RateLimiter()
    app[INFO_BOARDS] = boards = _InfoBoards()
    core.on_new_posts.append(boards.on_new_posts)

    async def forget(_app: web.Application) -> None:
        with contextlib.suppress(ValueError):
            core.on_new_posts.remove(boards.on_new_posts)

    app.on_cleanup.append(forget)
    app[PUSHES] = pushes = PushBatcher(core)

    async def finish_pushes(_app: web.Application) -> None:
        await pushes.drain()

    app.on_shutdown.append(finish_pushes)
    app.router.add_get("/v1/info", info)
    app.router.add_get("/v1/peers", peer_list)
    app.router.add_post("/v1/reconcile", reconcile_round)
    app.router.add_post("/v1/fetch", fetch)
    app.router.add_post("/v1/posts", push)
    app.router.add_post("/v1/announce", announce)
    return app
