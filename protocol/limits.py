"""Every size, count, time window and resource bound of dazibao, in one table.

The protocol and the node read their limits from here and nowhere else.  A limit has a scope:

- ``protocol``: part of the protocol.  docs/protocol.md ("Limits") lists the same names and
  values, and a test checks that the two agree.  A node that accepts more than these is still
  compatible, but one that sends more will see its messages refused.
- ``node``: a bound this node puts on what one peer, file or web page can make it spend
  (memory, connections, event-loop time, disk, outbound requests).  Local policy, not part of
  the protocol; docs/security.md ("Limits") lists them with their rationale, and a test checks
  that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limit", "TABLE", "PROTOCOL_TABLE", "NODE_TABLE", "by_name"]


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    value: int
    unit: str
    help: str
    #: "protocol" (docs/protocol.md) or "node" (docs/security.md).
    scope: str = "protocol"
    #: Why this value: what it bounds and what a normal peer or member needs.
    why: str = ""


TABLE: tuple[Limit, ...] = (
    # Posts (docs/protocol.md, "Posts").
    Limit("max_post_bytes", 20_480, "bytes", "encoded size of one signed post"),
    Limit("max_body_bytes", 16_384, "bytes", "UTF-8 size of the body of a post or reply"),
    Limit("max_board_chars", 64, "code points", "length of a board name"),
    Limit("max_board_bytes", 192, "bytes", "UTF-8 size of a board name"),
    Limit("max_display_name_chars", 64, "code points", "length of a display name (profile body, key file name)"),
    Limit("max_display_name_bytes", 192, "bytes", "UTF-8 size of a display name"),
    Limit("max_future_skew_s", 300, "seconds", "how far past `now` a post may be dated"),
    # Key files (docs/protocol.md, "Encrypted key files").
    Limit("kdf_min_memory_kib", 8_192, "KiB", "least Argon2id memory a key file may ask for"),
    Limit("kdf_max_memory_kib", 1_048_576, "KiB", "most Argon2id memory a key file may ask for"),
    Limit("kdf_min_iterations", 1, "passes", "least Argon2id passes"),
    Limit("kdf_max_iterations", 16, "passes", "most Argon2id passes"),
    Limit("kdf_max_lanes", 16, "lanes", "most Argon2id lanes"),
    # Reconciliation (docs/protocol.md, "Reconciliation").
    Limit("max_reconcile_msg_bytes", 524_288, "bytes", "encoded size of one reconciliation message"),
    Limit("max_reconcile_ranges", 4_096, "ranges", "ranges in one reconciliation message"),
    Limit("max_idlist_ids", 1_024, "ids", "ids in one IdList range"),
    Limit("max_bound_bytes", 233, "bytes", "length of one range bound (a full key: board, 0x00, time, id)"),
    # Gossip HTTP API (docs/protocol.md, "HTTP API").
    Limit("max_request_bytes", 4_194_304, "bytes", "body of one HTTP request to the gossip API"),
    Limit("max_ids_per_request", 1_024, "ids", "post ids in one fetch or announce request"),
    Limit("max_posts_per_batch", 512, "posts", "posts in one push or fetch response"),
    Limit("max_requests_per_s", 50, "requests/s", "sustained gossip API requests from one client address"),
    Limit("max_request_burst", 200, "requests", "gossip API requests from one client address in a burst"),
    # Bundles (docs/bundles.md).
    Limit("max_bundle_header_bytes", 262_144, "bytes", "payload of a bundle's header frame"),
    Limit("max_bundle_boards", 1_024, "boards", "boards named in a bundle's header"),
    Limit("max_bundle_parts", 9_999, "parts", "parts of one split bundle"),
    # ---- Node-local bounds (scope "node"; docs/security.md, "Limits") ----
    # Node: outbound requests to peers (node/sync.py, node/server.py).
    # Node: the gossip listener (node/api.py, node/listeners.py).
    # Node: web UI and public view pages (node/web/).
    # Node: bundles and storage (protocol/bundle.py, node/store.py).
)

_BY_NAME = {limit.name: limit for limit in TABLE}
assert len(_BY_NAME) == len(TABLE), "duplicate limit name"
assert all(limit.scope in ("protocol", "node") for limit in TABLE)
assert all(limit.why for limit in TABLE if limit.scope == "node"), "a node limit needs its rationale"

#: The limits that are part of the protocol (sent in ``GET /v1/info``, listed in docs/protocol.md).
PROTOCOL_TABLE: tuple[Limit, ...] = tuple(limit for limit in TABLE if limit.scope == "protocol")
#: The node's own resource bounds (listed in docs/security.md).
NODE_TABLE: tuple[Limit, ...] = tuple(limit for limit in TABLE if limit.scope == "node")


def by_name(name: str) -> int:
    """The value of the limit called ``name``; raises KeyError for an unknown name."""
    return _BY_NAME[name].value


MAX_POST_BYTES = by_name("max_post_bytes")
MAX_BODY_BYTES = by_name("max_body_bytes")
MAX_BOARD_CHARS = by_name("max_board_chars")
MAX_BOARD_BYTES = by_name("max_board_bytes")
MAX_DISPLAY_NAME_CHARS = by_name("max_display_name_chars")
MAX_DISPLAY_NAME_BYTES = by_name("max_display_name_bytes")
MAX_FUTURE_SKEW_S = by_name("max_future_skew_s")
KDF_MIN_MEMORY_KIB = by_name("kdf_min_memory_kib")
KDF_MAX_MEMORY_KIB = by_name("kdf_max_memory_kib")
KDF_MIN_ITERATIONS = by_name("kdf_min_iterations")
KDF_MAX_ITERATIONS = by_name("kdf_max_iterations")
KDF_MAX_LANES = by_name("kdf_max_lanes")
MAX_RECONCILE_MSG_BYTES = by_name("max_reconcile_msg_bytes")
MAX_RECONCILE_RANGES = by_name("max_reconcile_ranges")
MAX_IDLIST_IDS = by_name("max_idlist_ids")
MAX_BOUND_BYTES = by_name("max_bound_bytes")
MAX_REQUEST_BYTES = by_name("max_request_bytes")
MAX_IDS_PER_REQUEST = by_name("max_ids_per_request")
MAX_POSTS_PER_BATCH = by_name("max_posts_per_batch")
MAX_REQUESTS_PER_S = by_name("max_requests_per_s")
MAX_REQUEST_BURST = by_name("max_request_burst")
MAX_BUNDLE_HEADER_BYTES = by_name("max_bundle_header_bytes")
MAX_BUNDLE_BOARDS = by_name("max_bundle_boards")
MAX_BUNDLE_PARTS = by_name("max_bundle_parts")
