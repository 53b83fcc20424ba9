"""Regenerate tests/vectors/posts.json, dazibao's own signed-post test vectors.

Run from the repository root::

    python tests/vectors/make_post_vectors.py          # rewrite posts.json
    python tests/vectors/make_post_vectors.py --check  # exit 1 if posts.json is out of date

Everything here is deterministic: keys come from fixed 32-byte seeds, every post has a fixed
``created_at_ms`` and every case a fixed ``now``, and Ed25519 signatures are deterministic
(RFC 8032), so running the script twice gives the identical file.  tests/protocol/test_vectors.py
checks that the committed file equals what this script produces.

Valid posts are made with ``posts.create_post``.  Invalid ones are built by hand, and each one
is broken in exactly one way: wherever the defect still leaves something to sign, the bytes are
signed correctly by the author's key, so a decoder that skipped the rule under test would accept
the post.  That is what makes the vectors useful to a second implementation.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from dazibao.protocol import limits, posts, wire
from dazibao.protocol.identity import SigningKey, fingerprint

OUT = Path(__file__).with_name("posts.json")

# Fixed seeds: readable, and obviously not anybody's real key.
SEED_A = bytes([1]) * 32
SEED_B = bytes([2]) * 32
SEED_C = bytes([3]) * 32

# 2023-11-14T22:13:20Z.  Every post is dated at or after T0, and NOW is one hour later, so the
# ordinary posts sit comfortably inside the future-skew window.
T0_MS = 1_700_000_000_000
NOW = 1_700_003_600

TAG = posts.POST_SIGNATURE_TAG

FORMAT = (
    "Each case: name (unique); description (what it tests); raw_hex (the bytes a node receives); "
    "now (the receiver's clock, integer seconds since the Unix epoch, to pass to check_post); "
    "expect ('valid' or the stable error code check_post raises, see docs/protocol.md 'Error "
    "codes'); seed_hex (the 32-byte Ed25519 seed of the key that signed the bytes, when a key "
    "signed them). Valid cases also give id_hex (SHA-256 of the canonical unsigned body), "
    "author_hex, fingerprint (of the author), kind, board, body, created_at_ms and parent_hex "
    "(hex post id or null), so that create_post(seed, kind, board, body, created_at_ms, parent) "
    "must reproduce raw_hex byte for byte. The case whose expect is 'retract_not_author' is a "
    "well-formed, correctly signed retraction that check_post accepts; target_raw_hex is the post "
    "it names, by another author, and check_retraction(retraction, target) must raise that code."
)

SOURCE = (
    "dazibao's own vectors, written by tests/vectors/make_post_vectors.py from fixed seeds, "
    "fixed created_at_ms and a fixed now per case; rerunning the script gives this file byte "
    "for byte. A signed post is the canonical msgpack of [[1, kind, board, author, "
    "created_at_ms, parent, body], signature]; the id is SHA-256 of the canonical inner array; "
    "the signature is Ed25519 (RFC 8032) by author over signature_tag + id (docs/protocol.md, "
    "'Posts')."
)


def _sign_unsigned(key: SigningKey, unsigned_bytes: bytes) -> bytes:
    """A signed post around arbitrary unsigned-body bytes, signed the way a real author would.

    The id is taken over the bytes as given (canonical or not), which is what a decoder that
    hashes the bytes it received would compute.
    """
    pid = posts.post_id(unsigned_bytes)
    signature = key.sign(TAG + pid)
    return _outer(unsigned_bytes, signature)


def _outer(unsigned_bytes: bytes, signature: bytes) -> bytes:
    # fixarray of 2, the unsigned body, then the signature as bin8 of 64 bytes.
    assert len(signature) == 64
    return b"\x92" + unsigned_bytes + b"\xc4\x40" + signature


def _unsigned(kind: Any, board: Any, author: Any, created_at_ms: Any, parent: Any, body: Any, version: Any = 1) -> bytes:
    return wire.pack([version, kind, board, author, created_at_ms, parent, body])


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data)
    return data.replace(old, new)


def _valid(name: str, description: str, seed: bytes, *, kind: str, board: str, body: str,
           created_at_ms: int, parent: bytes | None = None, now: int = NOW) -> tuple[dict, posts.Post]:
    key = SigningKey(seed)
    post = posts.create_post(key, kind=kind, board=board, body=body, created_at_ms=created_at_ms, parent=parent)
    case = {
        "name": name,
        "description": description,
        "raw_hex": post.raw.hex(),
        "now": now,
        "expect": "valid",
        "seed_hex": seed.hex(),
        "id_hex": post.id.hex(),
        "author_hex": post.author.hex(),
        "fingerprint": fingerprint(post.author),
        "kind": kind,
        "board": board,
        "body": body,
        "created_at_ms": created_at_ms,
        "parent_hex": parent.hex() if parent is not None else None,
    }
    return case, post


def _invalid(name: str, description: str, raw: bytes, expect: str, *, seed: bytes | None, now: int = NOW, **extra: Any) -> dict:
    case: dict[str, Any] = {
        "name": name,
        "description": description,
        "raw_hex": raw.hex(),
        "now": now,
        "expect": expect,
    }
    if seed is not None:
        case["seed_hex"] = seed.hex()
    case.update(extra)
    return case


def build() -> dict:
    """The whole vector document as a JSON-ready dict."""
    key_a, key_b = SigningKey(SEED_A), SigningKey(SEED_B)
    a = key_a.public_key
    cases: list[dict] = []

    # --- valid -----------------------------------------------------------------------------

    c, post = _valid(
        "valid_post", "A plain post on an ASCII board.", SEED_A,
        kind="post", board="general", body="Meeting moved to Thursday, 18:00, usual place.",
        created_at_ms=T0_MS,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_reply", "A reply by another author; parent is the id of valid_post.", SEED_B,
        kind="reply", board="general", body="I will be there.\nBringing the banner.",
        created_at_ms=T0_MS + 60_000, parent=post.id,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_retract", "valid_post's author retracts it: parent is its id, the body is empty.", SEED_A,
        kind="retract", board="general", body="", created_at_ms=T0_MS + 120_000, parent=post.id,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_profile", "A profile post: the body is the pseudonym's display name, no parent.", SEED_A,
        kind="profile", board="general", body="Night Owl", created_at_ms=T0_MS + 180_000,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_cjk_post", "CJK board name and body; both must round-trip exactly (UTF-8, NFC).", SEED_C,
        kind="post", board="大字报", body="工人们：明天上午九点，老地方集合。请转告。",
        created_at_ms=T0_MS + 240_000,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_cjk_profile", "A profile with a CJK display name on a CJK board (with an ASCII space).", SEED_C,
        kind="profile", board="工会 通知", body="夜猫子", created_at_ms=T0_MS + 300_000,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_at_skew_limit",
        f"Dated exactly max_future_skew_s ({limits.MAX_FUTURE_SKEW_S} s) after now: still accepted.",
        SEED_A, kind="post", board="general", body="Posted from a clock that runs fast.",
        created_at_ms=NOW * 1000 + limits.MAX_FUTURE_SKEW_S * 1000,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_moderation",
        "A moderation statement: key B hides valid_post as spam; parent is the target (valid_post's "
        "id), the body 'ACTION SUBJECT REASON' (tests/vectors/moderation.json has many more).", SEED_B,
        kind="moderation", board="general", body="hide post spam", created_at_ms=T0_MS + 420_000, parent=post.id,
    )
    cases.append(c)
    c, _ = _valid(
        "valid_charter",
        "A charter by key A naming key B as the board's moderator, then an empty line and a description.",
        SEED_A, kind="charter", board="general",
        body=f"moderator {key_b.public_key.hex()}\n\nOne moderator for now.", created_at_ms=T0_MS + 480_000,
    )
    cases.append(c)

    # --- signatures --------------------------------------------------------------------------

    flipped = bytearray(post.raw)
    flipped[-64 + 17] ^= 0x04  # one bit inside R of the signature
    cases.append(_invalid(
        "bad_signature_flipped_bit", "valid_post with one bit of its signature flipped.",
        bytes(flipped), "bad_signature", seed=SEED_A,
    ))
    unsigned_bytes = post.raw[1:-66]
    cases.append(_invalid(
        "bad_signature_wrong_domain",
        "valid_post's fields, but the signature is over the bare id, without the domain tag.",
        _outer(unsigned_bytes, key_a.sign(post.id)), "bad_signature", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_signature_other_key",
        "valid_post's fields (author is key A), correctly formed signature made by key B.",
        _outer(unsigned_bytes, key_b.sign(TAG + post.id)), "bad_signature", seed=SEED_B,
    ))

    # --- canonical form: each of these decodes to valid_post's values -----------------------

    canonical = _unsigned("post", "general", a, T0_MS, None, "Meeting moved to Thursday, 18:00, usual place.")
    assert canonical == unsigned_bytes
    cases.append(_invalid(
        "non_canonical_int",
        "The format version 1 as uint8 (cc 01) instead of a positive fixint; signed over these bytes.",
        _sign_unsigned(key_a, _replace_once(canonical, b"\x97\x01", b"\x97\xcc\x01")),
        "non_canonical", seed=SEED_A,
    ))
    cases.append(_invalid(
        "non_canonical_str8",
        "The 7-byte board name with a str8 header (d9 07) instead of fixstr (a7); signed over these bytes.",
        _sign_unsigned(key_a, _replace_once(canonical, b"\xa7general", b"\xd9\x07general")),
        "non_canonical", seed=SEED_A,
    ))
    cases.append(_invalid(
        "non_canonical_bin16",
        "The author key with a bin16 header (c5 00 20) instead of bin8 (c4 20); signed over these bytes.",
        _sign_unsigned(key_a, _replace_once(canonical, b"\xc4\x20" + a, b"\xc5\x00\x20" + a)),
        "non_canonical", seed=SEED_A,
    ))

    # --- time and size ---------------------------------------------------------------------

    future_ms = NOW * 1000 + limits.MAX_FUTURE_SKEW_S * 1000 + 1
    cases.append(_invalid(
        "future",
        "Dated 1 ms past now + max_future_skew_s; otherwise valid and correctly signed.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, future_ms, None, "From the future.")),
        "future", seed=SEED_A,
    ))
    overhead = len(_sign_unsigned(key_a, _unsigned("post", "general", a, T0_MS, None, "")))
    body_len = limits.MAX_POST_BYTES + 1 - overhead - 2  # the body's str16 header is 3 bytes, not 1
    big = _sign_unsigned(key_a, _unsigned("post", "general", a, T0_MS, None, "a" * body_len))
    assert len(big) == limits.MAX_POST_BYTES + 1, len(big)
    cases.append(_invalid(
        "too_large",
        f"A correctly signed post of max_post_bytes + 1 = {limits.MAX_POST_BYTES + 1} bytes; "
        "refused for its size before anything else is looked at.",
        big, "too_large", seed=SEED_A,
    ))

    # --- retraction ------------------------------------------------------------------------

    other = posts.create_post(key_b, kind="retract", board="general", body="", created_at_ms=T0_MS + 90_000, parent=post.id)
    cases.append(_invalid(
        "retract_not_author",
        "Key B retracts valid_post, which key A wrote. The retraction itself passes check_post; "
        "check_retraction against target_raw_hex (valid_post) must refuse it.",
        other.raw, "retract_not_author", seed=SEED_B, target_raw_hex=post.raw.hex(),
    ))

    # --- validation rules ------------------------------------------------------------------

    cases.append(_invalid(
        "unknown_kind",
        "kind 'Edit', which is neither a kind this revision defines nor a kind name "
        "([a-z][a-z0-9_]{0,31}: no capitals); correctly signed. (A kind such as 'edit' is a kind of "
        "a later revision and is carried: see tests/vectors/moderation.json.)",
        _sign_unsigned(key_a, _unsigned("Edit", "general", a, T0_MS, None, "Edited text.")),
        "unknown_kind", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_board_rtl_override",
        "Board name U+202E 'lareneg': the right-to-left override makes it display as 'general'.",
        _sign_unsigned(key_a, _unsigned("post", "\u202elareneg", a, T0_MS, None, "Spoofed board.")),
        "bad_board", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_board_zero_width",
        "Board name 'gen' U+200B 'eral': a zero-width space makes it look like 'general'.",
        _sign_unsigned(key_a, _unsigned("post", "gen\u200beral", a, T0_MS, None, "Spoofed board.")),
        "bad_board", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_board_not_nfc",
        "Board name 'cafe' + U+0301 (decomposed); the NFC form is 'caf' U+00E9.",
        _sign_unsigned(key_a, _unsigned("post", "cafe\u0301", a, T0_MS, None, "Decomposed.")),
        "bad_board", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_board_unassigned_in_unicode_14",
        "Board name 'rally' + U+13439: unassigned in Unicode 14.0.0, which the name rule is pinned "
        "to (a format character, Cf, from Unicode 15.0): refused whatever the receiver's own "
        "Unicode version.",
        _sign_unsigned(key_a, _unsigned("post", "rally\U00013439", a, T0_MS, None, "Pinned Unicode.")),
        "bad_board", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_body_profile_unassigned_in_unicode_14",
        "A profile whose display name ends in U+1FAE8 (an emoji of Unicode 15.0, unassigned in "
        "14.0.0): display names follow the board-name rule, pinned to Unicode 14.0.0.",
        _sign_unsigned(key_a, _unsigned("profile", "general", a, T0_MS, None, "Ada \U0001fae8")),
        "bad_body", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_body_control",
        "A post body containing U+0007 (BEL); only tab and newline are allowed among controls.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, T0_MS, None, "ring\u0007ring")),
        "bad_body", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_body_blank",
        "A post body of white space only.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, T0_MS, None, " \n\t ")),
        "bad_body", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_body_retract_with_text",
        "A retraction of valid_post by its author, with a non-empty body.",
        _sign_unsigned(key_a, _unsigned("retract", "general", a, T0_MS + 120_000, post.id, "sorry")),
        "bad_body", seed=SEED_A,
    ))

    # --- shape -----------------------------------------------------------------------------

    cases.append(_invalid(
        "malformed_truncated", "valid_post without its last byte.",
        post.raw[:-1], "malformed", seed=SEED_A,
    ))
    cases.append(_invalid(
        "malformed_trailing", "valid_post followed by one extra byte (c0, nil).",
        post.raw + b"\xc0", "malformed", seed=SEED_A,
    ))
    cases.append(_invalid(
        "malformed_not_msgpack", "A byte that is never valid msgpack (c1).",
        b"\xc1", "malformed", seed=None,
    ))
    cases.append(_invalid(
        "bad_field_float",
        "created_at_ms as a float64 (cb ...) of the same value; floats are never valid.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, float(T0_MS), None, "Float time.")),
        "bad_field", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_field_board_binary", "The board name as bin instead of str.",
        _sign_unsigned(key_a, _unsigned("post", b"general", a, T0_MS, None, "Binary board.")),
        "bad_field", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_field_author_length", "The author key with its last byte cut off (31 bytes).",
        _sign_unsigned(key_a, _unsigned("post", "general", a[:31], T0_MS, None, "Short key.")),
        "bad_field", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_field_negative_time", "created_at_ms of -1.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, -1, None, "Before the epoch.")),
        "bad_field", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_field_post_with_parent", "kind 'post' naming a parent (only replies and retractions have one).",
        _sign_unsigned(key_a, _unsigned("post", "general", a, T0_MS, post.id, "Misfiled reply.")),
        "bad_field", seed=SEED_A,
    ))
    cases.append(_invalid(
        "bad_field_reply_without_parent", "kind 'reply' with a nil parent.",
        _sign_unsigned(key_a, _unsigned("reply", "general", a, T0_MS, None, "Reply to nothing.")),
        "bad_field", seed=SEED_A,
    ))
    cases.append(_invalid(
        "unsupported_version", "Format version 2, otherwise valid_post's fields, correctly signed.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, T0_MS, None,
                                        "Meeting moved to Thursday, 18:00, usual place.", version=2)),
        "unsupported_version", seed=SEED_A,
    ))
    cases.append(_invalid(
        "unsupported_version_with_float",
        "Format version 2 with created_at_ms as a float64: the version is checked before any "
        "field, so this is unsupported_version, not bad_field.",
        _sign_unsigned(key_a, _unsigned("post", "general", a, float(T0_MS), None, "Float time.", version=2)),
        "unsupported_version", seed=SEED_A,
    ))

    names = [case["name"] for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return {
        "source": SOURCE,
        "format": FORMAT,
        "signature_tag_hex": TAG.hex(),
        "max_post_bytes": limits.MAX_POST_BYTES,
        "max_future_skew_s": limits.MAX_FUTURE_SKEW_S,
        "cases": cases,
    }


def render() -> str:
    """The exact text of posts.json: UTF-8, CJK kept literal so it can be read, one trailing newline."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is out of date; rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
