"""A second, independent implementation of the version-1 post format, written from
docs/protocol.md alone ("Posts", "`POST /v1/posts`", "`POST /v1/fetch`"), against a real node.

It uses none of dazibao's code: posts are built with ``msgpack`` and signed with
``cryptography``'s Ed25519, as an outside implementation would.  What it checks:

* v1 posts it makes are accepted by a node of this release, and come back byte for byte;
* the node's answers parse as the spec says (``[1, accepted, duplicates, [refusal, ...]]``);
* a first-release reader, which knows the four kinds of that release only, can still take
  every object the node now carries (moderation statements, charters, objects of unknown kind)
  apart by the v1 layout, check its id and signature, and tell it is not a kind it displays --
  new kinds do not break old readers;
* an object of a kind nobody knows yet is kept and handed back unchanged;
* what it gets wrong on purpose (a bad signature, a non-canonical encoding) is refused with the
  spec's codes and its own index.
"""

from __future__ import annotations

import hashlib
import time
import urllib.request

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .procs import NodeProcess, dazibao, posts_json

pytestmark = pytest.mark.slow

TAG = b"dazibao/v1/post\x00"
RELEASE_1_KINDS = {"post", "reply", "retract", "profile"}


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def make(key: Ed25519PrivateKey, kind: str, board: str, body: str, parent: bytes | None = None,
         at_ms: int | None = None) -> tuple[bytes, bytes]:
    """A signed v1 post from the spec: (raw, id)."""
    at_ms = int(time.time() * 1000) - 1000 if at_ms is None else at_ms
    unsigned = [1, kind, board, public_bytes(key), at_ms, parent, body]
    unsigned_bytes = msgpack.packb(unsigned, use_bin_type=True)
    post_id = hashlib.sha256(unsigned_bytes).digest()
    signature = key.sign(TAG + post_id)
    return msgpack.packb([unsigned, signature], use_bin_type=True), post_id


def read_v1(raw: bytes) -> dict:
    """Take a signed object apart as a first-release reader does; raise ValueError if it fails."""
    outer = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    if not (isinstance(outer, list) and len(outer) == 2 and isinstance(outer[0], list)):
        raise ValueError("not a signed post")
    unsigned, signature = outer
    if unsigned[0] != 1 or len(unsigned) != 7:
        raise ValueError("not a 7-item version-1 post")
    _, kind, board, author, at_ms, parent, body = unsigned
    post_id = hashlib.sha256(raw[1:len(raw) - 66]).digest()
    if msgpack.packb(outer, use_bin_type=True) != raw:
        raise ValueError("not canonical")
    try:
        Ed25519PublicKey.from_public_bytes(author).verify(signature, TAG + post_id)
    except InvalidSignature:
        raise ValueError("bad signature") from None
    return {"id": post_id, "kind": kind, "board": board, "author": author, "at": at_ms, "parent": parent,
            "body": body, "shown": kind in RELEASE_1_KINDS}


def call(url: str, path: str, message: list) -> list:
    req = urllib.request.Request(url + path, data=msgpack.packb(message, use_bin_type=True), method="POST",
                                 headers={"Content-Type": "application/x-msgpack"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return msgpack.unpackb(resp.read(), raw=False)


def test_an_independent_v1_implementation_interoperates(tmp_path):
    data = tmp_path / "node"
    dazibao(data, "init", "--name", "organizer")
    me = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    thread, thread_id = make(me, "post", "labor", "独立实现 says hello")
    reply, reply_id = make(me, "reply", "labor", "and replies", parent=thread_id)
    profile, _ = make(me, "profile", "labor", "outsider")
    forged = bytearray(make(me, "post", "labor", "forged")[0])
    forged[-1] ^= 1
    loose = msgpack.packb([[1, "post", "labor", public_bytes(me), 1_700_000_000_000, None, "x"], b"\0" * 64],
                          use_bin_type=True).replace(b"\xcf\x00\x00\x01\x8b\xcf\xe5\x68\x00",
                                                     b"\xd3\x00\x00\x01\x8b\xcf\xe5\x68\x00")
    with NodeProcess(data) as node:
        # A kind no release knows yet: kept and passed on (forward compatibility), never shown.
        future, future_id = make(me, "poll", "labor", '{"q": "strike on Friday?"}')
        answer = call(node.url, "/v1/posts?index=1", [1, [thread, reply, profile, bytes(forged), loose, future]])
        assert answer[0] == 1 and answer[1] == 4 and answer[2] == 0
        refusals = {index: code for _, code, index in answer[3]}
        assert refusals == {3: "bad_signature", 4: "non_canonical"}
        assert call(node.url, "/v1/fetch", [1, [future_id]])[1] == [future]
        # The node's own moderation and charter, then what comes back.
        dazibao(data, "post", "--board", "labor", "--as", "organizer", "the organizer's thread")
        dazibao(data, "moderate", "hide", "labor", "--post", reply_id.hex(), "--reason", "off_topic",
                "--as", "organizer")
        dazibao(data, "moderate", "charter", "labor", "--description", "Overtime reports.", "--as", "organizer")
        ours = {thread_id, reply_id}
        back = call(node.url, "/v1/fetch", [1, [thread_id, reply_id]])
        assert back[0] == 1 and back[1] == [thread, reply]
        # Everything the node holds reads as a v1 object; the kinds release 1 did not know are
        # simply not shown.
        # (`dazibao posts` lists the kinds this release knows; the unknown one is asked for by id.)
        ids = [bytes.fromhex(row["id"]) for row in posts_json(data)] + [future_id]
        objects = [read_v1(raw) for raw in call(node.url, "/v1/fetch", [1, ids])[1]]
        assert {o["id"] for o in objects} == set(ids) and ours <= set(ids)
        kinds = {o["kind"]: o["shown"] for o in objects}
        assert kinds["moderation"] is False and kinds["charter"] is False
        assert kinds["post"] and kinds["reply"] and kinds["profile"] and kinds["poll"] is False
        hide = next(o for o in objects if o["kind"] == "moderation")
        assert hide["parent"] == reply_id and hide["body"] == "hide post off_topic"

