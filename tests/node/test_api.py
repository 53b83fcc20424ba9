"""The gossip API against hostile peers: real aiohttp server on 127.0.0.1, real SQLite file.

Every bad request gets its error code in the one JSON error shape, the node keeps serving,
and nothing is stored."""

from __future__ import annotations

import time

import msgpack
import pytest

from dazibao.node.api import LIMITER, RateLimiter, make_gossip_app
from dazibao.node.config import Config, DataDir
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.protocol import identity, limits, messages, posts, reconcile, wire
from dazibao.protocol.keyindex import KeyIndex

KEY = identity.SigningKey(bytes([7]) * 32)
OTHER = identity.SigningKey(bytes([8]) * 32)


def make_post(body="hello", board="labor", at_ms=None, key=KEY, **kw):
    return posts.create_post(key, kind=kw.pop("kind", "post"), board=board, body=body,
                             created_at_ms=at_ms if at_ms is not None else int(time.time() * 1000) - 1000, **kw)


@pytest.fixture
async def node(tmp_path):
    data = DataDir(tmp_path / "node")
    data.create()
    core = NodeCore(data, Config())
    await core.open()
    yield core
    await core.close()


@pytest.fixture
async def client(aiohttp_client, node):
    return await aiohttp_client(make_gossip_app(node))


async def stored(node) -> int:
    return await node.db.call(Store.count)


async def expect_error(resp, status: int, code: str) -> None:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def still_serving(client) -> None:
    resp = await client.get("/v1/info")
    assert resp.status == 200
    info = await resp.json()
    assert info["protocol"] == 1 and info["limits"]["max_post_bytes"] == limits.MAX_POST_BYTES


async def test_info(client):
    await still_serving(client)


async def test_push_fetch_announce_roundtrip(client, node):
    p = make_post("你好 world")
    resp = await client.post("/v1/announce", data=messages.encode_ids([p.id]))
    assert messages.decode_ids(await resp.read()).ids == (p.id,)
    resp = await client.post("/v1/posts", data=messages.encode_posts([p.raw]))
    result = messages.decode_push_result(await resp.read())
    assert (result.accepted, result.duplicates, result.rejected) == (1, 0, ())
    resp = await client.post("/v1/posts", data=messages.encode_posts([p.raw]))
    assert messages.decode_push_result(await resp.read()).duplicates == 1
    resp = await client.post("/v1/fetch", data=messages.encode_ids([p.id, b"\0" * 32]))
    assert messages.decode_posts(await resp.read()).posts == (p.raw,)
    resp = await client.post("/v1/announce", data=messages.encode_ids([p.id]))
    assert messages.decode_ids(await resp.read()).ids == ()
    assert p.key in node.index


async def test_reconcile_round(client, node):
    p = make_post()
    await client.post("/v1/posts", data=messages.encode_posts([p.raw]))
    initiator = reconcile.Initiator(KeyIndex(), ["labor"])
    msg = initiator.initiate()
    while msg is not None:
        resp = await client.post("/v1/reconcile", data=msg)
        assert resp.status == 200
        msg = initiator.reconcile(await resp.read())
    assert initiator.need == [p.id]


@pytest.mark.parametrize("path", ["/v1/reconcile", "/v1/fetch", "/v1/posts", "/v1/announce"])
async def test_oversize_body(client, node, path):
    resp = await client.post(path, data=b"\x00" * (limits.MAX_REQUEST_BYTES + 1))
    await expect_error(resp, 413, "too_large")
    await still_serving(client)
    assert await stored(node) == 0


