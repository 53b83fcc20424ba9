"""The gossip HTTP API (docs/protocol.md, "Gossip HTTP API").

``GET /v1/info`` answers JSON; the other endpoints take and return canonical msgpack over
POST.  Every request body is bounded (max_request_bytes); bad input is answered with one JSON
error shape ``{"error": {"code": ..., "message": ...}}`` and an HTTP status, is counted, and
writes nothing.  The member web UI is never served here.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from dazibao.protocol import limits, messages, peers as peer_policy, reconcile
from dazibao.protocol.errors import RemoteProtocolError, TooLargeError

from . import __version__
from .service import NodeCore
from .store import Store

__all__ = ["make_gossip_app", "CORE", "MSGPACK", "error_response"]

log = logging.getLogger("dazibao.api")

CORE = web.AppKey("core", NodeCore)
MSGPACK = "application/x-msgpack"
PROTOCOL_VERSION = 1
PEER_FRESH_MS = 86_400_000


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one JSON error shape of the gossip API."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class RateLimiter:
    """A token bucket per client address (limits: max_requests_per_s, max_request_burst)."""

    MAX_CLIENTS = 10_000

    def __init__(self, rate: float = limits.MAX_REQUESTS_PER_S, burst: float = limits.MAX_REQUEST_BURST) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float) -> bool:
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.MAX_CLIENTS and client not in self._buckets:
            # Forget the clients whose buckets are full again: they are owed nothing.
            self._buckets = {c: (t, l) for c, (t, l) in self._buckets.items()
                             if t + (now - l) * self.rate < self.burst}
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1, now)
        return True


LIMITER = web.AppKey("limiter", RateLimiter)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    core = request.app[CORE]
    if not request.app[LIMITER].allow(request.remote or "", asyncio.get_running_loop().time()):
        core.counters.rejected["rate_limited"] += 1
        return error_response(429, "rate_limited", "too many requests; slow down")
    try:
        return await handler(request)
    except RemoteProtocolError as exc:
        core.counters.rejected[exc.code] += 1
        # Counted always; logged at debug only, so that a hostile peer cannot flood the log.
        log.debug("refused %s from %s: %s", request.path, request.remote, exc)
        status = 413 if isinstance(exc, TooLargeError) else 400
        return error_response(status, exc.code, exc.message)
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


async def info(request: web.Request) -> web.Response:
    core = request.app[CORE]
    await core.refresh()
    boards = await core.db.call(Store.boards)
    return web.json_response({
        "protocol": PROTOCOL_VERSION,
        "software": f"dazibao/{__version__}",
        "all_boards": not core.boards,
        "boards": sorted(core.boards) if core.boards else sorted(b.board for b in boards),
        "posts": len(core.index),
        "limits": {limit.name: limit.value for limit in limits.PROTOCOL_TABLE},
    })


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


async def fetch(request: web.Request) -> web.Response:
    core = request.app[CORE]
    wanted = messages.decode_ids(await _body(request), "fetch request")
    raws = await core.db.call(Store.get_raw, list(wanted.ids))
    # Answer with the first batch that fits; the asker fetches the rest again.
    return _msgpack(messages.encode_posts(next(messages.post_batches(raws), [])))


async def push(request: web.Request) -> web.Response:
    core = request.app[CORE]
    batch = messages.decode_posts(await _body(request), "push")
    report = await core.ingest_raw(batch.posts, source=request.remote or "peer")
    return _msgpack(messages.encode_push_result(report.as_push_result()))


async def announce(request: web.Request) -> web.Response:
    core = request.app[CORE]
    offered = messages.decode_ids(await _body(request), "announce")
    ids = list(offered.ids)
    have = await core.db.call(Store.has, ids)
    gone = await core.db.call(Store.tombstoned, ids)
    missing = [i for i in dict.fromkeys(ids) if i not in have and i not in gone]
    return _msgpack(messages.encode_ids(core.want(missing, core.now_ms())))


def make_gossip_app(core: NodeCore) -> web.Application:
    """The aiohttp application of the gossip listener."""
    app = web.Application(client_max_size=limits.MAX_REQUEST_BYTES, middlewares=[errors_middleware])
    app[CORE] = core
    app[LIMITER] = RateLimiter()
    app.router.add_get("/v1/info", info)
    app.router.add_get("/v1/peers", peer_list)
    app.router.add_post("/v1/reconcile", reconcile_round)
    app.router.add_post("/v1/fetch", fetch)
    app.router.add_post("/v1/posts", push)
    app.router.add_post("/v1/announce", announce)
    return app
