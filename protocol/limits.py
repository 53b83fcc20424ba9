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
    Limit("max_sketch_symbols", 1_024, "symbols", "highest coded symbol index + 1 a SketchRequest or Sketch may name",
          why="36 KB of symbols a range: about 700 differences decode in one range; more are found by splitting"),
    Limit("max_sketch_work_keys", 8_192, "keys", "keys whose coded symbols a responder computes afresh for one message",
          why="bounds a stateless responder's CPU per message (tens of ms); symbols of cached blocks cost nothing"),
    Limit("sketch_cached_symbols", 256, "symbols", "coded symbols a key index keeps per block of keys",
          scope="node",
          why="9 KB a block, about 20 MB at a million keys: any range is sketched for the cost of its two end blocks"),
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
    # Moderation, charters and proof of work (docs/protocol.md, "Charters", "Proof of work").
    Limit("min_pow_bits", 8, "bits", "least work target a post may commit to"),
    Limit("max_pow_bits", 40, "bits", "most work target a post may commit to"),
    Limit("max_charter_moderators", 16, "keys", "moderator lines in one charter"),
    # Collective action: reports, letters, signatures, pledges, pins, translations (docs/protocol.md,
    # "Collective action").
    Limit("max_object_fields", 16, "fields", "field lines in the body of a report, letter, pledge or translation"),
    Limit("max_field_chars", 200, "characters", "characters in one field value or one signature line"),
    Limit("max_pledge_threshold", 1_000_000, "pledgers", "largest threshold a pledge may name"),
    # ---- Node-local bounds (scope "node"; docs/security.md, "Limits") ----
    # Node: outbound requests to peers (node/sync.py, node/server.py).
    Limit("max_info_boards", 1_024, "boards", "boards listed in one `GET /v1/info` answer"),
    Limit("peer_connect_timeout_s", 10, "seconds", "time to open a connection to a peer", scope="node",
          why="A peer that accepts no connection must not hold a sync or a push; any reachable peer, "
              "even over Tor, connects well within it."),
    Limit("peer_read_timeout_s", 20, "seconds", "longest silence while waiting for or reading a peer's answer",
          scope="node",
          why="A tarpit that accepts and then says nothing is a failure after this; an honest peer "
              "starts any answer within a few seconds and then streams without pause."),
    Limit("peer_request_timeout_s", 60, "seconds", "whole reconcile, fetch or push request to a peer",
          scope="node",
          why="Bounds a peer that trickles its answer; the largest request (4 MiB of posts) needs "
              "only 0.6 Mbit/s to fit, and a cut sync resumes where it stopped."),
    Limit("peer_short_request_timeout_s", 15, "seconds",
          "whole info, peer-list or announce request to a peer", scope="node",
          why="These answers are small (a board list, 32 URLs, up to 1024 ids): a peer that needs "
              "longer is treated as a tarpit and backed off, so it cannot hold a push or a sync."),
    Limit("peer_sync_timeout_s", 1_800, "seconds", "one whole anti-entropy sync with one peer", scope="node",
          why="Anti-entropy talks to one peer at a time: a peer that keeps a sync alive with slow, "
              "valid answers loses it after this; what was learned is kept and the next sync goes on."),
    Limit("max_peer_info_bytes", 1_048_576, "bytes", "answer to GET /v1/info or GET /v1/peers", scope="node",
          why="Read into memory and parsed as JSON; an honest info lists at most 1024 boards, under "
              "600 KiB even with every name at its longest in escaped JSON."),
    # Node: the gossip policy (protocol/gossip.py; docs/gossip.md).
    Limit("peer_backoff_base_s", 5, "seconds", "wait before trying a peer again after its first failure",
          scope="node",
          why="Doubles at every failure in a row up to peer_backoff_max_s: a peer that failed once (a "
              "restart, a lost connection) is back within seconds, a dead one costs a request an hour."),
    Limit("peer_backoff_max_s", 3_600, "seconds", "longest wait before trying a failing peer again",
          scope="node",
          why="A peer that was down for a day is tried again within the hour after it returns; a dead "
              "or hostile peer costs one request an hour."),
    Limit("sync_tries_per_round", 3, "peers", "peers tried in one anti-entropy round when the first fails",
          scope="node",
          why="One dead peer must not cost a whole sync interval, and a node whose peers all fail must "
              "not make a burst of requests: three tries find a live peer unless most are down."),
    Limit("announce_inflight_s", 30, "seconds",
          "an id asked of one announcer is not asked of another for this long", scope="node",
          why="A post announced by several peers is received once; if the first announcer never pushes "
              "it, the next announcement after this is answered, and anti-entropy fetches it anyway."),
    Limit("max_announce_inflight_ids", 100_000, "ids", "ids remembered as asked for and not yet received",
          scope="node",
          why="Bounds the memory of the in-flight set (about 10 MB) against a peer that announces ids it "
              "never pushes; past it ids are still wanted, only not deduplicated."),
    # Node: the gossip listener (node/api.py, node/listeners.py).
    Limit("push_decode_on_loop_bytes", 65_536, "bytes",
          "largest push body decoded on the event loop; a larger one is decoded on a thread", scope="node",
          why="A body is decoded where it arrives when that costs less than the hop to a thread and back; "
              "above this the decoding (up to max_push_bytes) would hold the event loop, and every other "
              "request, for milliseconds."),
    Limit("client_key_cache_addresses", 4_096, "addresses",
          "client addresses whose counting keys (the address, its IPv6 /64, its IPv4 /24) are kept parsed",
          scope="node",
          why="Every request is counted under its client's address, parsed from text each time: kept parses "
              "save a tenth of the event loop's time under many small requests; bounded, so many addresses "
              "only push old ones out."),
    Limit("listener_idle_timeout_s", 15, "seconds", "an idle connection (no request begun) is closed after this",
          scope="node",
          why="Every open connection costs a socket and a buffer; a peer's client opens a connection when it "
              "has a request to send and sends it at once, and reconnecting costs it one round trip."),
    Limit("listener_head_timeout_s", 10, "seconds", "time to send a request's head (request line and headers)",
          scope="node",
          why="Stops slowloris: a head is under 8 KiB and is sent in one packet by every real client, so ten "
              "seconds is room for the slowest link."),
    Limit("listener_body_timeout_s", 60, "seconds", "time to send a request's body in full", scope="node",
          why="A body held open holds its share of max_body_bytes_in_flight; the largest body (4 MiB) "
              "needs only 0.6 Mbit/s to arrive in time."),
    Limit("listener_min_body_rate", 4_096, "bytes/s",
          "slowest average rate a body may arrive at, after the first listener_head_timeout_s", scope="node",
          why="Closes a body that trickles (or an endless chunked body that sends little) well before "
              "listener_body_timeout_s; 4 KiB/s is slower than any link a node gossips over."),
    Limit("listener_answer_timeout_s", 60, "seconds", "time a client has to take an answer before it is cut off",
          scope="node",
          why="An answer the client does not read stays in memory; the largest answer a node writes "
              "(max_fetch_answer_bytes) needs only 0.15 Mbit/s to be taken in time."),
    Limit("max_connections", 512, "connections", "open connections to one listener, all clients together",
          scope="node",
          why="Keeps the node under its file-descriptor limit and its memory small whatever the number of "
              "addresses an attacker has; a node gossips with a few dozen peers at most."),
    Limit("max_connections_per_client", 32, "connections",
          "open connections to one listener from one client (an IPv4 address or an IPv6 /64)", scope="node",
          why="One address cannot take the listener; a peer's client uses a handful of connections at once."),
    Limit("max_connections_per_subnet", 128, "connections",
          "open connections to one listener from one IPv4 /24", scope="node",
          why="Four times the per-client cap: a /24 of attackers cannot take the listener either, while a "
              "few NATed members of one network still fit."),
    Limit("max_requests_in_flight_per_client", 16, "requests",
          "requests from one client being received, handled or answered at once", scope="node",
          why="More are answered 503 busy; a peer's sync and pushes make a few requests at a time."),
    Limit("max_body_bytes_in_flight", 67_108_864, "bytes",
          "request bodies being received or handled at once, all clients together", scope="node",
          why="Bounds the memory of slow or concurrent large bodies (each is read whole into memory); "
              "sixteen full 4 MiB pushes at once are far past what honest peers send."),
    Limit("max_body_bytes_in_flight_per_client", 16_777_216, "bytes",
          "request bodies from one client being received or handled at once", scope="node",
          why="One client cannot take all of max_body_bytes_in_flight; four full pushes at once is more "
              "than a peer ever sends."),
    Limit("max_body_bytes_in_flight_per_subnet", 33_554_432, "bytes",
          "request bodies from one IPv4 /24 being received or handled at once", scope="node",
          why="Half of max_body_bytes_in_flight: one /24 of attackers sending slow large bodies cannot take "
              "the whole shared budget from the peers of every other network."),
    Limit("small_body_bytes", 65_536, "bytes",
          "a request body up to this size is admitted outside the shared and per-/24 body budgets", scope="node",
          why="Reconcile rounds, fetch and announce requests and pushes of fresh posts are this small: a "
              "few addresses that fill the shared budget with slow large bodies must not stop an honest "
              "peer's sync.  Small bodies still count against the per-client budget and the connection "
              "caps, which bound their memory (512 connections of 64 KiB)."),
    Limit("max_unread_answer_bytes_per_client", 4_194_304, "bytes",
          "answer bytes written to one client that it has not yet taken", scope="node",
          why="A client that asks and does not read would otherwise queue answers in memory; past this its "
              "next requests are answered 503 busy until it reads."),
    Limit("max_fetch_answer_bytes", 1_048_576, "bytes", "encoded size of one `POST /v1/fetch` answer",
          scope="node",
          why="A 35 KB fetch request could ask for a 4 MiB answer; the asker fetches what did not come "
              "again, so a smaller answer costs an honest peer only a few more round trips."),
    Limit("max_subnet_requests_per_s", 200, "requests/s",
          "sustained gossip API requests from one IPv4 /24", scope="node",
          why="Four times max_requests_per_s: a /24 of attackers cannot multiply its budget without bound."),
    Limit("max_subnet_request_burst", 800, "requests", "gossip API requests from one IPv4 /24 in a burst",
          scope="node", why="Four times max_request_burst, for the same reason."),
    Limit("refused_request_cost", 5, "requests",
          "tokens of the rate limit a request answered with a 4xx error costs", scope="node",
          why="A client that keeps sending bad input is slowed down five times faster than one that "
              "sends good requests; an honest peer almost never gets a 4xx answer."),
    Limit("max_client_log_lines_per_min", 60, "lines",
          "log lines that what clients send can add to the log in one minute", scope="node",
          why="Malformed HTTP is logged at debug only; the rest (a handler's bug, a reset) is capped so "
              "that no client can fill the disk or drown the log."),
    # Node: web UI and public view pages (node/web/).
    Limit("ui_body_cache_posts", 10_000, "posts", "post bodies whose rendered HTML the pages keep, by post id",
          scope="node", why="Rendering a body (Markdown, the sanitizer, its language) costs a few hundred "
                            "microseconds and a thread page shows up to 101 of them; the posts readers open again "
                            "are far fewer than this, and the least recently shown go first."),
    Limit("ui_body_cache_chars", 8_000_000, "characters", "characters of rendered body HTML the pages keep in all",
          scope="node", why="Bounds the same cache in memory whatever the sizes of the bodies: tens of MiB at "
                            "most, where entries alone could let 10,000 bodies of 16 KiB grow to hundreds."),
    Limit("public_page_cache_pages", 256, "pages", "rendered pages of the public view kept to answer the same "
          "address again", scope="node",
          why="Readers of a mirror mostly open the same few pages (the boards, the first page of a busy board, a "
              "linked thread); one rendering then serves them all, and an address seen once is crowded out."),
    Limit("public_page_cache_bytes", 16_777_216, "bytes", "bytes of rendered public-view pages kept in all",
          scope="node", why="A page of a thread of 100 replies of 16 KiB can be over a MiB: the bytes bound keeps "
                            "the cache to 16 MiB whatever pages are asked for."),
    Limit("public_page_cache_s", 2, "seconds", "longest a kept public-view page is served again",
          scope="node", why="A page is dropped at once when a post (a retraction included) is stored; this bounds "
                            "how long a change that stores no post (a purge by retention, a moderator followed or "
                            "left, a hide that expires) takes to show, while a busy page is still rendered at most "
                            "once every two seconds."),
    Limit("ui_thread_page_replies", 100, "replies", "replies shown on one page of a thread", scope="node",
          why="a page of a thread is rendered on the event loop: 100 replies of at most 16 KiB each stay a few "
              "MiB at worst, and a conversation a member reads at once is far shorter"),
    Limit("ui_boards_page_boards", 100, "boards", "boards shown on one page of the boards list", scope="node",
          why="anyone can start a board, so a node may hear of any number of them; a member follows a few dozen, "
              "and the name filter and the A-Z order reach every other one"),
    Limit("ui_hidden_page_authors", 200, "authors", "hidden authors shown on one page of the hidden-authors list",
          scope="node", why="a member hides authors one at a time; 200 names fit on a page and further pages show "
                            "the rest"),
    Limit("ui_author_names_shown", 50, "names", "names an author has published shown on the author's page",
          scope="node", why="a key may sign any number of profiles; the newest names tell a member who this is, "
                            "and a person renames a pseudonym a few times, not thousands"),
    # Node: bundles and storage (protocol/bundle.py, node/store.py).
    Limit("bundle_resync_overlap", 4, "frames",
          "failed frame checks that may cover one byte of a bundle before frames starting there go unchecked",
          scope="node",
          why="Bounds the work of reading a bundle to a few passes over it: checking a frame costs the length "
              "it claims, and a crafted file can claim the largest length at every few bytes.  Accidental "
              "damage covers a byte with one failed frame, rarely two."),
    Limit("max_import_problems", 1_000, "problems",
          "damage reports and refused posts an import keeps by name (the rest are counted)", scope="node",
          why="A crafted bundle can hold a damaged frame or an invalid post every few dozen bytes; the report "
              "of a 100 MB file would then hold millions of entries.  A real import shows a handful."),
    Limit("max_store_bytes", 8_589_934_592, "bytes",
          "default cap on the database file (setting max_store_bytes; 0: up to the disk)", scope="node",
          why="Any peer can push valid posts under keys of its own; at this size writes stop with "
              "storage_full instead of filling the disk of the machine.  8 GiB is over 400,000 posts of the "
              "largest size, far beyond any board a member reads."),
    Limit("max_wal_bytes", 67_108_864, "bytes", "write-ahead log of the database, after a checkpoint",
          scope="node",
          why="The log is copied into the database at a checkpoint; a log allowed to grow to several times "
              "the database needs as much free disk again when it is checkpointed.  64 MiB is twice the "
              "automatic checkpoint interval, so normal gossip never meets it."),
    # Node: moderation and the stranger quotas (protocol/trust.py; docs/security.md, "Limits").
    Limit("stranger_posts_per_day", 200, "posts",
          "default posts one stranger may add to one board in one day (setting stranger_posts_per_day)",
          scope="node",
          why="A stranger is an author no followed moderator vouched for and not a local pseudonym; any "
              "peer can sign with fresh keys, so each key's share of a board is bounded.  200 posts a day "
              "is more than the most active member writes on one board."),
    Limit("stranger_bytes_per_day", 1_048_576, "bytes",
          "default encoded post bytes one stranger may add to one board in one day (setting "
          "stranger_bytes_per_day)", scope="node",
          why="Bounds the disk one key can take on one board per day even with posts of the largest "
              "size (about 50 of them); a member's day of writing is a few dozen KiB."),
    Limit("max_moderators_per_board", 32, "keys", "moderators a node follows on one board", scope="node",
          why="Every incoming post is judged against the statements of every followed moderator of its "
              "board; a board is moderated by a handful of people, and a charter names at most 16."),
    Limit("max_drafts_per_session", 8, "drafts", "unpublished drafts the member UI keeps per session, in memory",
          scope="node",
          why="A member has a form or two open at a time; each draft is at most one post body "
              "(max_body_bytes), so a session holds at most 8 x 16 KiB, never on disk."),
    Limit("max_spent_forms_per_session", 64, "form tokens",
          "published form tokens the member UI remembers per session (a resubmission never publishes)",
          scope="node",
          why="Enough to catch a browser resending any recent form; a few KiB per session."),
    Limit("max_refusals", 1_000_000, "ids", "refused post ids remembered (oldest forgotten first)",
          scope="node",
          why="A refused id is refused again without verifying its signature; a flood of fresh ids "
              "cannot grow this table without bound (rows of under 200 bytes: some 200 MB at most), "
              "and a forgotten id is only judged again in full."),
    Limit("max_statements_per_board", 100_000, "statements", "moderation statements stored for one board",
          scope="node",
          why="Statements are read to build a board's trust view; past this, statements of moderators "
              "the node does not follow are refused with the stranger quota codes, so strangers cannot "
              "grow that work without bound.  Followed moderators' statements are always kept."),
    # Node: reading at scale (node/store/, node/service.py; docs/performance.md, "serve").
    Limit("read_pool_connections", 3, "connections",
          "read-only store connections (one thread each) serving the member UI, the public view and "
          "the gossip reads beside the one writer", scope="node",
          why="Pages read beside the writer (WAL), so one slow page or ingest batch does not stall "
              "the others; each connection keeps its own page cache (32 MiB at most), and more readers "
              "than cores only share the same two cores."),
    # Node: ingest and single-post requests (node/api.py, node/service.py).
    Limit("small_push_batch_posts", 64, "posts",
          "posts of a coalesced push batch below which it is verified on one thread, in the store "
          "thread's one hop with its screen and its write", scope="node",
          why="Below this a second verify thread saves less than the hops cost: a small batch is screened, "
              "verified (libsodium releases the GIL) and stored in one call on the store thread; a larger one "
              "is verified on all the verify threads between the screen and the write."),
    Limit("push_decode_on_loop_posts", 1, "posts",
          "posts of one push decoded on the event loop instead of on a thread", scope="node",
          why="A push of one post (at most max_post_bytes) is decoded where it arrives: a hop to a "
              "thread and back costs more CPU than decoding one post; larger pushes are decoded off the "
              "loop, so the loop's work per request stays bounded."),
    Limit("push_batch_delay_ms", 2, "ms",
          "longest a pushed batch waits for concurrent pushes to be checked and stored with it",
          scope="node",
          why="Pushes of one post each are checked and stored together (one verify hop, one store read "
              "and one write transaction for many): a push waits this long at most for others to "
              "join it when the node is idle, and not at all beyond the batch running before it "
              "when it is busy."),
    Limit("max_push_batch_posts", 512, "posts",
          "posts of concurrent pushes checked and stored as one batch", scope="node",
          why="max_posts_per_batch: a coalesced batch costs the store no more than one peer's largest "
              "push, so a request never waits behind more than that much work."),
    Limit("push_batches_in_flight", 2, "batches",
          "coalesced push batches being checked and stored at once", scope="node",
          why="One batch is verified on the two verify threads while the one before it is written by "
              "the store thread; more would only queue on the same two cores."),
    # Node: transport: proxy, TLS and onion services (node/sync.py, node/listeners.py; docs/privacy.md).
    Limit("tls_handshake_timeout_s", 10, "seconds",
          "time a client has to finish the TLS handshake on the gossip listener", scope="node",
          why="A handshake takes a few round trips (seconds over Tor); a client that opens connections "
          "and never finishes one holds a socket and TLS state until then, before the connection cap counts it."),
    Limit("tor_control_timeout_s", 30, "seconds", "time `dazibao onion create` waits for Tor's control port",
          scope="node", why="Creating an onion service is one local exchange with Tor; a control port that does not "
          "answer is reported instead of hanging the command."),
    # Node: origin privacy of new posts (protocol/gossip.py; docs/privacy.md).
    Limit("stem_epoch_s", 600, "seconds", "how long a node keeps the peers it sends stem posts to", scope="node",
          why="Dandelion++ changes its stem peers once per epoch, not per post: a spy that sees many posts come "
              "along one fixed path learns little more from each, while peers that leave or fail are replaced "
              "at once. Ten minutes, as in Bitcoin's Dandelion++."),
    Limit("stem_fluff_timeout_s", 30, "seconds",
          "least time a post may stay in stem state at a node before it fluffs it itself (drawn between this and "
          "twice this); the default of the setting", scope="node",
          why="The fail-safe against a stem peer that takes a post and drops it: a stem of ten hops takes well "
              "under a second, so a post not heard from a fluff by then was lost, and it still spreads half a "
              "minute later, about one anti-entropy interval."),
    Limit("max_stem_posts_per_minute", 60, "posts", "posts one client address may send as stem posts per minute; "
          "the excess is taken as ordinary pushes", scope="node",
          why="A stem post costs its relay a timer and a push of its own; a member writes a few posts a minute, "
              "and a relay forwards the stems of the authors behind one peer. Past the bound a post is simply "
              "fluffed: nothing is lost."),
    Limit("max_stem_posts", 1_000, "posts", "posts a node holds in stem state at once; more are fluffed at once",
          scope="node",
          why="Each is an id, a board name and two times (under 200 bytes); 60 a minute per peer for the 30 to 60 "
              "seconds of the fail-safe stays under it for a dozen busy peers, and past it posts spread as "
              "without a stem."),
    # Node: member UI flows: first steps, peers, replies and unread marks (node/web/).
    Limit("max_visit_marks", 10_000, "marks", "boards and threads whose last visit the member UI remembers",
          scope="node", why="One small row per board or thread the member opened, the least recently visited "
                            "forgotten first: a member reads far fewer threads than this, and a forgotten one only "
                            "shows its posts as not new."),
    Limit("max_unread_scan", 5_000, "posts", "newest posts read to count what is new since the last visit, per page",
          scope="node", why="The counts are read from the newest posts back to the oldest mark on the page; past "
                            "this many the page shows a lower bound, so a node that received a million posts since "
                            "the last visit still renders a page at once."),
    Limit("ui_replies_page_posts", 50, "replies", "replies shown on one page of the replies to your pseudonyms",
          scope="node", why="Each reply is shown with its thread's title; 50 of at most 16 KiB each stay small, and "
                            "older pages show the rest."),
    Limit("ui_sync_now_peers", 32, "peers", "peers that one press of Sync now syncs with, at the same time",
          scope="node", why="Each sync is one reconciliation bounded by peer_sync_timeout_s; a member node knows a "
                            "handful of peers, and 32 at once stay well below the outbound connection limits."),
    # Node: collective action (node/store/organizing.py; docs/organizing.md).
    Limit("publish_organizing_pages", 500, "objects",
          "companies, and letters and pledges, of one board that get pages of their own in a static copy (the "
          "highest-ranked companies, the newest letters and pledges), and reports and corroborations shown on "
          "one company's page", scope="node",
          why="A static copy is written in one run and copied whole; a board flooded with reports or letters by "
              "throwaway pseudonyms would otherwise add a page per object and list pages of max_tally_objects "
              "rows. The CSV and JSON still carry every report, and the lists say that some are left out."),
    Limit("max_tally_objects", 100_000, "objects",
          "objects of one kind on one board (or children of one letter, pledge or report) read for one count",
          scope="node",
          why="A count is made when a page asks for it; a board flooded with reports or signatures cannot make "
              "one page read the whole board.  A campaign's letter gathers thousands of signatures, not "
              "hundreds of thousands; past the bound the page says the figures are lower bounds."),
    Limit("ui_organizing_items", 100, "objects",
          "letters or pledges listed on one board's letters or pledges page, and pledges checked for the "
          "met-pledge banner on one board", scope="node",
          why="Each listed letter or pledge is counted when the page is shown (one bounded read each); a "
              "campaign board holds a handful of open letters and pledges, and the newest 100 stay quick."),
    # Node: search, accessibility and the static copy (node/store/search.py, node/web/, node/publish.py).
    Limit("search_timeout_ms", 2_000, "ms", "time one search may run before it is interrupted", scope="node",
          why="A search runs on a read connection of its own, off the event loop and off the writer; an "
              "index-driven search of a 50,000-post board takes well under 200 ms, so a search that runs "
              "longer (short terms scanning a huge node) is stopped and the member asked for a longer word."),
    Limit("search_scan_rows", 10_000, "posts", "newest posts a search reads first, before the full-text index",
          scope="node", why="A word in one post of twenty fills a count of 500 hits within them, in a few "
                            "milliseconds, where the index would hand over every match of the whole node; rarer "
                            "words go to the index, which reads only their matches."),
    Limit("max_search_results", 500, "hits", "hits one search counts and pages through", scope="node",
          why="Counting and sorting stop here, so a word found in every post costs a bounded sort; 20 pages "
              "of results are more than a member reads, and a narrower query finds the rest."),
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
UI_THREAD_PAGE_REPLIES = by_name("ui_thread_page_replies")
UI_BOARDS_PAGE_BOARDS = by_name("ui_boards_page_boards")
UI_HIDDEN_PAGE_AUTHORS = by_name("ui_hidden_page_authors")
UI_AUTHOR_NAMES_SHOWN = by_name("ui_author_names_shown")
MAX_INFO_BOARDS = by_name("max_info_boards")
PEER_CONNECT_TIMEOUT_S = by_name("peer_connect_timeout_s")
PEER_READ_TIMEOUT_S = by_name("peer_read_timeout_s")
PEER_REQUEST_TIMEOUT_S = by_name("peer_request_timeout_s")
PEER_SHORT_REQUEST_TIMEOUT_S = by_name("peer_short_request_timeout_s")
PEER_SYNC_TIMEOUT_S = by_name("peer_sync_timeout_s")
MAX_PEER_INFO_BYTES = by_name("max_peer_info_bytes")
PEER_BACKOFF_BASE_S = by_name("peer_backoff_base_s")
PEER_BACKOFF_MAX_S = by_name("peer_backoff_max_s")
SYNC_TRIES_PER_ROUND = by_name("sync_tries_per_round")
ANNOUNCE_INFLIGHT_S = by_name("announce_inflight_s")
MAX_ANNOUNCE_INFLIGHT_IDS = by_name("max_announce_inflight_ids")
BUNDLE_RESYNC_OVERLAP = by_name("bundle_resync_overlap")
MAX_IMPORT_PROBLEMS = by_name("max_import_problems")
MAX_STORE_BYTES = by_name("max_store_bytes")
MAX_WAL_BYTES = by_name("max_wal_bytes")
LISTENER_IDLE_TIMEOUT_S = by_name("listener_idle_timeout_s")
LISTENER_HEAD_TIMEOUT_S = by_name("listener_head_timeout_s")
LISTENER_BODY_TIMEOUT_S = by_name("listener_body_timeout_s")
LISTENER_MIN_BODY_RATE = by_name("listener_min_body_rate")
LISTENER_ANSWER_TIMEOUT_S = by_name("listener_answer_timeout_s")
MAX_CONNECTIONS = by_name("max_connections")
MAX_CONNECTIONS_PER_CLIENT = by_name("max_connections_per_client")
MAX_CONNECTIONS_PER_SUBNET = by_name("max_connections_per_subnet")
MAX_REQUESTS_IN_FLIGHT_PER_CLIENT = by_name("max_requests_in_flight_per_client")
MAX_BODY_BYTES_IN_FLIGHT = by_name("max_body_bytes_in_flight")
MAX_BODY_BYTES_IN_FLIGHT_PER_CLIENT = by_name("max_body_bytes_in_flight_per_client")
MAX_BODY_BYTES_IN_FLIGHT_PER_SUBNET = by_name("max_body_bytes_in_flight_per_subnet")
SMALL_BODY_BYTES = by_name("small_body_bytes")
MAX_UNREAD_ANSWER_BYTES_PER_CLIENT = by_name("max_unread_answer_bytes_per_client")
MAX_FETCH_ANSWER_BYTES = by_name("max_fetch_answer_bytes")
MAX_SUBNET_REQUESTS_PER_S = by_name("max_subnet_requests_per_s")
MAX_SUBNET_REQUEST_BURST = by_name("max_subnet_request_burst")
REFUSED_REQUEST_COST = by_name("refused_request_cost")
MAX_CLIENT_LOG_LINES_PER_MIN = by_name("max_client_log_lines_per_min")
MIN_POW_BITS = by_name("min_pow_bits")
MAX_POW_BITS = by_name("max_pow_bits")
MAX_CHARTER_MODERATORS = by_name("max_charter_moderators")
STRANGER_POSTS_PER_DAY = by_name("stranger_posts_per_day")
STRANGER_BYTES_PER_DAY = by_name("stranger_bytes_per_day")
MAX_MODERATORS_PER_BOARD = by_name("max_moderators_per_board")
MAX_REFUSALS = by_name("max_refusals")
MAX_DRAFTS_PER_SESSION = by_name("max_drafts_per_session")
MAX_SPENT_FORMS_PER_SESSION = by_name("max_spent_forms_per_session")
MAX_STATEMENTS_PER_BOARD = by_name("max_statements_per_board")
MAX_OBJECT_FIELDS = by_name("max_object_fields")
MAX_FIELD_CHARS = by_name("max_field_chars")
MAX_PLEDGE_THRESHOLD = by_name("max_pledge_threshold")
MAX_VISIT_MARKS = by_name("max_visit_marks")
MAX_UNREAD_SCAN = by_name("max_unread_scan")
UI_REPLIES_PAGE_POSTS = by_name("ui_replies_page_posts")
UI_SYNC_NOW_PEERS = by_name("ui_sync_now_peers")
SEARCH_TIMEOUT_MS = by_name("search_timeout_ms")
MAX_SEARCH_RESULTS = by_name("max_search_results")
READ_POOL_CONNECTIONS = by_name("read_pool_connections")
TLS_HANDSHAKE_TIMEOUT_S = by_name("tls_handshake_timeout_s")
TOR_CONTROL_TIMEOUT_S = by_name("tor_control_timeout_s")
STEM_EPOCH_S = by_name("stem_epoch_s")
STEM_FLUFF_TIMEOUT_S = by_name("stem_fluff_timeout_s")
MAX_STEM_POSTS_PER_MINUTE = by_name("max_stem_posts_per_minute")
MAX_STEM_POSTS = by_name("max_stem_posts")
PUSH_BATCH_DELAY_MS = by_name("push_batch_delay_ms")
MAX_PUSH_BATCH_POSTS = by_name("max_push_batch_posts")
PUSH_BATCHES_IN_FLIGHT = by_name("push_batches_in_flight")
MAX_TALLY_OBJECTS = by_name("max_tally_objects")
SEARCH_SCAN_ROWS = by_name("search_scan_rows")
UI_ORGANIZING_ITEMS = by_name("ui_organizing_items")
PUBLISH_ORGANIZING_PAGES = by_name("publish_organizing_pages")
UI_BODY_CACHE_POSTS = by_name("ui_body_cache_posts")
UI_BODY_CACHE_CHARS = by_name("ui_body_cache_chars")
PUBLIC_PAGE_CACHE_PAGES = by_name("public_page_cache_pages")
PUBLIC_PAGE_CACHE_BYTES = by_name("public_page_cache_bytes")
PUBLIC_PAGE_CACHE_S = by_name("public_page_cache_s")
MAX_SKETCH_SYMBOLS = by_name("max_sketch_symbols")
MAX_SKETCH_WORK_KEYS = by_name("max_sketch_work_keys")
SKETCH_CACHED_SYMBOLS = by_name("sketch_cached_symbols")
PUSH_DECODE_ON_LOOP_POSTS = by_name("push_decode_on_loop_posts")
SMALL_PUSH_BATCH_POSTS = by_name("small_push_batch_posts")
PUSH_DECODE_ON_LOOP_BYTES = by_name("push_decode_on_loop_bytes")
CLIENT_KEY_CACHE_ADDRESSES = by_name("client_key_cache_addresses")