@pytest.mark.parametrize("path", ["/v1/reconcile", "/v1/fetch", "/v1/posts", "/v1/announce"])
@pytest.mark.parametrize("body,code", [
    (b"", "malformed"),
    (b"\x92\x01", "malformed"),                       # truncated msgpack
    (b"\x92\x01\x90\x00", "malformed"),               # trailing byte
    (wire.pack([1, "not a list"]), "bad_field"),      # wrong type
    (wire.pack([3, []]), "unsupported_version"),     # 2 is an announcement that names boards
    (wire.pack({"a": 1}), "bad_field"),
    (b"\xcb" + b"\x00" * 8, "bad_field"),             # a float
])
async def test_malformed_bodies(client, node, path, body, code):
    resp = await client.post(path, data=body)
    assert resp.status == 400
    got = (await resp.json())["error"]["code"]
    # The reconcile decoder checks the message as a whole; any decode code is acceptable there
    # as long as it is a documented code and the node keeps serving.
    if path == "/v1/reconcile":
        assert got in {"malformed", "bad_field", "unsupported_version", "non_canonical"}
    else:
        assert got == code
    await still_serving(client)
    assert await stored(node) == 0


async def test_million_ids_in_one_request(client, node):
    # Packed compactly it is 34 MB: refused by size before it is even decoded.
    ids = [i.to_bytes(32, "big") for i in range(1_000_000)]
    body = msgpack.packb([1, ids], use_bin_type=True)
    for path in ("/v1/fetch", "/v1/announce"):
        resp = await client.post(path, data=body)
        await expect_error(resp, 413, "too_large")
    # Just over the count limit but small in bytes: refused by count.
    body = wire.pack([1, ids[: limits.MAX_IDS_PER_REQUEST + 1]])
    for path in ("/v1/fetch", "/v1/announce"):
        resp = await client.post(path, data=body)
        await expect_error(resp, 413, "too_large")
    await still_serving(client)


async def test_bad_posts_are_rejected_one_by_one(client, node):
    good = make_post("fine")
    forged = bytearray(make_post("forged").raw)
    forged[-1] ^= 1                                              # signature no longer verifies
    future = make_post("from the future", at_ms=int(time.time() * 1000) + 3_600_000)
    other = make_post("by another", key=OTHER)
    wrong_author = wire.pack([[1, "post", "labor", KEY.public_key, other.created_at_ms, None, other.body],
                              other.signature])                  # someone else's signature
    batch = [good.raw, bytes(forged), future.raw, wrong_author, b"\x93garbage"]
    resp = await client.post("/v1/posts?index=1", data=wire.pack([1, batch]))
    assert resp.status == 200
    result = messages.decode_push_result(await resp.read())
    assert result.accepted == 1
    assert sorted(code for _, code in result.rejected) == sorted(
        ["bad_signature", "future", "bad_signature", "malformed"])
    assert result.indices == (1, 2, 3, 4)
    assert await stored(node) == 1
    assert node.counters.rejected["bad_signature"] == 2


async def test_an_oversized_post_is_refused_alone(client, node):
    # One post over max_post_bytes refuses that post, not the request (docs/protocol.md,
    # "POST /v1/posts": one bad post never makes the node refuse the others).
    first, last = make_post("first"), make_post("last")
    oversized = b"\x92" + b"x" * limits.MAX_POST_BYTES
    resp = await client.post("/v1/posts?index=1", data=wire.pack([1, [first.raw, oversized, last.raw]]))
    assert resp.status == 200
    result = messages.decode_push_result(await resp.read())
    assert (result.accepted, result.duplicates) == (2, 0)
    assert result.rejected == ((None, "too_large"),) and result.indices == (1,)
    assert await stored(node) == 2


async def test_refusals_carry_no_index_unless_the_sender_asks(client, node):
    # A node of an earlier revision reads only two-item refusals: it must get them.
    resp = await client.post("/v1/posts", data=wire.pack([1, [make_post("fine").raw, b"\x93garbage"]]))
    assert resp.status == 200
    _, accepted, _, rejected = msgpack.unpackb(await resp.read())
    assert accepted == 1 and rejected == [[None, "malformed"]]


def _signed(key, kind, board, body, at_ms, parent=None) -> bytes:
    """A post signed correctly by ``key`` whatever its fields (create_post would refuse it)."""
    unsigned = [1, kind, board, key.public_key, at_ms, parent, body]
    pid = posts.post_id(wire.pack(unsigned))
    return wire.pack([unsigned, key.sign(posts.POST_SIGNATURE_TAG + pid)])


