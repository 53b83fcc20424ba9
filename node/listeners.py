"""The guarded listener that serves every HTTP application of the node.

The gossip API, the member web UI and the public view each listen on a socket of their own;
all three are started here (:func:`start_listener`) so that one hostile address cannot make
any of them hold memory, sockets or the event loop (docs/security.md, sections 2 and 10):

- a connection's life is split into phases, each with a deadline checked once a second by a
  watchdog: *idle* (nothing of a request yet: ``listener_idle_timeout_s``), *head* (part of
  a request head: ``listener_head_timeout_s``), *request* (the body must arrive in full within
  ``listener_body_timeout_s`` and, after the first ``listener_head_timeout_s``, at an average of
  at least ``listener_min_body_rate``; an answer written and not taken for
  ``listener_answer_timeout_s`` cuts the connection).  A connection past a deadline is aborted,
  which drops its buffers at once.
- connections are counted in total, per client and per IPv4 /24; one past a cap is answered
  ``503 busy`` and closed before anything of it is read.
- requests in flight, request-body bytes (reserved from Content-Length, or the largest body
  when chunked) and unread answer bytes are counted per client; large bodies also per IPv4 /24
  and in total (small ones, a sync's requests, are never starved by others' large bodies); a
  request past a cap is answered ``503 busy`` before its body is read.
- what clients send is logged through one logger whose lines are capped per minute, and
  malformed HTTP is logged at debug only (:class:`ClientLogFilter`).

A *client* is an IPv4 address, or an IPv6 /64 (one subscriber's allocation), with an
IPv4-mapped IPv6 address counted as its IPv4 address (:func:`client_key`).  Loopback addresses
are keyed like any other IPv4 address.

aiohttp has no deadline for reading a request head nor a cap on connections, so the handler
class is a small subclass of aiohttp's ``RequestHandler``; it relies on two of its methods
(``data_received`` and ``_handle_request``), stable since aiohttp 3.8.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from dazibao.protocol import limits

__all__ = [
    "url_of",
    "is_loopback",
    "client_key",
    "subnet_key",
    "Guard",
    "GuardedSite",
    "make_runner",
    "start_listener",
    "ClientLogFilter",
    "install_log_guard",
    "HTTP_LOG",
]

#: The logger of everything aiohttp says about what clients sent (bad requests, resets, a
#: handler's failure).  Its lines pass through a ClientLogFilter.
HTTP_LOG = logging.getLogger("dazibao.http")

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_IDLE, _HEAD, _REQUEST = "idle", "head", "request"
WATCHDOG_INTERVAL_S = 1.0
#: Seconds aiohttp keeps reading (and discarding) the unread rest of a body after the answer.
_LINGER_S = 5.0


# Kept parsed (client_key_cache_addresses): every request is counted under these keys, and
# parsing an address is a tenth of the event loop's time under many small requests.
@functools.lru_cache(maxsize=limits.CLIENT_KEY_CACHE_ADDRESSES)
def client_key(host: str) -> str:
    """The key a client is counted under: an IPv4 address as itself, an IPv6 address as its /64
    (``"2001:db8:1:2::/64"``), an IPv4-mapped IPv6 address as its IPv4 address.  Anything that
    is not an IP address (a Unix socket, an unknown peer) is its own key."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@functools.lru_cache(maxsize=limits.CLIENT_KEY_CACHE_ADDRESSES)
def subnet_key(host: str) -> str | None:
    """The IPv4 /24 of a client (``"198.51.100.0/24"``), the looser second tier of the caps; None
    for an IPv6 client (its /64 is already its key) or anything that is not an IP address."""
    key = client_key(host)
    try:
        ip = ipaddress.ip_address(key)
    except ValueError:
        return None
    return str(ipaddress.IPv4Network((int(ip) >> 8 << 8, 24)))


def _busy_bytes(message: str) -> bytes:
    body = f'{{"error": {{"code": "busy", "message": "{message}"}}}}'.encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


_BUSY_CONNECTIONS = _busy_bytes("too many connections; try again later")


def busy_response(message: str) -> web.Response:
    """The 503 answer (the one JSON error shape) to a request refused for lack of room."""
    resp = web.json_response({"error": {"code": "busy", "message": message}}, status=503,
                             headers={"Retry-After": "5"})
    # The body of a refused request is never read: close rather than drain it.
    resp.force_close()
    return resp


