"""The protocol core against its test vectors (tests/vectors/README.md says where each came from).

* Wycheproof: every one of the 151 Ed25519 cases gives its expected result through
  ``identity.verify``, the one function in dazibao that verifies signatures.
* RFC 8032 section 7.1: our signer reproduces the published keys and signatures exactly.
* posts.json: our own vectors give exactly their expected outcome through ``check_post``, valid
  ones are re-created byte for byte, and the file is what its generator produces today.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from dazibao.protocol import errors, identity, limits, posts
from dazibao.protocol.errors import RemoteProtocolError, RetractionError, SignatureError
from dazibao.protocol.identity import SigningKey, fingerprint, verify

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


# --- Wycheproof ------------------------------------------------------------------------------

WYCHEPROOF = _load("wycheproof_ed25519_test.json")
WYCHEPROOF_CASES = [
    (group["publicKey"]["pk"], test)
    for group in WYCHEPROOF["testGroups"]
    for test in group["tests"]
]


def test_wycheproof_file_is_complete():
    # A silently shortened file would let the parametrized test below pass on fewer cases.
    assert WYCHEPROOF["algorithm"] == "EDDSA"
    assert WYCHEPROOF["numberOfTests"] == 151
    assert len(WYCHEPROOF_CASES) == 151
    assert sorted(test["tcId"] for _, test in WYCHEPROOF_CASES) == list(range(1, 152))
    # Only "valid" and "invalid": no "acceptable" cases whose outcome we would have to choose.
    assert {test["result"] for _, test in WYCHEPROOF_CASES} == {"valid", "invalid"}
    assert all(group["publicKey"]["curve"] == "edwards25519" for group in WYCHEPROOF["testGroups"])


@pytest.mark.parametrize(
    ("public_key_hex", "case"), WYCHEPROOF_CASES, ids=[f"tc{test['tcId']}" for _, test in WYCHEPROOF_CASES]
)
def test_wycheproof(public_key_hex, case):
    public_key = bytes.fromhex(public_key_hex)
    message = bytes.fromhex(case["msg"])
    signature = bytes.fromhex(case["sig"])
    if case["result"] == "valid":
        assert verify(public_key, message, signature) is None
    else:
        # verify raises SignatureError and nothing else: no bool, no ValueError from a length.
        with pytest.raises(SignatureError) as info:
            verify(public_key, message, signature)
        assert info.value.code == "bad_signature"


# --- RFC 8032 --------------------------------------------------------------------------------

RFC8032 = _load("rfc8032_ed25519.json")


def test_rfc8032_file_has_the_five_section_7_1_vectors():
    assert "RFC 8032" in RFC8032["source"] and "7.1" in RFC8032["source"]
    assert [v["name"] for v in RFC8032["vectors"]] == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    # Two facts about the messages that RFC 8032 states in words, independent of the hex.
    by_name = {v["name"]: v for v in RFC8032["vectors"]}
    assert len(bytes.fromhex(by_name["TEST 1024"]["message_hex"])) == 1023
    assert bytes.fromhex(by_name["TEST SHA(abc)"]["message_hex"]) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("vector", RFC8032["vectors"], ids=[v["name"] for v in RFC8032["vectors"]])
def test_rfc8032(vector):
    key = SigningKey(bytes.fromhex(vector["secret_key_hex"]))
    message = bytes.fromhex(vector["message_hex"])
    signature = bytes.fromhex(vector["signature_hex"])
    assert key.public_key.hex() == vector["public_key_hex"]
    # Ed25519 is deterministic: the signature must match to the last bit.
    assert key.sign(message) == signature
    verify(key.public_key, message, signature)
    # And the vector is not accepted for a different message.
    with pytest.raises(SignatureError):
        verify(key.public_key, message + b"\x00", signature)


def test_rfc8032_agrees_with_wycheproof_known_answers():
    # Wycheproof tcIds 80-83 carry the same vectors (from the draft that became RFC 8032), so
    # the two files check each other's transcription.
    known = {test["tcId"]: (pk, test) for pk, test in WYCHEPROOF_CASES}
    for tc_id, vector in zip((80, 81, 82, 83), RFC8032["vectors"][:4], strict=True):
        pk, test = known[tc_id]
        assert (pk, test["msg"], test["sig"]) == (
            vector["public_key_hex"], vector["message_hex"], vector["signature_hex"]
        ), vector["name"]


# --- posts.json ------------------------------------------------------------------------------

POSTS = _load("posts.json")
POST_CASES = POSTS["cases"]
POST_IDS = [case["name"] for case in POST_CASES]


def _generator():
    # tests/vectors is not a package; load the generator by path, as a reader would run it.
    spec = importlib.util.spec_from_file_location("make_post_vectors", VECTORS / "make_post_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_posts_file_is_what_the_generator_produces():
    # Byte-exact: a hand edit, a changed encoder or a changed rule all show up here.
    assert (VECTORS / "posts.json").read_text(encoding="utf-8") == _generator().render()


def test_posts_file_header_and_coverage():
    assert set(POSTS) >= {"source", "format", "cases"}
    assert POSTS["signature_tag_hex"] == posts.POST_SIGNATURE_TAG.hex()
    assert POSTS["max_post_bytes"] == limits.MAX_POST_BYTES
    assert POSTS["max_future_skew_s"] == limits.MAX_FUTURE_SKEW_S
    assert len(POST_CASES) >= 16
    assert len(set(POST_IDS)) == len(POST_IDS)
    expects = {case["expect"] for case in POST_CASES}
    # Every outcome the brief for these vectors lists is covered at least once.
    assert expects >= {
        "valid", "bad_signature", "non_canonical", "future", "too_large", "retract_not_author",
        "unknown_kind", "bad_board", "bad_body", "malformed", "bad_field", "unsupported_version",
    }
    assert expects - {"valid"} <= set(errors.ERROR_CODES)
    # The collective-action kinds have their own file, organizing.json (tests/protocol/test_organizing.py).
    assert {case["kind"] for case in POST_CASES if case["expect"] == "valid"} == set(posts.KINDS) - set(
        posts.ACTION_KINDS)
    for case in POST_CASES:
        assert set(case) >= {"name", "description", "raw_hex", "now", "expect"}
        assert type(case["now"]) is int
        if case["expect"] == "valid":
            assert set(case) >= {
                "id_hex", "author_hex", "fingerprint", "kind", "board", "body",
                "created_at_ms", "parent_hex", "seed_hex",
            }


def _outcome(case: dict) -> str:
    """What our implementation says about one vector: 'valid' or the error code."""
    raw = bytes.fromhex(case["raw_hex"])
    try:
        post = posts.check_post(raw, case["now"])
        if "target_raw_hex" in case:
            target = posts.check_post(bytes.fromhex(case["target_raw_hex"]), case["now"])
            posts.check_retraction(post, target)
    except RemoteProtocolError as err:
        return err.code
    return "valid"


@pytest.mark.parametrize("case", POST_CASES, ids=POST_IDS)
def test_post_vector_outcome(case):
    assert _outcome(case) == case["expect"]


@pytest.mark.parametrize("case", [c for c in POST_CASES if c["expect"] == "valid"],
                         ids=[c["name"] for c in POST_CASES if c["expect"] == "valid"])
def test_valid_post_vector_fields_and_resigning(case):
    raw = bytes.fromhex(case["raw_hex"])
    post = posts.check_post(raw, case["now"])
    parent = bytes.fromhex(case["parent_hex"]) if case["parent_hex"] is not None else None
    assert post.id.hex() == case["id_hex"]
    assert post.id == hashlib.sha256(raw[1:-66]).digest()
    assert post.author.hex() == case["author_hex"]
    assert fingerprint(post.author) == case["fingerprint"]
    assert (post.kind, post.board, post.body) == (case["kind"], case["board"], case["body"])
    assert post.created_at_ms == case["created_at_ms"]
    assert post.parent == parent
    assert post.raw == raw
    # A second implementation holding only the seed and the fields must get the same bytes.
    key = SigningKey(bytes.fromhex(case["seed_hex"]))
    assert key.public_key == post.author
    again = posts.create_post(
        key, kind=case["kind"], board=case["board"], body=case["body"],
        created_at_ms=case["created_at_ms"], parent=parent,
    )
    assert again.raw == raw
    assert again == post


def test_cjk_vectors_round_trip_exactly():
    cjk = {case["name"]: case for case in POST_CASES if case["name"].startswith("valid_cjk")}
    assert set(cjk) == {"valid_cjk_post", "valid_cjk_profile"}
    for case in cjk.values():
        post = posts.check_post(bytes.fromhex(case["raw_hex"]), case["now"])
        assert post.board == case["board"] and post.body == case["body"]
        assert any(ord(ch) > 0x2E80 for ch in post.board)
        # The UTF-8 of the name is in the bytes as-is: no escaping, no normalization on the way.
        assert post.board.encode("utf-8") in post.raw and post.body.encode("utf-8") in post.raw


def test_retract_not_author_vector_is_a_well_formed_retraction():
    # The point of the case: check_post alone cannot refuse it (the target may arrive later), so
    # check_retraction is where the rule lives.
    (case,) = [c for c in POST_CASES if c["expect"] == "retract_not_author"]
    retraction = posts.check_post(bytes.fromhex(case["raw_hex"]), case["now"])
    target = posts.check_post(bytes.fromhex(case["target_raw_hex"]), case["now"])
    assert retraction.kind == posts.KIND_RETRACT and retraction.parent == target.id
    assert retraction.author != target.author
    with pytest.raises(RetractionError):
        posts.check_retraction(retraction, target)


_ONE_DEFECT = [
    c for c in POST_CASES
    if c["expect"] not in ("valid", "bad_signature", "malformed") and "seed_hex" in c
]


@pytest.mark.parametrize("case", _ONE_DEFECT, ids=[c["name"] for c in _ONE_DEFECT])
def test_invalid_post_vectors_are_otherwise_correctly_signed(case):
    # Each invalid vector must be broken in exactly one way.  Its signature verifies over the id
    # of the bytes as sent, so a decoder that skipped the rule under test would accept it: the
    # vector really tests that rule and not, by accident, the signature.
    raw = bytes.fromhex(case["raw_hex"])
    key = SigningKey(bytes.fromhex(case["seed_hex"]))
    assert raw[0] == 0x92 and raw[-66:-64] == b"\xc4\x40"
    unsigned = raw[1:-66]
    assert key.public_key[:31] in unsigned  # [:31]: one case is about a cut-off author key
    verify(key.public_key, posts.POST_SIGNATURE_TAG + hashlib.sha256(unsigned).digest(), raw[-64:])


def test_skew_edge_vectors_bracket_the_limit():
    by_name = {case["name"]: case for case in POST_CASES}
    edge, past = by_name["valid_at_skew_limit"], by_name["future"]
    assert edge["created_at_ms"] == edge["now"] * 1000 + limits.MAX_FUTURE_SKEW_S * 1000
    assert posts.decode_post(bytes.fromhex(past["raw_hex"])).created_at_ms == past["now"] * 1000 + limits.MAX_FUTURE_SKEW_S * 1000 + 1


def test_too_large_vector_is_one_byte_over():
    (case,) = [c for c in POST_CASES if c["expect"] == "too_large"]
    assert len(bytes.fromhex(case["raw_hex"])) == limits.MAX_POST_BYTES + 1


def test_identity_module_and_vectors_use_the_same_tag():
    # The domain tag is part of the protocol: changing it invalidates every post ever signed.
    assert posts.POST_SIGNATURE_TAG == b"dazibao/v1/post\x00"
    assert identity.FINGERPRINT_TAG == b"dazibao/v1/fingerprint\x00"