async def test_every_refusal_names_its_index_and_every_id_that_can_be_told(client, node):
    target = make_post("withdrawn soon")
    retraction = make_post("", kind="retract", parent=target.id)
    spoofed = _signed(KEY, "post", "\u202elabor", "spoofed board", target.created_at_ms)
    good = make_post("kept")
    batch = [retraction.raw, target.raw, b"\x93garbage", spoofed, good.raw, good.raw]
    resp = await client.post("/v1/posts?index=1", data=wire.pack([1, batch]))
    assert resp.status == 200
    result = messages.decode_push_result(await resp.read())
    assert (result.accepted, result.duplicates) == (2, 1)
    # In batch order, each with its index: the target of a same-author retraction of the same
    # batch, bytes too damaged to tell an id, and a canonical post whose board breaks the rule
    # (its id is that of its bytes, though it does not decode in full).
    assert list(zip(result.indices, result.rejected, strict=True)) == [
        (1, (target.id, "retracted")),
        (2, (None, "malformed")),
        (3, (posts.claimed_id(spoofed), "bad_board")),
    ]
    assert node.counters.received == len(batch)
    assert node.counters.rejected["retracted"] == node.counters.rejected["bad_board"] == 1
    # Later copies of the retracted post are answered tombstoned, with their index too.
    resp = await client.post("/v1/posts?index=1", data=wire.pack([1, [good.raw, target.raw]]))
    result = messages.decode_push_result(await resp.read())
    assert (result.accepted, result.duplicates) == (0, 1)
    assert result.rejected == ((target.id, "tombstoned"),) and result.indices == (1,)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
async def test_the_request_content_type_is_not_looked_at(client, node, content_type):
    # docs/protocol.md, "Gossip HTTP API": the endpoint defines the body's format; a node
    # sends application/x-msgpack and answers with it whatever the request said.
    headers = {} if content_type is None else {"Content-Type": content_type}
    resp = await client.post("/v1/posts", data=messages.encode_posts([make_post("typed").raw]), headers=headers)
    assert resp.status == 200 and resp.content_type == "application/x-msgpack"
    assert messages.decode_push_result(await resp.read()).accepted == 1
    resp = await client.post("/v1/posts", data=b"", headers=headers)
    await expect_error(resp, 400, "malformed")
    assert resp.content_type == "application/json"