class Guard:
    """The bookkeeping and the watchdog of one listener (see the module docstring).

    Every bound is a keyword so that tests can use small ones; the defaults are the limits.
    ``refused`` counts refusals and cut connections by reason.
    """

    def __init__(
        self,
        *,
        max_connections: int = limits.MAX_CONNECTIONS,
        max_connections_per_client: int = limits.MAX_CONNECTIONS_PER_CLIENT,
        max_connections_per_subnet: int = limits.MAX_CONNECTIONS_PER_SUBNET,
        max_in_flight_per_client: int = limits.MAX_REQUESTS_IN_FLIGHT_PER_CLIENT,
        max_body_bytes: int = limits.MAX_BODY_BYTES_IN_FLIGHT,
        max_body_bytes_per_client: int = limits.MAX_BODY_BYTES_IN_FLIGHT_PER_CLIENT,
        max_body_bytes_per_subnet: int = limits.MAX_BODY_BYTES_IN_FLIGHT_PER_SUBNET,
        small_body_bytes: int = limits.SMALL_BODY_BYTES,
        max_unread_per_client: int = limits.MAX_UNREAD_ANSWER_BYTES_PER_CLIENT,
        largest_body: int = limits.MAX_REQUEST_BYTES,
        idle_timeout_s: float = limits.LISTENER_IDLE_TIMEOUT_S,
        head_timeout_s: float = limits.LISTENER_HEAD_TIMEOUT_S,
        body_timeout_s: float = limits.LISTENER_BODY_TIMEOUT_S,
        min_body_rate: float = limits.LISTENER_MIN_BODY_RATE,
        answer_timeout_s: float = limits.LISTENER_ANSWER_TIMEOUT_S,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.max_connections_per_subnet = max_connections_per_subnet
        self.max_in_flight_per_client = max_in_flight_per_client
        self.max_body_bytes = max_body_bytes
        self.max_body_bytes_per_client = max_body_bytes_per_client
        self.max_body_bytes_per_subnet = max_body_bytes_per_subnet
        self.small_body_bytes = small_body_bytes
        self.max_unread_per_client = max_unread_per_client
        self.largest_body = largest_body
        self.idle_timeout_s = idle_timeout_s
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self.min_body_rate = min_body_rate
        self.answer_timeout_s = answer_timeout_s
        self.connections: set[GuardedHandler] = set()
        self._by_client: dict[str, set[GuardedHandler]] = {}
        self._by_subnet: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._body_bytes = 0
        self._body_by_client: Counter[str] = Counter()
        self._body_by_subnet: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._watchdog: asyncio.Task[None] | None = None

    # --- connections ---------------------------------------------------------------------

    def admit(self, conn: GuardedHandler) -> bool:
        """Count a new connection; False (and nothing counted) when a cap is reached."""
        if (len(self.connections) >= self.max_connections
                or len(self._by_client.get(conn.client, ())) >= self.max_connections_per_client
                or (conn.subnet is not None
                    and self._by_subnet[conn.subnet] >= self.max_connections_per_subnet)):
            self.refused["connections"] += 1
            return False
        self.connections.add(conn)
        self._by_client.setdefault(conn.client, set()).add(conn)
        if conn.subnet is not None:
            self._by_subnet[conn.subnet] += 1
        return True

    def forget(self, conn: GuardedHandler) -> None:
        """Uncount a connection that ended (idempotent)."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        peers = self._by_client.get(conn.client)
        if peers is not None:
            peers.discard(conn)
            if not peers:
                del self._by_client[conn.client]
        if conn.subnet is not None:
            self._by_subnet[conn.subnet] -= 1
            if self._by_subnet[conn.subnet] <= 0:
                del self._by_subnet[conn.subnet]

    # --- requests ------------------------------------------------------------------------

    def unread_bytes(self, client: str) -> int:
        """Answer bytes written to ``client``'s connections and not yet taken by it."""
        total = 0
        for conn in self._by_client.get(client, ()):
            transport = conn.transport
            if transport is not None:
                total += transport.get_write_buffer_size()
        return total

    def begin(self, client: str, request: web.BaseRequest, subnet: str | None = None) -> tuple[int, str | None]:
        """Admit a request: returns (reserved body bytes, None), or (0, why) when refused.

        The body is reserved before it is read: its Content-Length, or the largest body the
        listener takes when the length is unknown (chunked), so that many slow bodies cannot
        add up to more than the budgets however they are sent.  A large body counts against
        the client's budget, its /24's and the shared one; a small one (``small_body_bytes``:
        a reconcile round, a fetch, a fresh post) against the client's only, so that whoever
        fills the shared budget with slow large bodies cannot stop an honest peer's sync.
        """
        if self._in_flight[client] >= self.max_in_flight_per_client:
            self.refused["in_flight"] += 1
            return 0, "too many requests in progress from this address"
        if self.unread_bytes(client) > self.max_unread_per_client:
            self.refused["unread_answers"] += 1
            return 0, "answers to this address are still unread"
        length = request.content_length
        if length is None:
            reserve = self.largest_body if request.body_exists else 0
        else:
            reserve = min(length, self.largest_body)
        if self._body_by_client[client] + reserve > self.max_body_bytes_per_client:
            self.refused["body_bytes"] += 1
            return 0, "too many request bodies in progress from this address; try again later"
        shared = reserve > self.small_body_bytes
        if shared and (self._body_bytes + reserve > self.max_body_bytes
                       or (subnet is not None
                           and self._body_by_subnet[subnet] + reserve > self.max_body_bytes_per_subnet)):
            self.refused["body_bytes"] += 1
            return 0, "too many request bodies in progress; try again later"
        self._in_flight[client] += 1
        self._body_by_client[client] += reserve
        if shared:
            self._body_bytes += reserve
            if subnet is not None:
                self._body_by_subnet[subnet] += reserve
        return reserve, None

    def end(self, client: str, reserved: int, subnet: str | None = None) -> None:
        """Release what :meth:`begin` counted for one request."""
        self._in_flight[client] -= 1
        if self._in_flight[client] <= 0:
            del self._in_flight[client]
        self._body_by_client[client] -= reserved
        if self._body_by_client[client] <= 0:
            del self._body_by_client[client]
        if reserved > self.small_body_bytes:
            self._body_bytes -= reserved
            if subnet is not None:
                self._body_by_subnet[subnet] -= reserved
                if self._body_by_subnet[subnet] <= 0:
                    del self._body_by_subnet[subnet]

    # --- the watchdog --------------------------------------------------------------------

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="listener watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            try:
                self.check(loop.time())
            except Exception:  # pragma: no cover - a bug here must not end the watchdog
                HTTP_LOG.exception("listener watchdog failed")

    def check(self, now: float) -> None:
        """Abort every connection past one of its deadlines."""
        for conn in list(self.connections):
            reason = conn.overdue(now, self)
            if reason is not None:
                self.refused[reason] += 1
                HTTP_LOG.debug("cut a connection from %s: %s", conn.client, reason)
                conn.cut()


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler with the bookkeeping of a :class:`Guard`."""

    def __init__(self, guard: Guard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._app_handler = manager.request_handler
        self.client = ""
        self.subnet: str | None = None
        self.refused = False
        self.phase = _IDLE
        self.since = 0.0
        self.body_seen = 0
        self.request: web.BaseRequest | None = None
        self.unread_since: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, (tuple, list)) and peer else ""
        self.client = client_key(str(host))
        self.subnet = subnet_key(str(host))
        if not self._guard.admit(self):
            # Answered and closed before anything is read: nothing of aiohttp is started.
            self.refused = True
            transport.write(_BUSY_CONNECTIONS)  # type: ignore[attr-defined]
            transport.close()
            return
        self.since = asyncio.get_running_loop().time()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if data:
            if self.phase == _IDLE:
                self.phase, self.since = _HEAD, asyncio.get_running_loop().time()
            elif self.phase == _REQUEST:
                self.body_seen += len(data)
        super().data_received(data)

    async def _handle_request(  # type: ignore[override]
        self, request: web.BaseRequest, start_time: float, request_handler: _Handler,
    ) -> tuple[web.StreamResponse, bool]:
        loop = asyncio.get_running_loop()
        self.phase, self.since, self.body_seen, self.request = _REQUEST, loop.time(), 0, request
        self.unread_since = None
        if request_handler is self._app_handler:
            request_handler = self._guarded(request_handler)
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self.phase, self.since, self.request, self.unread_since = _IDLE, loop.time(), None, None

    def _guarded(self, handler: _Handler) -> _Handler:
        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            reserved, why = self._guard.begin(self.client, request, self.subnet)
            if why is not None:
                return busy_response(why)
            try:
                return await handler(request)
            finally:
                self._guard.end(self.client, reserved, self.subnet)

        return guarded

    def overdue(self, now: float, guard: Guard) -> str | None:
        """Which deadline this connection is past, if any."""
        transport = self.transport
        if transport is None:
            return None
        age = now - self.since
        if self.phase == _IDLE:
            return "idle" if age > guard.idle_timeout_s else None
        if self.phase == _HEAD:
            return "slow_head" if age > guard.head_timeout_s else None
        request = self.request
        if request is not None and not request.content.is_eof():
            if age > guard.body_timeout_s:
                return "slow_body"
            grace = guard.head_timeout_s
            if age > grace and self.body_seen < guard.min_body_rate * (age - grace):
                return "slow_body"
        if transport.get_write_buffer_size() > 0:
            if self.unread_since is None:
                self.unread_since = now
            elif now - self.unread_since > guard.answer_timeout_s:
                return "unread_answer"
        else:
            self.unread_since = None
        return None

    def cut(self) -> None:
        """Abort the connection: its buffers are dropped at once, unlike a graceful close."""
        transport = self.transport
        if transport is not None:
            transport.abort()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are handled by :class:`GuardedHandler` under ``guard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: Guard | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.guard = guard or Guard()

    async def start(self) -> None:
        # BaseSite.start registers the site with its runner; TCPSite.start would bind with the
        # runner's own protocol factory, so the binding below stands in for it.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # The runner's handler options (keep-alive, logger, ...) as aiohttp itself passes them.
        kwargs = dict(getattr(server, "_kwargs", {}))
        guard = self.guard

        def factory() -> GuardedHandler:
            return GuardedHandler(guard, server, loop=loop, **kwargs)

        # With TLS, the guard sees a connection once its handshake is done; a client that never
        # finishes one is dropped after tls_handshake_timeout_s (docs/security.md, "Limits").
        tls: dict[str, Any] = {}
        if self._ssl_context is not None:
            tls = {"ssl": self._ssl_context, "ssl_handshake_timeout": limits.TLS_HANDSHAKE_TIMEOUT_S}
        self._server = await loop.create_server(factory, self._host, self._port, backlog=self._backlog,
                                                reuse_address=self._reuse_address, **tls)
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        guard.start()

    async def stop(self) -> None:
        await self.guard.stop()
        await super().stop()


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner with the listener's options: no access log, the idle timeout as aiohttp's
    own keep-alive, a short linger, and the guarded logger for what clients cause."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=limits.LISTENER_IDLE_TIMEOUT_S,
                         lingering_time=_LINGER_S, logger=HTTP_LOG)


async def start_listener(runner: web.AppRunner, host: str, port: int, *, guard: Guard | None = None,
                         ssl_context: ssl.SSLContext | None = None) -> GuardedSite:
    """Set up ``runner`` (if needed) and serve it on ``host:port`` behind a Guard, over TLS with
    ``ssl_context``.  Raises OSError when the address cannot be bound."""
    if runner.server is None:
        await runner.setup()
    site = GuardedSite(runner, host, port, guard=guard, ssl_context=ssl_context)
    await site.start()
    return site


# --- logs ------------------------------------------------------------------------------------


def _is_client_noise(exc: BaseException | None) -> bool:
    # Malformed HTTP (BadHttpMessage, BadStatusLine, LineTooLong, ...) and connections that a
    # client reset are what any address can produce at will; they are not the node's errors.
    return isinstance(exc, (HttpProcessingError, ConnectionError, asyncio.CancelledError))


class ClientLogFilter(logging.Filter):
    """Keeps what clients can make the node log small.

    Records about malformed HTTP or reset connections are kept only when debug logging is on,
    and without their traceback.  Everything else passes at most ``per_minute`` times a minute;
    the next line that passes says how many were dropped.
    """

    def __init__(self, per_minute: int = limits.MAX_CLIENT_LOG_LINES_PER_MIN) -> None:
        super().__init__()
        self.per_minute = per_minute
        self._tokens = float(per_minute)
        self._last = time.monotonic()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno > logging.DEBUG and _is_client_noise(exc):
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {exc}", ()
        now = time.monotonic()
        self._tokens = min(float(self.per_minute), self._tokens + (now - self._last) * self.per_minute / 60.0)
        self._last = now
        if self._tokens < 1:
            self.dropped += 1
            return False
        self._tokens -= 1
        if self.dropped:
            record.msg, record.args = f"{record.getMessage()} ({self.dropped} earlier lines dropped)", ()
            self.dropped = 0
        return True


_LOG_FILTER = ClientLogFilter()
HTTP_LOG.addFilter(_LOG_FILTER)

#: aiohttp's and asyncio's own loggers, which can also speak of what a client did.
CLIENT_FACING_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal", "asyncio")


def install_log_guard() -> None:
    """Put the one ClientLogFilter (a shared per-minute budget) on aiohttp's and asyncio's
    loggers too; idempotent."""
    for name in CLIENT_FACING_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address literal) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_of(runner: web.AppRunner, *, https: bool = False) -> str:
    """The URL a started listener is reached at (its first bound address)."""
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return f"{'https' if https else 'http'}://{shown}:{bound[1]}"
