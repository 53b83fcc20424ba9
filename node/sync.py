"""One reconciliation with one peer, both directions (docs/protocol.md, "Sync").

1. ``GET /v1/info``: which boards the peer carries; the scope is what both sides carry.
2. ``POST /v1/reconcile`` rounds until the initiator has nothing more to ask: we learn ``have``
   (ids the peer lacks) and ``need`` (ids we lack).
3. ``POST /v1/fetch`` the needed posts in bounded batches; each is checked and stored.
4. ``POST /v1/posts`` the posts the peer lacks, in bounded batches.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ServerFingerprintMismatch
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from aiohttp_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError

from dazibao.protocol import limits, messages, posts
from dazibao.protocol import peers as peer_policy
from dazibao.protocol.errors import BoardError, RemoteProtocolError
from dazibao.protocol.reconcile import Initiator

from .service import NodeCore
from .store import Store
from .transport import PinMismatch, SpkiPin

__all__ = [
    "PeerError", "PeerClient", "PublicOnlyResolver", "NonPublicAddressError", "SyncReport", "sync_with", "scope_boards",
]

log = logging.getLogger("dazibao.sync")

_T = TypeVar("_T")

MSGPACK = "application/x-msgpack"
ROUNDS_PER_PASS = 32
MAX_PASSES = 1_000


def _timeout(total: float) -> aiohttp.ClientTimeout:
    # sock_read bounds every silence (a tarpit that accepts and says nothing), total bounds a
    # peer that trickles a byte at a time, connect bounds a peer that never accepts.
    return aiohttp.ClientTimeout(total=total, connect=limits.PEER_CONNECT_TIMEOUT_S,
                                 sock_connect=limits.PEER_CONNECT_TIMEOUT_S,
                                 sock_read=limits.PEER_READ_TIMEOUT_S)


#: Reconcile, fetch and push requests may carry up to max_request_bytes each way.
TIMEOUT = _timeout(limits.PEER_REQUEST_TIMEOUT_S)
#: Info, peer-list and announce answers are small: a peer that takes longer is a tarpit.
SHORT_TIMEOUT = _timeout(limits.PEER_SHORT_REQUEST_TIMEOUT_S)

#: The pin of a pinned URL whose pin does not parse: no known key hashes to 32 zero bytes, so
#: every connection to it is refused as a pin mismatch.
_NO_KEY_MATCHES = SpkiPin(bytes(32))

#: Most bytes of an error answer that are read to find its code.
MAX_ERROR_BYTES = 65_536
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class PeerError(Exception):
    """The peer could not be reached or answered with an error.  ``code`` says which."""

    def __init__(self, url: str, code: str, message: str) -> None:
        super().__init__(f"{url}: {code}: {message}")
        self.url, self.code, self.message = url, code, message


@dataclass
class SyncReport:
    peer: str
    boards: list[str] = field(default_factory=list)
    rounds: int = 0
    reconcile_bytes_sent: int = 0
    reconcile_bytes_received: int = 0
    received: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    sent: int = 0
    skipped_tombstoned: int = 0
    #: Ids the peer holds that this node refused by policy: not fetched again.
    skipped_refused: int = 0
    #: Refused or purged ids found on the peer and now part of this node's reconciliation set
    #: (docs/moderation.md, "A refusal must not cost forever"), so that the next sync does not see them again.
    carried: int = 0
    peer_rejected: list[tuple[str, str]] = field(default_factory=list)
    #: Board names in the peer's /v1/info that break the board-name rule (ignored).
    bad_boards: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer, "boards": self.boards, "rounds": self.rounds,
            "reconcile_bytes_sent": self.reconcile_bytes_sent,
            "reconcile_bytes_received": self.reconcile_bytes_received,
            "received": self.received, "duplicates": self.duplicates,
            "rejected": [{"id": i, "code": c} for i, c in self.rejected],
            "sent": self.sent,
            "skipped_tombstoned": self.skipped_tombstoned,
            "skipped_refused": self.skipped_refused,
            "carried": self.carried,
            "peer_rejected": [{"id": i, "code": c} for i, c in self.peer_rejected],
            "bad_boards": self.bad_boards,
        }


class NonPublicAddressError(OSError):
    """A peer that must be public leads to a loopback, private or otherwise local address."""


class PublicOnlyResolver(ThreadedResolver):
    """A resolver that refuses names resolving only to non-public addresses.

    Peers learned from other nodes are untrusted: without this, a hostile node could make this
    one send requests into its own private network (a name that resolves to 10.0.0.1).  It runs
    for every new connection, so a name that changes its answer (DNS rebinding) is checked again
    each time.  Raises NonPublicAddressError.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        public = [r for r in results if peer_policy.is_public_address(r["host"])]
        if not public:
            raise NonPublicAddressError(f"{host} resolves only to non-public addresses")
        return public