async def test_too_many_posts_in_a_batch(client, node):
    raws = [make_post(f"p{i}").raw for i in range(3)]
    body = wire.pack([1, raws * (limits.MAX_POSTS_PER_BATCH // 3 + 1)])
    resp = await client.post("/v1/posts", data=body)
    await expect_error(resp, 413, "too_large")
    assert await stored(node) == 0


async def test_unknown_route_and_method(client):
    await expect_error(await client.get("/v1/nothing"), 404, "not_found")
    await expect_error(await client.get("/v1/posts"), 405, "method_not_allowed")
    # The member web UI is never served on the gossip listener.
    await expect_error(await client.get("/"), 404, "not_found")


async def test_a_flood_of_requests_is_rate_limited(client, node):
    statuses = []
    for _ in range(limits.MAX_REQUEST_BURST + 20):
        resp = await client.get("/v1/info")
        statuses.append(resp.status)
        if resp.status == 429:
            body = await resp.json()
            assert body["error"]["code"] == "rate_limited"
    assert statuses.count(200) >= limits.MAX_REQUEST_BURST - 5
    assert 429 in statuses
    assert node.counters.rejected["rate_limited"] >= 1


def test_rate_limiter_refills():
    from dazibao.node.api import RateLimiter

    limiter = RateLimiter(rate=10, burst=2)
    assert limiter.allow("a", 0.0) and limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)          # each client has its own bucket
    assert limiter.allow("a", 0.1)          # 0.1 s at 10/s is one token back


def test_every_endpoint_is_specified_in_the_protocol_doc(tmp_path):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    data = DataDir(tmp_path / "n")
    app = make_gossip_app(NodeCore(data, Config()))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    assert routes == {("GET", "/v1/info"), ("GET", "/v1/peers"), ("POST", "/v1/reconcile"),
                      ("POST", "/v1/fetch"), ("POST", "/v1/posts"), ("POST", "/v1/announce")}
    for method, path in routes:
        assert f"### `{method} {path}`" in doc, f"{method} {path} is not specified in docs/protocol.md"


# --- bounds of the hostile-address release (docs/security.md, sections 2, 3, 6 and 10) ----------


async def _through_middleware(app, remote: str):
    """Run one GET /v1/info through the gossip middleware as if it came from ``remote``."""
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from dazibao.node.api import errors_middleware

    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (remote, 40000) if name == "peername" else default
    request = make_mocked_request("GET", "/v1/info", app=app, transport=transport)
    assert request.remote == remote

    async def ok(_request):
        from aiohttp import web

        return web.Response(text="ok")

    return await errors_middleware(request, ok)


async def test_an_ipv6_64_shares_one_rate_budget(node):
    app = make_gossip_app(node)
    # Every request from another address of one /64: the budget is the /64's, not each address's.
    start = time.monotonic()
    statuses = [(await _through_middleware(app, f"2001:db8:1:2::{i:x}")).status
                for i in range(limits.MAX_REQUEST_BURST + 300)]
    refilled = (time.monotonic() - start) * limits.MAX_REQUESTS_PER_S
    assert 429 in statuses
    assert statuses.count(200) <= limits.MAX_REQUEST_BURST + refilled + 5
    # The next /64 has a budget of its own; so has an IPv4 address.
    assert (await _through_middleware(app, "2001:db8:1:3::1")).status == 200
    assert (await _through_middleware(app, "198.51.100.7")).status == 200


class StoppedClock(RateLimiter):
    """The node's rate limiter with its clock stopped: no bucket refills during a test, however
    slowly a loaded machine runs it, so the counts are exact."""

    def allow(self, client: str, now: float, subnet: str | None = None) -> bool:
        return super().allow(client, 0.0, subnet)

    def penalize(self, client: str, now: float, tokens: float, subnet: str | None = None) -> None:
        super().penalize(client, 0.0, tokens, subnet)


async def test_a_24_cannot_multiply_its_budget_without_bound(node):
    app = make_gossip_app(node)
    app[LIMITER] = StoppedClock()
    ok = 0
    for i in range(limits.MAX_SUBNET_REQUEST_BURST + 600):
        ok += (await _through_middleware(app, f"198.51.100.{i % 250 + 1}")).status == 200
    # 250 addresses with a burst of their own each would pass every request; the /24 passes its
    # burst and no more.
    assert ok == limits.MAX_SUBNET_REQUEST_BURST
    assert (await _through_middleware(app, "198.51.101.1")).status == 200


async def test_refused_requests_cost_more(aiohttp_client, node):
    # Bad input uses the budget refused_request_cost times faster than good requests.
    app = make_gossip_app(node)
    app[LIMITER] = StoppedClock()
    client = await aiohttp_client(app)
    statuses = []
    for _ in range(limits.MAX_REQUEST_BURST):
        resp = await client.post("/v1/fetch", data=b"\xc1")
        statuses.append(resp.status)
    assert statuses.count(400) == -(-limits.MAX_REQUEST_BURST // limits.REFUSED_REQUEST_COST)
    assert 429 in statuses


async def test_info_says_whether_its_board_list_is_complete(client):
    resp = await client.get("/v1/info")
    assert (await resp.json())["boards_complete"] is True


def test_info_lists_the_boards_with_the_newest_activity():
    from dazibao.node.api import _choose_boards
    from dazibao.node.store import BoardInfo

    rows = [BoardInfo(f"b{i:06d}", 1, i) for i in range(100_000)]
    boards, complete = _choose_boards((), rows)
    assert not complete and len(boards) == limits.MAX_INFO_BOARDS
    assert set(boards) == {f"b{i:06d}" for i in range(100_000 - limits.MAX_INFO_BOARDS, 100_000)}
    assert boards == sorted(boards)
    assert _choose_boards(("labor", "劳动"), rows) == (["labor", "劳动"], True)
    assert _choose_boards((), rows[:3]) == (["b000000", "b000001", "b000002"], True)


async def test_a_fetch_answer_is_at_most_max_fetch_answer_bytes(client, node):
    # 1.6 MB from one key: over a stranger's daily bytes, which are not what this test is about.
    await node.db.call(Store.configure_policy, stranger_bytes_per_day=10**9)
    made = [make_post(f"{i} " + "x" * 16_000) for i in range(100)]
    for batch in messages.post_batches([p.raw for p in made]):
        resp = await client.post("/v1/posts", data=messages.encode_posts(batch))
        assert messages.decode_push_result(await resp.read()).accepted == len(batch)
    ids = [p.id for p in made]
    resp = await client.post("/v1/fetch", data=messages.encode_ids(ids))
    data = await resp.read()
    got = messages.decode_posts(data).posts
    assert len(data) <= limits.MAX_FETCH_ANSWER_BYTES
    # The first ones asked for, in order; the asker asks again for the rest.
    assert got == tuple(p.raw for p in made[: len(got)]) and 0 < len(got) < 100
    resp = await client.post("/v1/fetch", data=messages.encode_ids(ids[len(got):]))
    assert messages.decode_posts(await resp.read()).posts[0] == made[len(got)].raw


async def test_four_million_empty_arrays_are_refused_at_once(client, node):
    body = b"\x92\x01\xdd" + (4_000_000).to_bytes(4, "big") + b"\x90" * 4_000_000
    for path in ("/v1/fetch", "/v1/posts", "/v1/announce"):
        start = time.monotonic()
        resp = await client.post(path, data=body)
        await expect_error(resp, 413, "too_large")
        assert time.monotonic() - start < 1.0
    assert await stored(node) == 0


async def test_info_lists_a_new_board_at_once(client):
    await client.get("/v1/info")                        # fills the board list's short cache
    p = make_post(board="新的")
    await client.post("/v1/posts", data=messages.encode_posts([p.raw]))
    assert "新的" in (await (await client.get("/v1/info")).json())["boards"]


@pytest.mark.parametrize(("claimed", "remote", "learned"), [
    ("https://organizer.example:7470", "203.0.113.9", "https://organizer.example:7470"),
    ("http://*:7470", "203.0.113.9", "http://203.0.113.9:7470"),
    ("http://*:7470", "2001:db8::1", "http://[2001:db8::1]:7470"),
    ("http://*:0", "203.0.113.9", ""),
    ("http://*:70000", "203.0.113.9", ""),
    ("http://*:80a", "203.0.113.9", ""),
    ("http://*:7470", "", ""),
])
def test_the_callback_form_of_the_peer_header_names_the_callers_address(claimed, remote, learned):
    from dazibao.node.api import callback_url

    assert callback_url(claimed, remote) == learned


def test_a_node_without_public_url_invites_callbacks_only_where_they_can_work(tmp_path):
    from dazibao.node.config import DataDir, load_config
    from dazibao.node.server import Node

    data = DataDir(tmp_path / "n")
    data.create()
    node = Node(data, load_config(data, {}))
    node.gossip_url = "http://127.0.0.1:7470"
    assert node._origin_for("http://127.0.0.1:9000") == "http://*:7470"     # the same machine
    assert node._origin_for("http://203.0.113.9:7470") == ""                 # never from loopback to afar
    node.gossip_url = "http://0.0.0.0:7470"
    assert node._origin_for("http://203.0.113.9:7470") == "http://*:7470"
    node.config = load_config(data, {"public_url": "https://me.example:7470"})
    assert node._origin_for("http://203.0.113.9:7470") == "https://me.example:7470"
