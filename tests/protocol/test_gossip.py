"""The gossip policy alone (protocol/gossip.py): every rule, with time passed in and a seeded
rng.  No event loop, no sockets."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import gossip, limits, messages
from dazibao.protocol.errors import BoardError, TooLargeError, VersionError
from dazibao.protocol.gossip import (
    Announce,
    Announced,
    BackOff,
    Exchange,
    ExchangeDone,
    Forget,
    Gossip,
    GossipConfig,
    InboundPeer,
    NewPosts,
    PeerLearned,
    PeerOk,
    PushDone,
    Refused,
    SavePeer,
    Sync,
    SyncDone,
    Want,
)
from dazibao.protocol.peers import PeerState

T0 = 1_700_000_000_000
A, B, C, D = (f"http://{x}.example:7470" for x in "abcd")
ME = "http://me.example:7470"


def brain(*urls: str, seed: int = 1, source: str = "config", **config) -> Gossip:
    cfg = GossipConfig(self_urls=frozenset({ME}), **config)
    return Gossip(cfg, random.Random(seed), now=T0, peers=[PeerState(url=u, source=source) for u in urls])


def first_round(g: Gossip) -> tuple[int, list]:
    now = g.next_timer()
    return now, g.handle_timer(now)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def test_the_first_round_comes_soon_and_syncs_with_every_given_peer():
    g = brain(A, B)
    now, actions = first_round(g)
    assert T0 + 200 <= now <= T0 + 1_000
    assert sorted(a.peer for a in of(actions, Sync)) == [A, B]


def test_back_off_doubles_up_to_the_cap_and_one_success_resets_it():
    g = brain(A)
    now, _ = first_round(g)
    waits = []
    for _ in range(14):
        (off,) = of(g.handle_event(SyncDone(A, "unreachable: refused"), now), BackOff)
        waits.append(off.until_ms - now)
        now = off.until_ms
        g.handle_timer(now)
    base, cap = gossip.BASE_BACKOFF_MS, gossip.MAX_BACKOFF_MS
    for n, wait in enumerate(waits, start=1):
        nominal = min(base * 2 ** (n - 1), cap)
        assert 0.75 * nominal <= wait <= 1.25 * nominal
    assert waits[-1] >= 0.75 * cap and g.peer(A).failures == 14
    assert of(g.handle_event(SyncDone(A), now), PeerOk) and g.peer(A).failures == 0


def test_invalid_posts_back_off_and_the_back_off_grows():
    # A sync that succeeds but hands out invalid posts is one failure, never a success then
    # a failure: the count grows at every such sync in a row.
    g = brain(A)
    now, _ = first_round(g)
    for n in (1, 2, 3):
        actions = g.handle_event(SyncDone(A, received=3, rejected=("bad_signature",)), now)
        assert not of(actions, PeerOk)
        (off,) = of(actions, BackOff)
        assert off.failures == n and "invalid" in off.reason
        now = off.until_ms


def test_posts_from_the_future_do_not_blame_the_relay():
    g = brain(A)
    now, _ = first_round(g)
    actions = g.handle_event(SyncDone(A, received=0, rejected=("future", "future", "tombstoned")), now)
    assert not of(actions, BackOff) and of(actions, PeerOk)
    assert g.peer(A).failures == 0


def test_a_failed_round_tries_another_peer_at_once_and_at_most_n():
    g = brain(A, B, C, D, E := "http://e.example:7470")
    now, actions = first_round(g)           # the first round: up to sync_tries_per_round peers
    for a in of(actions, Sync):
        g.handle_event(SyncDone(a.peer), now)
    now = g.next_timer()
    (first,) = of(g.handle_timer(now), Sync)
    tried = [first.peer]
    while True:
        nxt = of(g.handle_event(SyncDone(tried[-1], "timeout: no answer"), now), Sync)
        if not nxt:
            break
        assert nxt[0].peer not in tried
        tried.append(nxt[0].peer)
    assert len(tried) == limits.SYNC_TRIES_PER_ROUND
    # The round reached nobody: the next one comes when a peer is due (here the two not tried
    # yet, at once), but never in a busy loop.
    assert g.next_timer() == now + gossip.MIN_ROUND_GAP_MS
    assert E  # five peers, so that the bound and not the peers ended the round


def test_a_peer_backing_off_is_not_chosen_and_an_idle_round_waits_for_it_not_an_interval():
    g = brain(A, sync_interval_ms=10_000)
    now, _ = first_round(g)
    for _ in range(4):                      # back-off past the interval: 40 s nominal
        (off,) = of(g.handle_event(SyncDone(A, "unreachable: refused"), now), BackOff)
    # Rounds that find no peer due look again when the first one is due, not an interval later.
    for _ in range(20):
        now = g.next_timer()
        synced = of(g.handle_timer(now), Sync)
        if synced:
            break
        assert now < off.until_ms
    assert synced == [Sync(A)]
    assert off.until_ms <= now <= off.until_ms + gossip.MIN_ROUND_GAP_MS


def test_a_hung_peer_does_not_block_pushes():
    g = brain(A, B, C, fanout=3)
    now, _ = first_round(g)
    post = (("labor", (b"\1" * 32,)),)
    first = of(g.handle_event(NewPosts(post, "local"), now), Announce)
    assert sorted(a.peer for a in first) == [A, B, C]
    # A hangs; B and C answer.  The next post goes to B and C at once, A is skipped.
    g.handle_event(PushDone(B), now + 5)
    g.handle_event(PushDone(C), now + 5)
    second = of(g.handle_event(NewPosts((("labor", (b"\2" * 32,)),), "local"), now + 10), Announce)
    assert sorted(a.peer for a in second) == [B, C]
    # When A's push finally times out, it is backed off, and pushes go on without it.
    assert of(g.handle_event(PushDone(A, "timeout: no timely answer"), now + 15_000), BackOff)
    third = of(g.handle_event(NewPosts((("labor", (b"\3" * 32,)),), "local"), now + 15_001), Announce)
    assert A not in {a.peer for a in third}


def test_ids_for_a_busy_peer_wait_for_its_announcement_and_go_together():
    g = brain(A, fanout=1)
    now, _ = first_round(g)
    assert [a.peer for a in of(g.handle_event(NewPosts((("labor", (b"\1" * 32,)),), "local"), now), Announce)] == [A]
    # While A's announcement is in flight, fresh posts for it wait (by board), bounded.
    many = tuple(i.to_bytes(32, "big") for i in range(limits.MAX_IDS_PER_REQUEST + 10))
    assert not of(g.handle_event(NewPosts((("labor", (b"\2" * 32,)), ("other", (b"\3" * 32,))), "local"), now + 1),
                  Announce)
    assert not of(g.handle_event(NewPosts((("labor", many),), "local"), now + 2), Announce)
    # It ends well: one announcement carries what waited, at most max_ids_per_request ids.
    [queued] = of(g.handle_event(PushDone(A), now + 3), Announce)
    assert queued.peer == A
    boards = dict(queued.ids_by_board)
    assert boards["other"] == (b"\3" * 32,)
    assert boards["labor"][0] == b"\2" * 32
    assert sum(len(ids) for ids in boards.values()) == limits.MAX_IDS_PER_REQUEST
    # That one fails: what waited behind it is dropped with it (anti-entropy carries it).
    g.handle_event(NewPosts((("labor", (b"\4" * 32,)),), "local"), now + 4)
    actions = g.handle_event(PushDone(A, "timeout: no timely answer"), now + 5)
    assert of(actions, BackOff) and not of(actions, Announce)


def test_pushes_skip_the_source_and_this_node():
    g = brain(A, B, ME, fanout=5)
    now, _ = first_round(g)
    actions = g.handle_event(NewPosts((("labor", (b"\1" * 32,)),), A), now)
    assert [a.peer for a in of(actions, Announce)] == [B]


def test_in_flight_dedupe_and_its_expiry():
    g = brain()
    ids = (b"\1" * 32, b"\2" * 32)
    (want,) = g.handle_event(Announced(A, ids), T0)
    assert want == Want(ids)
    assert g.handle_event(Announced(B, ids), T0 + 1_000) == [Want(())]
    # One arrived (stored, so announced onwards): the other is still in flight.
    g.handle_event(NewPosts((("labor", (ids[0],)),), A), T0 + 2_000)
    assert g.asked() == 1
    later = T0 + limits.ANNOUNCE_INFLIGHT_S * 1000
    assert g.handle_event(Announced(C, ids[1:]), later - 1) == [Want(())]
    assert g.handle_event(Announced(C, ids[1:]), later + 1) == [Want(ids[1:])]


def test_the_in_flight_set_is_bounded():
    g = brain()
    n = limits.MAX_ANNOUNCE_INFLIGHT_IDS
    batch = 1_024
    for k in range(0, n + 3 * batch, batch):
        ids = tuple(k.to_bytes(4, "big") + i.to_bytes(28, "big") for i in range(batch))
        (want,) = g.handle_event(Announced(A, ids), T0)
        assert want.ids == ids          # wanted always; remembered only up to the bound
    assert g.asked() <= n


def test_an_inbound_peer_is_learned_and_checked():
    g = brain(A)
    actions = g.handle_event(InboundPeer("http://caller.example:7470/"), T0)
    assert actions == [SavePeer("http://caller.example:7470", "pex", T0)]
    assert g.peer("http://caller.example:7470").source == "pex"
    # Never trusted beyond a peer-exchange address: loopback, private, odd spellings refused.
    for bad in ("http://127.0.0.1:7470", "http://10.1:7470", "http://localhost:7470", "ftp://x.example:1",
                "http://x.example:7470/path", "not a url"):
        (refused,) = g.handle_event(InboundPeer(bad), T0)
        assert isinstance(refused, Refused) and refused.code == "bad_peer_url"
    # Itself, and a peer it knows as the operator's, are not learned again.
    assert g.handle_event(InboundPeer(ME), T0) == []
    assert g.handle_event(InboundPeer(A), T0) == [] and g.peer(A).source == "config"
    # With allow_private_peers, a loopback caller is learned (tests, LANs).
    lan = brain(allow_private=True)
    assert of(lan.handle_event(InboundPeer("http://127.0.0.1:7470"), T0), SavePeer)
    # With peer exchange off, nobody is learned.
    assert brain(peer_exchange=False).handle_event(InboundPeer("http://caller.example:7470"), T0) == []


def test_an_inbound_peer_is_pushed_to():
    g = brain()
    g.handle_event(InboundPeer(A), T0)
    actions = g.handle_event(NewPosts((("labor", (b"\1" * 32,)),), "local"), T0 + 1)
    assert [a.peer for a in of(actions, Announce)] == [A]


def test_peer_exchange_after_one_success_per_round_and_its_answer_checked():
    g = brain(A, B)
    now, _ = first_round(g)
    first = g.handle_event(SyncDone(A), now)
    second = g.handle_event(SyncDone(B), now)
    assert of(first, Exchange) == [Exchange(A)] and not of(second, Exchange)
    actions = g.handle_event(ExchangeDone(A, offered=(C, "http://192.168.1.1:7470", ME, B, C)), now)
    assert of(actions, SavePeer) == [SavePeer(C, "pex", now)]
    assert [r.url for r in of(actions, Refused)] == ["http://192.168.1.1:7470"]
    assert of(g.handle_event(ExchangeDone(B, "redirect: HTTP 301"), now), BackOff)


def test_forgetting_dead_learned_peers_and_trimming_to_max_peers():
    g = brain(A, max_peers=3)
    for url in (B, C):
        g.handle_event(InboundPeer(url), T0)
    now, _ = first_round(g)
    g.handle_event(SyncDone(B), now)
    # A fourth learned peer is one too many: the least healthy learned one goes (of those that
    # never answered, the newest: a flood of new addresses cannot push out peers that work);
    # the operator's peer never goes.
    actions = g.handle_event(InboundPeer(D), now)
    assert of(actions, Forget) == [Forget(D)]
    assert {p.url for p in g.peers()} == {A, B, C}
    # A learned peer that failed 8 times in a row and has not answered for a day is forgotten
    # at the next maintenance; the operator's peer stays however dead.
    t = now
    for _ in range(gossip.FORGET_AFTER_FAILURES):
        for url in (A, C):
            g.handle_event(SyncDone(url, "unreachable: refused"), t)
        t += 1
    t += gossip.FORGET_AFTER_MS + gossip.MAINTENANCE_MS
    actions = g.handle_timer(t)
    assert Forget(C) in actions and Forget(A) not in actions


def test_operator_peers_learned_while_running_and_their_source_upgraded():
    g = brain()
    g.handle_event(InboundPeer(A), T0)
    assert g.handle_event(PeerLearned(A, "cli"), T0) == [SavePeer(A, "cli", T0)]
    assert g.peer(A).source == "cli"
    assert g.handle_event(PeerLearned(A, "pex"), T0) == []


def test_a_local_stop_blames_nobody_and_closes_the_round():
    g = brain(A)
    now, _ = first_round(g)
    assert g.handle_event(SyncDone(A, local=True), now) == []
    assert g.peer(A).failures == 0 and g.next_timer() > now


def test_the_trace_replays_to_the_same_actions():
    trace: list = []
    g = Gossip(GossipConfig(), random.Random(5), now=T0, peers=[PeerState(A), PeerState(B)], trace=trace)
    now = g.next_timer()
    g.handle_timer(now)
    g.handle_event(SyncDone(A, "timeout: x"), now + 10)
    g.handle_event(NewPosts((("b", (b"\1" * 32,)),), "local"), now + 20)
    g.handle_event(SyncDone(B), now + 30)
    again = Gossip(GossipConfig(), random.Random(5), now=T0, peers=[PeerState(A), PeerState(B)])
    for at, what, actions in trace:
        got = again.handle_timer(at) if what == "timer" else again.handle_event(what, at)
        assert got == actions


def test_an_unknown_event_is_refused():
    with pytest.raises(TypeError):
        brain().handle_event("sync please", T0)  # type: ignore[arg-type]


events = st.one_of(
    st.builds(SyncDone, st.sampled_from([A, B, C]), st.sampled_from([None, "timeout: x"]),
              rejected=st.sampled_from([(), ("future",), ("bad_signature",)])),
    st.builds(PushDone, st.sampled_from([A, B, C]), st.sampled_from([None, "unreachable: x"])),
    st.builds(NewPosts, st.just((("b", (b"\7" * 32,)),)), st.sampled_from(["local", A])),
    st.builds(InboundPeer, st.sampled_from([D, "http://10.0.0.1:1", "http://e.example:1"])),
    st.builds(ExchangeDone, st.sampled_from([A, B]), st.none(), st.just((C, D))),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120_000), st.booleans(), events), max_size=40), st.integers(0, 2**32))
def test_any_sequence_keeps_the_invariants(steps, seed):
    g = brain(A, B, C, seed=seed, max_peers=4, fanout=2)
    now = T0
    pushing: set[str] = set()
    for dt, timer, event in steps:
        now += dt
        timer = timer and now >= g.next_timer()
        actions = g.handle_timer(now) if timer else g.handle_event(event, now)
        announced = [a.peer for a in of(actions, Announce)]
        # A peer is never announced to twice at once, nor is this node.
        assert len(announced) == len(set(announced)) and ME not in announced
        if isinstance(event, PushDone) and not timer:
            pushing.discard(event.peer)
        assert not pushing & set(announced)
        pushing |= set(announced)
        # Nobody backing off is contacted; back-off never exceeds the cap.
        for a in of(actions, Sync) + of(actions, Announce):
            state = g.peer(a.peer)
            assert state is not None and state.next_try_at_ms <= now
        for off in of(actions, BackOff):
            assert now <= off.until_ms <= now + 1.25 * gossip.MAX_BACKOFF_MS
        assert len(g.peers()) <= max(4, 3)
        assert g.next_timer() > now or not timer


# --- the announcement that names boards (protocol/messages.py) -----------------------------------

ID1, ID2 = b"\x11" * 32, b"\x22" * 32


def test_announcement_vector():
    data = messages.encode_announcement([("labor", [ID1]), ("劳动", [ID2])])
    assert data.hex() == (
        "9202" "92" "92a56c61626f72" "91c420" + ID1.hex() + "92a6e58ab3e58aa8" "91c420" + ID2.hex()
    )
    assert messages.decode_announcement(data).groups == (("labor", (ID1,)), ("劳动", (ID2,)))


def test_the_older_announcement_is_still_accepted():
    old = messages.encode_ids([ID1, ID2])
    assert old.hex().startswith("9201")
    decoded = messages.decode_announcement(old)
    assert decoded.groups == ((None, (ID1, ID2)),) and decoded.ids == (ID1, ID2)


@pytest.mark.parametrize("value,error", [
    ([3, []], VersionError),
    ([2, [["bad\x00board", [ID1]]]], BoardError),
    ([2, [["labor", [ID1]], ["labor", [ID2]]]], Exception),
    ([2, [["labor", [b"short"]]]], Exception),
    ([2, [["labor", [ID1] * (limits.MAX_IDS_PER_REQUEST + 1)]]], TooLargeError),
    ([2, [[f"b{i}", [ID1]] for i in range(limits.MAX_IDS_PER_REQUEST + 1)]], TooLargeError),
])
def test_bad_announcements_are_refused(value, error):
    from dazibao.protocol import wire
    with pytest.raises(error):
        messages.decode_announcement(wire.pack(value))


def test_announcement_batches_fit_the_limit():
    ids = [i.to_bytes(32, "big") for i in range(2_500)]
    batches = list(messages.announcement_batches([("a", ids[:1_000]), ("b", ids[1_000:])]))
    assert [sum(len(g) for _, g in b) for b in batches] == [1_024, 1_024, 452]
    assert [i for b in batches for _, g in b for i in g] == ids
    for b in batches:
        messages.decode_announcement(messages.encode_announcement(b))


def test_forget_drops_a_peer_at_once_with_what_waited_for_it():
    g = brain(A, B, fanout=2)
    now, _ = first_round(g)
    g.handle_event(NewPosts((("labor", (b"\1" * 32,)),), "local"), now)
    g.handle_event(NewPosts((("labor", (b"\2" * 32,)),), "local"), now + 1)  # queued for both
    assert [a.peer for a in g.forget([A, "http://unknown.example:1"])] == [A]
    assert [p.url for p in g.peers()] == [B]
    assert not of(g.handle_event(PushDone(A), now + 2), Announce)