class PeerClient:
    """The gossip API of one peer, spoken over an aiohttp session.

    Every request is bounded in time (connect, each read, the whole request) and in the size of
    its answer, and never follows a redirect: a peer answers at its own address or fails.  With
    ``public_only`` (a peer learned by exchange), the URL's host must be a public address or a
    name; the session's resolver (PublicOnlyResolver) checks what a name resolves to.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, *, public_only: bool = False,
                 origin: str = "", proxied: bool = False) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.public_only = public_only
        #: Whether ``session`` goes through a proxy (node/transport.py): only then may an
        #: ``.onion`` peer be called.
        self.proxied = proxied
        # A pinned URL (https://host:port#spki=PIN) is called without its pin, and its TLS key
        # must hash to the pin (node/transport.py, SpkiPin); any other https peer is checked
        # against the system's trust store.
        base, sep, _ = self.url.partition("#")
        self._base = base.rstrip("/")
        self._ssl: bool | SpkiPin = True
        if sep:
            try:
                _, digest = peer_policy.split_pin(peer_policy.normalize_peer_url(self.url))
            except peer_policy.PeerAddressError:
                digest = None
            # A pin that does not parse pins nothing that can match: every request is refused.
            self._ssl = SpkiPin(digest) if digest else _NO_KEY_MATCHES
        #: This node's public gossip URL, sent with every request (docs/protocol.md,
        #: "Dazibao-Peer") so that the peer can call back; empty: none is sent.
        self.origin = origin

    async def _read(self, resp: aiohttp.ClientResponse, limit: int) -> bytes:
        if resp.content_length is not None and resp.content_length > limit:
            raise PeerError(self.url, "too_large", f"answer of {resp.content_length} bytes")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise PeerError(self.url, "too_large", f"answer larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_host(self) -> None:
        # An IP literal never reaches the resolver: check it here, at every request, so that a
        # peer row stored before a rule changed is held to the rule of today.
        try:
            peer_policy.check_learned_peer(self.url, allow_private=False)
        except peer_policy.PeerAddressError as exc:
            raise PeerError(self.url, "private_address", exc.message) from None

    async def _request(self, method: str, path: str, body: bytes | None = None, *,
                       limit: int = limits.MAX_REQUEST_BYTES + 65536,
                       timeout: aiohttp.ClientTimeout = TIMEOUT) -> bytes:
        """One request; the answer's body if it is a 200.  Raises PeerError."""
        if self.public_only:
            self._check_host()
        if not self.proxied and peer_policy.is_onion(urlsplit(self._base).hostname or ""):
            # Never dialled, never looked up in the local DNS (docs/privacy.md).
            raise PeerError(self.url, "onion_needs_proxy",
                            "an onion service is reached only through the proxy setting (Tor)")
        headers = {"Content-Type": MSGPACK} if body is not None else {}
        if self.origin:
            headers["Dazibao-Peer"] = self.origin
        try:
            async with self.session.request(
                method, self._base + path, data=body, timeout=timeout, allow_redirects=False,
                headers=headers or None, ssl=self._ssl,
            ) as resp:
                if 300 <= resp.status < 400:
                    # Following it would let the peer aim this node at any address (the LAN, a
                    # cloud metadata service), past the checks its own address passed.
                    raise PeerError(self.url, "redirect", f"HTTP {resp.status} to {path}: peers must not redirect")
                if resp.status != 200:
                    data = await self._read(resp, MAX_ERROR_BYTES)
                    raise PeerError(self.url, *_error_of(resp.status, data))
                return await self._read(resp, limit)
        except TimeoutError:
            # aiohttp's connect and read timeouts are both ClientErrors and TimeoutErrors.
            raise PeerError(self.url, "timeout", f"no timely answer to {path}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, NonPublicAddressError):
                raise PeerError(self.url, "private_address", str(exc.os_error)) from None
            if isinstance(exc.os_error, PinMismatch):
                raise PeerError(self.url, "pin_mismatch", str(exc.os_error)) from None
            if isinstance(exc, aiohttp.ClientConnectorCertificateError):
                raise PeerError(self.url, "tls_untrusted", "the peer's TLS certificate is not trusted here "
                                "(a self-signed one needs a pin: #spki=)") from None
            raise PeerError(self.url, "unreachable", str(exc) or type(exc).__name__) from None
        except ServerFingerprintMismatch:
            raise PeerError(self.url, "pin_mismatch", "the server's TLS key is not the pinned one") from None
        except ProxyError as exc:
            # The proxy answered but would not connect us (the peer is down, or its policy
            # refuses the address): the peer is unreachable through it.
            raise PeerError(self.url, "unreachable", f"through the proxy: {exc}") from None
        except ProxyConnectionError as exc:
            raise PeerError(self.url, "proxy_unreachable", f"the proxy cannot be reached: {exc}") from None
        except ProxyTimeoutError:
            raise PeerError(self.url, "timeout", f"no timely answer from the proxy to {path}") from None
        except aiohttp.ClientError as exc:
            raise PeerError(self.url, "unreachable", str(exc) or type(exc).__name__) from None

    def _json(self, data: bytes, path: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: "[[[[..." nested a hundred thousand deep.
            raise PeerError(self.url, "malformed", f"{path} is not JSON") from None
        if not isinstance(value, dict):
            raise PeerError(self.url, "malformed", f"{path} is not a JSON object")
        return value

    async def info(self) -> dict[str, Any]:
        """The peer's ``/v1/info``, with ``boards`` holding only valid board names and
        ``bad_boards`` counting the others.  Raises PeerError."""
        # Without the limits table, which this node does not use (docs/protocol.md, "GET /v1/info").
        data = await self._request("GET", "/v1/info?limits=0", limit=limits.MAX_PEER_INFO_BYTES,
                                   timeout=SHORT_TIMEOUT)
        info = self._json(data, "/v1/info")
        boards = info.get("boards")
        if not isinstance(boards, list):
            raise PeerError(self.url, "malformed", "/v1/info lacks a board list")
        most = limits.MAX_INFO_BOARDS
        if len(boards) > most:
            raise PeerError(self.url, "too_large", f"/v1/info lists {len(boards)} boards, more than {most}")
        if not isinstance(info.get("all_boards", False), bool):
            raise PeerError(self.url, "malformed", "/v1/info: all_boards is not true or false")
        good = []
        for board in boards:
            try:
                good.append(posts.check_board(board))
            except BoardError:
                pass
        if boards and not good:
            raise PeerError(self.url, "bad_board", "/v1/info lists no valid board name")
        info["bad_boards"] = len(boards) - len(good)
        info["boards"] = good
        return info

    async def peers(self) -> list[str]:
        """The peer's list of peers for exchange (still untrusted: check each one)."""
        data = await self._request("GET", "/v1/peers", limit=limits.MAX_PEER_INFO_BYTES, timeout=SHORT_TIMEOUT)
        answer = self._json(data, "/v1/peers")
        if not isinstance(answer.get("peers"), list):
            raise PeerError(self.url, "malformed", "/v1/peers lacks a peer list")
        return [u for u in answer["peers"] if isinstance(u, str)][: peer_policy.MAX_PEERS_PER_EXCHANGE]

    async def reconcile(self, message: bytes) -> bytes:
        return await self._request("POST", "/v1/reconcile", message)

    async def fetch(self, ids: Sequence[bytes]) -> list[bytes]:
        data = await self._request("POST", "/v1/fetch", messages.encode_ids(ids))
        return list(self._decode(messages.decode_posts, data).posts)

    async def push(self, raws: Sequence[bytes], *, stem: bool = False) -> messages.PushResult:
        """Push posts in full; with ``stem``, marked as stem posts (docs/protocol.md, "POST
        /v1/posts"), which a node that does not know the marker takes as an ordinary push.
        Raises PeerError."""
        path = "/v1/posts?index=1&stem=1" if stem else "/v1/posts?index=1"
        data = await self._request("POST", path, messages.encode_posts(raws))
        return self._decode(messages.decode_push_result, data)

    async def announce(self, ids: Sequence[bytes]) -> list[bytes]:
        """Offer ids with the older announcement, which names no board; the ids wanted back."""
        data = await self._request("POST", "/v1/announce", messages.encode_ids(ids), timeout=SHORT_TIMEOUT)
        return list(self._decode(messages.decode_ids, data).ids)

    async def announce_boards(self, ids_by_board: Sequence[tuple[str, Sequence[bytes]]]) -> list[bytes]:
        """Offer ids grouped by board (at most max_ids_per_request); the ids wanted back.  A peer
        that knows only the older announcement refuses this one with unsupported_version: it
        is offered the older one.  Raises PeerError."""
        body = messages.encode_announcement(ids_by_board)
        try:
            data = await self._request("POST", "/v1/announce", body, timeout=SHORT_TIMEOUT)
        except PeerError as exc:
            if exc.code != "unsupported_version":
                raise
            return await self.announce([i for _, ids in ids_by_board for i in ids])
        return list(self._decode(messages.decode_ids, data).ids)

    def _decode(self, fn: Callable[[bytes], _T], data: bytes) -> _T:
        try:
            return fn(data)
        except RemoteProtocolError as exc:
            raise PeerError(self.url, exc.code, exc.message) from None
        except RecursionError:
            raise PeerError(self.url, "malformed", "nested too deep") from None


def _error_of(status: int, data: bytes) -> tuple[str, str]:
    """The code and message of a peer's error answer, made safe to log and to show: a code
    that is not a plain identifier becomes ``http_error``, control characters are dropped."""
    try:
        err = json.loads(data)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return "http_error", f"HTTP {status}"
    if not _ERROR_CODE.fullmatch(code):
        code = "http_error"
    return code, _UNPRINTABLE.sub("", message)[:300]


def scope_boards(ours: Sequence[str], ours_all: bool, theirs: Sequence[str], theirs_all: bool) -> list[str]:
    """The boards both sides carry (docs/protocol.md, "Board scope")."""
    candidates = set(ours) | set(theirs)
    return sorted(
        (b for b in candidates if (ours_all or b in ours) and (theirs_all or b in theirs)),
        key=lambda b: b.encode("utf-8"),
    )


Progress = Callable[[str, int, int], None]


def _chunks(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def sync_with(core: NodeCore, client: PeerClient, *, boards: Sequence[str] | None = None,
                    progress: Progress | None = None) -> SyncReport:
    """Reconcile with one peer and move posts both ways.

    Raises PeerError, and nothing else for anything the peer sends: its bytes are refused with
    the code of what is wrong with them (a reconciliation reply that is not an answer, a post
    batch that is not one), never with an exception the caller does not expect.
    """
    try:
        return await _sync_with(core, client, boards=boards, progress=progress)
    except RemoteProtocolError as exc:
        raise PeerError(client.url, exc.code, exc.message) from None
    except RecursionError:
        raise PeerError(client.url, "malformed", "an answer is nested too deep") from None


async def _sync_with(core: NodeCore, client: PeerClient, *, boards: Sequence[str] | None,
                     progress: Progress | None) -> SyncReport:
    report = SyncReport(peer=client.url)
    # The index must hold what other processes changed (a moderator followed, a post written).
    await core.refresh()
    info = await client.info()
    theirs = info["boards"]  # only valid board names (PeerClient.info)
    report.bad_boards = info["bad_boards"]
    ours = await core.carried_boards()
    scope = scope_boards(ours, not core.boards, theirs, bool(info.get("all_boards")))
    if boards:
        wanted = set(boards)
        scope = [b for b in scope if b in wanted]
    report.boards = scope
    if not scope:
        return report
    # A large difference (a fresh node joining a network of a million posts) takes more
    # rounds than one conversation may have: reconcile for a bounded number of rounds, move
    # what was learned, and start again from the smaller difference (docs/protocol.md, "Sync").
    for _ in range(MAX_PASSES):
        # The Initiator reads the index, so it runs on the index's own thread (NodeCore.index).
        initiator = Initiator(core.index, scope)
        message: bytes | None = await core.on_index(lambda _, i=initiator: i.initiate())
        while message is not None and initiator.rounds < ROUNDS_PER_PASS:
            reply = await client.reconcile(message)
            message = await core.on_index(lambda _, i=initiator, r=reply: i.reconcile(r))
        report.rounds += initiator.rounds
        report.reconcile_bytes_sent += initiator.bytes_sent
        report.reconcile_bytes_received += initiator.bytes_received
        before = (report.received, report.sent, report.skipped_tombstoned, report.skipped_refused, report.carried)
        await _transfer(core, client, list(initiator.need), list(initiator.have), report, progress)
        if message is None:
            return report
        if (report.received, report.sent, report.skipped_tombstoned, report.skipped_refused, report.carried) == before:
            raise PeerError(client.url, "no_progress", "reconciliation is not converging")
    raise PeerError(client.url, "no_progress", f"difference not settled in {MAX_PASSES} passes")


async def _transfer(core: NodeCore, client: PeerClient, need: list[bytes], have: list[bytes],
                    report: SyncReport, progress: Progress | None) -> None:
    # Ids retracted, deleted or purged here are never taken back, and ids refused by policy are
    # refused again: do not even fetch them (a mirror with retention would otherwise download
    # every purged post at every sync).  The refused and purged ones the peer holds join this
    # node's reconciliation set (carried), so the next sync with it does not list them again.
    gone: set[bytes] = set()
    refused: set[bytes] = set()
    carried: list[bytes] = []
    for chunk in _chunks(need, limits.MAX_IDS_PER_REQUEST):
        tombs, refusals, keys = await core.db.call(Store.skip_and_carry, list(chunk))
        gone |= tombs
        refused |= refusals
        carried += keys
    await core.carry_keys(carried)
    report.carried += len(carried)
    if gone or refused:
        need = [i for i in need if i not in gone and i not in refused]
        report.skipped_tombstoned += len(gone)
        report.skipped_refused += len(refused - gone)
    done = 0
    for chunk in _chunks(need, limits.MAX_IDS_PER_REQUEST):
        pending = list(chunk)
        while pending:
            raws = await client.fetch(pending)
            if not raws:
                break
            result = await core.ingest_raw(raws, source=client.url)
            report.received += len(result.accepted)
            report.duplicates += result.duplicates
            report.rejected += [((i or b"").hex(), c) for i, c in result.rejected]
            # What was refused by policy or purged on arrival, the peer holds: carried.
            stored = {p.id for p in result.accepted}
            held = [posts.claimed_id(raw) for raw in raws]
            if len(stored) < len(held):
                keys = await core.db.call(Store.mark_carried, [i for i in held if i not in stored])
                await core.carry_keys(keys)
                report.carried += len(keys)
            # The peer answers in request order but may skip ids it no longer has, or stop at
            # its size cap: ask again for what did not come, until nothing new arrives.
            got = {posts.claimed_id(raw) for raw in raws}
            if not got.intersection(pending):
                break
            pending = [i for i in pending if i not in got]
            done += len(raws)
            if progress:
                progress("receive", done, len(need))

    done = 0
    for chunk in _chunks(have, limits.MAX_POSTS_PER_BATCH):
        raws = await core.db.call(Store.get_raw, list(chunk))
        for batch in messages.post_batches(raws):
            pushed = await client.push(batch)
            report.sent += pushed.accepted
            report.peer_rejected += [((i or b"").hex(), c) for i, c in pushed.rejected]
            done += len(batch)
            if progress:
                progress("send", done, len(have))
