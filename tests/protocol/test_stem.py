"""The stem of new posts in the gossip policy (Dandelion++; docs/gossip.md, "Stem, then fluff").

Pure: no event loop, no sockets; time is passed in as numbers."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import gossip, limits
from dazibao.protocol.peers import PeerState

PEERS = [f"http://p{i}.example:7470" for i in range(6)]
T0 = 1_700_000_000_000


def brain(*, stem: bool = True, fluff: float = 0.0, seed: int = 1, peers=PEERS, delay_ms: int = 0) -> gossip.Gossip:
    config = gossip.GossipConfig(stem=stem, stem_fluff_probability=fluff, stem_delay_ms=delay_ms,
                                 stem_fluff_timeout_ms=30_000)
    return gossip.Gossip(config, random.Random(seed), now=T0, peers=[PeerState(url=u, source="config") for u in peers])


def own(b: gossip.Gossip, i: bytes, now: int = T0) -> list[gossip.Action]:
    return b.handle_event(gossip.NewPosts((("labor", (i,)),), gossip.LOCAL), now)


def relayed(b: gossip.Gossip, i: bytes, sender: str = PEERS[0], now: int = T0) -> list[gossip.Action]:
    b.handle_event(gossip.StemOffered(sender, "192.0.2.1", (i,)), now)
    return b.handle_event(gossip.NewPosts((("labor", (i,)),), sender), now)


def kinds(actions) -> list[type]:
    return [type(a) for a in actions if isinstance(a, (gossip.Announce, gossip.StemPush))]


def test_an_own_post_goes_to_one_stem_peer_and_no_one_else():
    b = brain()
    out = own(b, b"a" * 32)
    assert kinds(out) == [gossip.StemPush]
    assert out[0].ids_by_board == (("labor", (b"a" * 32,)),)
    assert b.stems() == {b"a" * 32: "labor"}
    # Every own post of the epoch takes the same stem peer.
    assert [a.peer for a in own(b, b"b" * 32, T0 + 1000) if isinstance(a, gossip.StemPush)] == [out[0].peer]


def test_without_the_stem_a_fresh_post_is_announced_at_once():
    b = brain(stem=False)
    out = own(b, b"a" * 32)
    assert kinds(out) == [gossip.Announce] * 3
    assert b.stems() == {}
    # A stem push is taken as an ordinary one: fluffed once stored.
    assert kinds(relayed(brain(stem=False), b"c" * 32)) == [gossip.Announce] * 3


def test_relayed_and_own_posts_are_handled_alike():
    own_brain, relay_brain = brain(seed=5), brain(seed=5)
    mine = own(own_brain, b"a" * 32)
    theirs = relayed(relay_brain, b"a" * 32, sender="192.0.2.9")
    # The same action, to a stem peer, with the same timer.
    assert kinds(mine) == kinds(theirs) == [gossip.StemPush]
    assert own_brain.next_timer() == relay_brain.next_timer()


def test_a_relay_never_sends_a_post_back_along_its_edge_and_fluffs_with_probability_q():
    b = brain()
    for k in range(20):
        out = relayed(b, bytes([k]) * 32, sender=PEERS[k % 6])
        assert all(a.peer != PEERS[k % 6] for a in out if isinstance(a, gossip.StemPush))
    always = brain(fluff=1.0)
    assert kinds(relayed(always, b"z" * 32)) == [gossip.Announce] * 3
    assert always.stems() == {}


def test_a_stem_post_not_heard_fluffed_is_fluffed_by_the_timer_once():
    b = brain()
    own(b, b"a" * 32)
    # Between stem_fluff_timeout_s and twice that.
    assert kinds(b.handle_timer(T0 + 29_999)) == []
    assert b.stems() == {b"a" * 32: "labor"}
    assert kinds(b.handle_timer(T0 + 60_000)) == [gossip.Announce] * 3
    assert b.stems() == {}
    assert kinds(b.handle_timer(T0 + 120_000)) == []


def test_a_post_heard_fluffed_is_not_fluffed_again():
    b = brain()
    own(b, b"a" * 32)
    b.handle_event(gossip.Heard((b"a" * 32,)), T0 + 500)
    assert b.stems() == {}
    assert kinds(b.handle_timer(T0 + 120_000)) == []


def test_a_post_held_on_its_stem_and_heard_fluffed_is_passed_on_at_once():
    # Dandelion++: once the post diffuses elsewhere, a node holding it on its stem diffuses it
    # too, so that its own peers do not wait for anti-entropy.
    b = brain()
    relayed(b, b"r" * 32)
    out = b.handle_event(gossip.Heard((b"r" * 32,)), T0 + 500)
    assert kinds(out) and set(kinds(out)) == {gossip.Announce}
    assert all(a.ids_by_board == (("labor", (b"r" * 32,)),) for a in out if isinstance(a, gossip.Announce))
    # A post this node does not hold on a stem is left alone: hearing it costs nothing.
    assert kinds(b.handle_event(gossip.Heard((b"x" * 32,)), T0 + 600)) == []


def test_a_failed_stem_peer_is_replaced_and_without_peers_the_post_is_fluffed():
    b = brain(peers=PEERS[:2])
    first = [a for a in own(b, b"a" * 32) if isinstance(a, gossip.StemPush)][0]
    out = b.handle_event(gossip.PushDone(first.peer, "unreachable: refused", stem=first.ids_by_board), T0 + 10)
    again = [a for a in out if isinstance(a, gossip.StemPush)]
    assert [a.peer for a in again] == [p for p in PEERS[:2] if p != first.peer]
    out = b.handle_event(gossip.PushDone(again[0].peer, "unreachable: refused", stem=first.ids_by_board), T0 + 20)
    # Both peers back off now: nobody to stem to, so the post is fluffed here (to nobody due:
    # anti-entropy carries it once they answer again), and it is no longer held.
    assert not [a for a in out if isinstance(a, gossip.StemPush)]
    assert b.stems() == {}


def test_a_post_that_comes_back_along_a_loop_is_fluffed():
    b = brain()
    own(b, b"a" * 32)
    out = b.handle_event(gossip.StemOffered(PEERS[3], "192.0.2.3", (b"a" * 32,)), T0 + 5)
    assert kinds(out) == [gossip.Announce] * 3
    assert b.stems() == {}


def test_stem_posts_past_the_rate_of_one_client_are_fluffed():
    b = brain()
    n = limits.MAX_STEM_POSTS_PER_MINUTE
    ids = tuple(i.to_bytes(32, "big") for i in range(n + 1))
    b.handle_event(gossip.StemOffered(None, "192.0.2.1", ids), T0)
    out = b.handle_event(gossip.NewPosts((("labor", ids),), "peer"), T0)
    pushed = {i for a in out if isinstance(a, gossip.StemPush) for _, g in a.ids_by_board for i in g}
    announced = {i for a in out if isinstance(a, gossip.Announce) for _, g in a.ids_by_board for i in g}
    assert pushed == set(ids[:n]) and announced == {ids[n]}


def test_the_hop_delay_holds_the_push_until_its_time():
    b = brain(delay_ms=5_000)
    assert kinds(own(b, b"a" * 32)) == []
    assert kinds(b.handle_timer(T0 + 5_000)) == [gossip.StemPush]


events = st.lists(st.tuples(st.sampled_from(["own", "relay", "heard", "fail", "ok", "loop"]),
                            st.integers(0, 7), st.integers(0, 5), st.integers(0, 20_000)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(0, 2**32), st.sampled_from([0.0, 0.1, 0.5]))
def test_every_stem_post_is_fluffed_exactly_once_unless_heard(script, seed, q):
    b = brain(seed=seed, fluff=q)
    now = T0
    fluffed: list[bytes] = []
    heard: set[bytes] = set()
    held_ever: set[bytes] = set()
    pushes: list[gossip.StemPush] = []
    made: set[bytes] = set()

    def run(actions):
        # One fluff announces to several peers at once: count it once.
        fluffed.extend({i for a in actions if isinstance(a, gossip.Announce) for _, g in a.ids_by_board for i in g})
        for a in actions:
            if isinstance(a, gossip.StemPush):
                pushes.append(a)
        held_ever.update(b.stems())
        # Announcements end at once, so that what was queued behind them goes out too.
        for a in actions:
            if isinstance(a, gossip.Announce):
                run(b.handle_event(gossip.PushDone(a.peer), now))

    for what, k, p, dt in script:
        now += dt
        run(b.handle_timer(now)) if now >= b.next_timer() else None
        i = bytes([k]) * 32
        if what in ("own", "relay") and i in made:
            continue                        # the store hands each post to the policy once
        made.add(i) if what in ("own", "relay") else None
        if what == "own":
            run(own(b, i, now))
        elif what == "relay":
            run(relayed(b, i, PEERS[p], now))
        elif what == "heard":
            heard.add(i)
            run(b.handle_event(gossip.Heard((i,)), now))
        elif what == "loop":
            run(b.handle_event(gossip.StemOffered(PEERS[p], "192.0.2.7", (i,)), now))
        elif pushes:
            push = pushes.pop(0)
            error = "unreachable: gone" if what == "fail" else None
            run(b.handle_event(gossip.PushDone(push.peer, error, stem=push.ids_by_board), now))
    # Long after every timer: nothing is left in stem state.
    for _ in range(5):
        now = max(now, b.next_timer()) + 120_000
        run(b.handle_timer(now))
    assert b.stems() == {}
    for i in held_ever:
        # Each post held in stem state was fluffed here once, or heard fluffed elsewhere.
        assert fluffed.count(i) <= 1
        assert i in fluffed or i in heard
