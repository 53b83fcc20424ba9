"""Reconciliation converges whatever policy and frame limits either side runs, and a node of the
first release reconciles with a new one both ways (docs/protocol.md, "Reconciliation", §6).

The first release's code is frozen in test_reconcile_release1.py.  Every conversation here is
checked end to end: every message within the limits both sides run, and the Initiator's
``have`` and ``need`` exactly the symmetric difference of the two sets within the scope.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dazibao.protocol import limits
from dazibao.protocol import reconcile as new
from dazibao.protocol.keyindex import KeyIndex
from tests import factories
from tests.protocol import test_reconcile_release1 as old
from tests.protocol.test_reconcile import BOARDS, T0, in_scope, key_set_pairs, make_keys

SIDES = {"new": new, "old": old}

#: Frame limits: the protocol's, the smallest workable (§7.3), and some in between.
LIMITS = st.one_of(
    st.just({}),
    st.just({"max_msg_bytes": 2048, "max_ranges": 8, "max_idlist_ids": 8}),
    st.fixed_dictionaries({
        "max_msg_bytes": st.integers(2048, 40_000),
        "max_ranges": st.integers(8, 300),
        "max_idlist_ids": st.integers(1, 200),
    }),
)


@st.composite
def policies(draw, side: str) -> dict:
    """Any split policy the side's implementation accepts (§6.3: policy never changes the outcome)."""
    if not draw(st.booleans()):
        return {}
    split_parts = draw(st.integers(2, 40))
    policy = {
        "split_parts": split_parts,
        "tail_parts": draw(st.integers(1, split_parts - 1)),
        "idlist_threshold": draw(st.integers(1, 64)),
    }
    if side == "new":
        policy |= {
            "narrow_parts": draw(st.integers(2, 20)),
            "open_top": draw(st.booleans()),
            # False: the release before sketches (§5.1), which today's code reproduces.
            "sketches": draw(st.booleans()),
        }
    return policy


def converse(keys_a, keys_b, boards, *, initiator="new", responder="new", limit=None, init_policy=None,
             resp_policy=None, max_rounds=100_000):
    """Reconcile ``keys_a`` (Initiator) with ``keys_b`` (responder); check every message and the outcome."""
    limit = limit or {}
    check = {"max_msg_bytes": limits.MAX_RECONCILE_MSG_BYTES, "max_ranges": limits.MAX_RECONCILE_RANGES,
             "max_idlist_ids": limits.MAX_IDLIST_IDS} | limit
    a, b = KeyIndex(keys_a), KeyIndex(keys_b)
    init = SIDES[initiator].Initiator(a, boards, max_rounds=max_rounds, **limit, **(init_policy or {}))
    msg = init.initiate()
    sizes = []
    while msg is not None:
        assert len(msg) <= check["max_msg_bytes"]
        assert len(new.decode_message(msg, **check)) <= check["max_ranges"]
        reply = SIDES[responder].respond(b, msg, **limit, **(resp_policy or {}))
        assert len(reply) <= check["max_msg_bytes"]
        assert len(new.decode_message(reply, **check)) <= check["max_ranges"]
        sizes.append((len(msg), len(reply)))
        msg = init.reconcile(reply)
    assert init.done and init.rounds == len(sizes)
    assert set(init.have) == in_scope(keys_a, boards) - in_scope(keys_b, boards)
    assert set(init.need) == in_scope(keys_b, boards) - in_scope(keys_a, boards)
    assert len(init.have) == len(set(init.have)) and len(init.need) == len(set(init.need))
    return init, sizes


SETTINGS = settings(max_examples=factories.examples(300), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(key_set_pairs(max_keys=1500), LIMITS, st.data())
def test_any_policy_and_frame_limit_converge_to_the_symmetric_difference(pair, limit, data):
    a, b, scope = pair
    init_policy, resp_policy = data.draw(policies("new")), data.draw(policies("new"))
    event("limits: " + ("default" if not limit else "tiny" if limit.get("max_ranges") == 8 else "other"))
    converse(a, b, scope, limit=limit, init_policy=init_policy, resp_policy=resp_policy)


@SETTINGS
@given(key_set_pairs(max_keys=1500), LIMITS, st.sampled_from([("old", "new"), ("new", "old")]), st.data())
def test_a_first_release_node_reconciles_with_a_new_one_both_ways(pair, limit, roles, data):
    a, b, scope = pair
    initiator, responder = roles
    event(f"{initiator} asks {responder}")
    converse(a, b, scope, initiator=initiator, responder=responder, limit=limit,
             init_policy=data.draw(policies(initiator)), resp_policy=data.draw(policies(responder)))


def test_old_and_new_peers_agree_on_the_cases_the_policy_was_made_for():
    # A node back from a day offline, both ways, and a few scattered differences, between every
    # pair of implementations.  The new policy settles the offline cases in one round trip
    # whoever answers it (the empty IdList above the newest key works with an old responder
    # too); an old Initiator still gets the old number of rounds or fewer from a new responder.
    rng = random.Random(11)
    shared = make_keys(rng, 6000, BOARDS, start=T0, span=30 * 86_400_000)
    newest = sorted(shared, key=lambda k: k[-40:])[-60:]
    rest = [k for k in shared if k not in set(newest)]
    scattered = rng.sample(shared, 20)
    cases = {
        "initiator offline": (rest, shared),
        "responder offline": (shared, rest),
        "scattered": ([k for k in shared if k not in set(scattered[:10])],
                      [k for k in shared if k not in set(scattered[10:])]),
    }
    rounds = {}
    for name, (a, b) in cases.items():
        for initiator in SIDES:
            for responder in SIDES:
                init, _ = converse(a, b, BOARDS, initiator=initiator, responder=responder, max_rounds=64)
                rounds[name, initiator, responder] = init.rounds
    for name in ("initiator offline", "responder offline"):
        assert rounds[name, "new", "new"] == 1
    assert rounds["initiator offline", "new", "old"] == 1
    for name in cases:
        assert rounds[name, "old", "new"] <= rounds[name, "old", "old"] + 1


def test_the_first_message_of_the_first_release_is_answered_as_before():
    # open_top=False reproduces the first release's Initiator byte for byte, and an old responder
    # answers today's first message (an empty IdList above the newest key of each board).
    rng = random.Random(12)
    keys = make_keys(rng, 3000, BOARDS)
    index = KeyIndex(keys)
    assert new.Initiator(index, BOARDS, open_top=False, sketches=False).initiate() == old.Initiator(index, BOARDS).initiate()
    first = new.Initiator(KeyIndex(keys[:2900]), BOARDS).initiate()
    reply = old.respond(index, first)
    assert new.decode_message(reply) == old.decode_message(reply)
