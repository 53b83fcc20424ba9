"""Regenerate tests/vectors/moderation.json: vectors for moderation statements, charters, proof
of work and objects of unknown kind (docs/protocol.md).

Run from the repository root::

    python tests/vectors/make_moderation_vectors.py          # rewrite moderation.json
    python tests/vectors/make_moderation_vectors.py --check  # exit 1 if moderation.json is out of date

Deterministic, like make_post_vectors.py: fixed 32-byte seeds, fixed ``created_at_ms``, a fixed
``now`` per case, Ed25519 signatures (deterministic by RFC 8032) and nonces mined by counting up
from 0 (``work.mine``).  tests/protocol/test_moderation.py checks that the committed file equals
what this script produces, and replays every case.

Valid objects of the known kinds are made with ``posts.create_post`` (through
``moderation.create_statement`` / ``create_charter`` where that reads better).  Invalid ones and
objects of unknown kinds are built by hand with ``wire.pack``, and each invalid one is broken in
exactly one way and signed correctly by its author's key, so that a decoder that skipped the rule
under test would accept it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from dazibao.protocol import errors, limits, moderation, posts, wire, work
from dazibao.protocol.identity import SigningKey, fingerprint

OUT = Path(__file__).with_name("moderation.json")

SEED_A = bytes([1]) * 32  # an author
SEED_B = bytes([2]) * 32  # another author
SEED_M = bytes([4]) * 32  # a moderator
T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
NOW = 1_700_003_600  # an hour later, in seconds
DAY_MS = 86_400_000
TAG = posts.POST_SIGNATURE_TAG

FORMAT = (
    "Each case: name (unique); description; raw_hex (the bytes a node receives); id_hex (SHA-256 of "
    "the unsigned array as received, given whenever steps 1 to 8 of 'Checking a post from outside' "
    "pass -- the id a node reports a refusal under -- else null); now (the receiver's clock, integer "
    "seconds, for check_post); expect ('valid' or the error code docs/protocol.md 'Checking a post "
    "from outside' gives); seed_hex (the key that signed the bytes). Valid cases also give known "
    "(whether the kind is one this revision interprets), kind, board, author_hex, fingerprint, "
    "created_at_ms, parent_hex (or null) and body; valid cases of a known kind give work_bits "
    "(null or the target), so that create_post(seed, kind, board, body, created_at_ms, parent, "
    "work_bits) reproduces raw_hex when nonces are mined by counting up from 0. Valid statements "
    "give statement {action, subject, target_hex, reason, expires_at_ms}; valid charters give "
    "charter {moderators_hex, description}. Cases with a work item that decodes give work_target, "
    "nonce_hex and leading_zero_bits (of the id). A case with target_raw_hex is a retraction whose "
    "target is that post: check_retraction(case, target) must pass too."
)

SOURCE = (
    "dazibao's own vectors, written by tests/vectors/make_moderation_vectors.py from fixed seeds "
    "(01*32 an author, 02*32 another, 04*32 a moderator), fixed created_at_ms and a fixed now per "
    "case; nonces are the first that works counting up from 0; rerunning the script gives this file "
    "byte for byte. The objects are those of docs/protocol.md 'Proof of work', 'Objects of unknown "
    "kind', 'Moderation statements' and 'Charters'."
)


# --- building bytes by hand -----------------------------------------------------------------


def _outer(unsigned_bytes: bytes, signature: bytes) -> bytes:
    return b"\x92" + unsigned_bytes + b"\xc4\x40" + signature


def _sign(key: SigningKey, unsigned_bytes: bytes) -> bytes:
    return _outer(unsigned_bytes, key.sign(TAG + posts.post_id(unsigned_bytes)))


def _fields(kind: Any, board: Any, key: SigningKey, created_at_ms: Any, parent: Any, body: Any,
            *extra: Any) -> list[Any]:
    return [1, kind, board, key.public_key, created_at_ms, parent, body, *extra]


def _nonce(unsigned7: list[Any], target: int, *, meets: bool) -> bytes:
    """The first nonce (counting up from 0) whose id does (or does not) meet ``target``."""
    if meets:
        return work.mine(unsigned7, target)
    for n in range(1 << 16):
        nonce = n.to_bytes(work.NONCE_BYTES, "big")
        pid = posts.post_id(wire.pack([*unsigned7, [target, nonce]]))
        if not work.meets(pid, target):
            return nonce
    raise AssertionError("unreachable: almost every nonce misses 16 bits")


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data)
    return data.replace(old, new)


# --- case records ---------------------------------------------------------------------------


def _work_facts(raw: bytes) -> dict[str, Any]:
    try:
        post = posts.decode_post(raw)
    except errors.WorkError:
        # The work item decoded (steps 1-12 passed); only the id falls short.
        value = wire.unpack(raw, max_bytes=limits.MAX_POST_BYTES)
        target, nonce = value[0][7]
        pid = posts.claimed_id(raw)
        return {"work_target": target, "nonce_hex": nonce.hex(), "leading_zero_bits": work.leading_zero_bits(pid)}
    except errors.RemoteProtocolError:
        return {}
    if post.work is None:
        return {}
    target, nonce = post.work
    return {"work_target": target, "nonce_hex": nonce.hex(), "leading_zero_bits": work.leading_zero_bits(post.id)}


def _case(name: str, description: str, raw: bytes, expect: str, seed: bytes | None, now: int = NOW,
          **extra: Any) -> dict[str, Any]:
    pid = posts.refused_id(raw)
    case: dict[str, Any] = {
        "name": name,
        "description": description,
        "raw_hex": raw.hex(),
        "id_hex": None if pid is None else pid.hex(),
        "now": now,
        "expect": expect,
    }
    if seed is not None:
        case["seed_hex"] = seed.hex()
    case.update(_work_facts(raw))
    case.update(extra)
    return case


def _valid(name: str, description: str, seed: bytes, post: posts.Post, now: int = NOW,
           **extra: Any) -> dict[str, Any]:
    known = posts.is_known_kind(post.kind)
    case = _case(name, description, post.raw, "valid", seed, now)
    case.update({
        "known": known,
        "kind": post.kind,
        "board": post.board,
        "author_hex": post.author.hex(),
        "fingerprint": fingerprint(post.author),
        "created_at_ms": post.created_at_ms,
        "parent_hex": None if post.parent is None else post.parent.hex(),
        "body": post.body,
    })
    if known:
        case["work_bits"] = None if post.work is None else post.work[0]
    if post.kind == moderation.KIND_MODERATION:
        s = moderation.parse_statement(post)
        case["statement"] = {"action": s.action, "subject": s.subject, "target_hex": s.target.hex(),
                             "reason": s.reason, "expires_at_ms": s.expires_at_ms}
    elif post.kind == moderation.KIND_CHARTER:
        c = moderation.parse_charter(post)
        case["charter"] = {"moderators_hex": [k.hex() for k in c.moderators], "description": c.description}
    case.update(extra)
    return case


# --- the cases ------------------------------------------------------------------------------


def _statements(cases: list[dict[str, Any]], target: posts.Post) -> None:
    key_m, key_a = SigningKey(SEED_M), SigningKey(SEED_A)
    a = key_a.public_key
    at = T0_MS + 60_000

    def stmt(name: str, description: str, **kw: Any) -> posts.Post:
        kw.setdefault("created_at_ms", at)
        post = moderation.create_statement(key_m, board="general", **kw)
        cases.append(_valid(name, description, SEED_M, post))
        return post

    hide = stmt("valid_statement_hide_post", "The moderator hides a post as spam: parent is the post's id.",
                action="hide", subject="post", target=target.id, reason="spam")
    stmt("valid_statement_block_author_expiring",
         "The moderator blocks an author (parent is the author's public key) for flooding, for 7 days.",
         action="block", subject="author", target=a, reason="flood", expires_at_ms=at + 7 * DAY_MS)
    stmt("valid_statement_vouch_author", "The moderator vouches for an author.",
         action="vouch", subject="author", target=a, reason="trusted")
    stmt("valid_statement_hide_author", "The moderator hides every post of an author on the board.",
         action="hide", subject="author", target=a, reason="provocation")
    stmt("valid_statement_block_post", "The moderator blocks one post (it names a home address).",
         action="block", subject="post", target=target.id, reason="doxxing")
    stmt("valid_statement_unknown_reason",
         "A reason code no node knows by name: valid, shown as the code itself.",
         action="hide", subject="post", target=target.id, reason="rude_words")
    stmt("valid_statement_longest_reason", "A reason code of 32 characters, the most.",
         action="hide", subject="post", target=target.id, reason="a" + "b1_" * 10 + "z")
    stmt("valid_statement_latest_expiry", "EXPIRES of 13 digits, 9999999999999, the largest allowed.",
         action="block", subject="post", target=target.id, reason="spam", expires_at_ms=10**13 - 1)
    stmt("valid_statement_expiry_one_ms_later", "EXPIRES one millisecond after created_at_ms, the earliest.",
         action="hide", subject="post", target=target.id, reason="other", expires_at_ms=at + 1)
    stmt("valid_statement_with_work", "A statement carrying 8 bits of proof of work.",
         action="hide", subject="post", target=target.id, reason="spam", created_at_ms=at + 1000, work_bits=8)
    undo = posts.create_post(key_m, kind=posts.KIND_RETRACT, board="general", body="",
                             created_at_ms=at + 120_000, parent=hide.id)
    cases.append(_valid("valid_statement_undo",
                        "Undo: the moderator retracts valid_statement_hide_post (target_raw_hex); "
                        "check_retraction(undo, statement) passes.", SEED_M, undo,
                        target_raw_hex=hide.raw.hex()))

    def bad(name: str, description: str, body: Any, parent: Any = target.id, expect: str = "bad_body") -> None:
        raw = _sign(key_m, wire.pack(_fields("moderation", "general", key_m, at, parent, body)))
        cases.append(_case(name, description, raw, expect, SEED_M))

    expiry = str(at + DAY_MS)
    bad("bad_body_statement_vouch_post", "'vouch post trusted': only authors can be vouched for.",
        "vouch post trusted")
    bad("bad_body_statement_capital_action", "'Hide post spam': words are lower case.", "Hide post spam")
    bad("bad_body_statement_capital_reason", "'hide post Spam': reason codes are lower case.", "hide post Spam")
    bad("bad_body_statement_double_space", "Two spaces between ACTION and SUBJECT.", "hide  post spam")
    bad("bad_body_statement_trailing_space", "A trailing space.", "hide post spam ")
    bad("bad_body_statement_trailing_newline", "A trailing line feed.", "hide post spam\n")
    bad("bad_body_statement_leading_space", "A leading space.", " hide post spam")
    bad("bad_body_statement_tabs", "Tabs instead of spaces.", "hide\tpost\tspam")
    bad("bad_body_statement_no_reason", "No REASON.", "hide post")
    bad("bad_body_statement_unknown_action", "ACTION 'mute'.", "mute post spam")
    bad("bad_body_statement_unknown_subject", "SUBJECT 'thread'.", "hide thread spam")
    bad("bad_body_statement_reason_leading_digit", "A reason code starting with a digit.", "hide post 1spam")
    bad("bad_body_statement_reason_hyphen", "A reason code with a hyphen.", "hide post off-topic")
    bad("bad_body_statement_reason_too_long", "A reason code of 33 characters.", "hide post " + "a" * 33)
    bad("bad_body_statement_expiry_leading_zero", "EXPIRES with a leading zero.", f"hide post spam 0{expiry}")
    bad("bad_body_statement_expiry_zero", "EXPIRES of '0'.", "hide post spam 0")
    bad("bad_body_statement_expiry_at_creation", "EXPIRES equal to created_at_ms (must be later).",
        f"hide post spam {at}")
    bad("bad_body_statement_expiry_before_creation", "EXPIRES before created_at_ms.",
        f"hide post spam {at - 1}")
    bad("bad_body_statement_expiry_14_digits", "EXPIRES of 14 digits (over 10^13 - 1).",
        "hide post spam 10000000000000")
    bad("bad_body_statement_expiry_sign", "EXPIRES with a '+' sign.", f"hide post spam +{expiry}")
    bad("bad_body_statement_expiry_arabic_digits",
        "EXPIRES in ARABIC-INDIC digits (Unicode Nd, but not ASCII 0-9).",
        "hide post spam " + expiry.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")))
    bad("bad_body_statement_extra_word", "A fifth word.", f"hide post spam {expiry} now")
    bad("bad_body_statement_empty", "An empty body.", "")
    bad("bad_field_statement_without_target", "A statement with a nil parent: the target is required.",
        "hide post spam", parent=None, expect="bad_field")


def _charters(cases: list[dict[str, Any]]) -> None:
    key_a = SigningKey(SEED_A)
    mods = [hashlib.sha256(b"moderator %d" % i).digest() for i in range(limits.MAX_CHARTER_MODERATORS + 1)]
    at = T0_MS + 600_000

    def charter(name: str, description: str, moderators: list[bytes], text: str) -> None:
        post = moderation.create_charter(key_a, board="general", moderators=moderators, description=text,
                                         created_at_ms=at)
        cases.append(_valid(name, description, SEED_A, post))

    charter("valid_charter", "Two moderators, an empty line, a description of two lines.", mods[:2],
            "Strike committee board.\nSpam and doxxing are removed.")
    charter("valid_charter_moderators_only", "One moderator line and nothing else.", mods[:1], "")
    charter("valid_charter_description_only", "No moderator: the body starts with the empty line.", [],
            "Nobody moderates this board yet.")
    charter("valid_charter_most_moderators", f"{limits.MAX_CHARTER_MODERATORS} moderators, the most.",
            mods[: limits.MAX_CHARTER_MODERATORS], "")
    charter("valid_charter_description_mentions_moderators",
            "A description line that starts with 'moderator ' but is not of the moderator form.", mods[:1],
            "moderator meeting on Friday")
    post = posts.create_post(key_a, kind="charter", board="general", created_at_ms=at,
                             body=f"moderator {mods[0].hex()}\n")
    cases.append(_valid("valid_charter_empty_description",
                        "A moderator line, then the empty line and an empty description.", SEED_A, post))

    def bad(name: str, description: str, body: Any, parent: Any = None, expect: str = "bad_body") -> None:
        raw = _sign(key_a, wire.pack(_fields("charter", "general", key_a, at, parent, body)))
        cases.append(_case(name, description, raw, expect, SEED_A))

    def lines(keys: list[bytes]) -> str:
        return "\n".join(f"moderator {k.hex()}" for k in keys)

    bad("bad_body_charter_too_many_moderators", f"{limits.MAX_CHARTER_MODERATORS + 1} moderator lines.",
        lines(mods))
    bad("bad_body_charter_repeated_moderator", "The same key named twice.", lines([mods[0], mods[1], mods[0]]))
    bad("bad_body_charter_upper_case_hex", "A key in upper-case hex.", f"moderator {mods[0].hex().upper()}")
    bad("bad_body_charter_short_key", "A key of 63 hex digits.", f"moderator {mods[0].hex()[:63]}")
    bad("bad_body_charter_double_space", "Two spaces after 'moderator'.", f"moderator  {mods[0].hex()}")
    bad("bad_body_charter_no_empty_line", "Text right after the moderator lines, without the empty line.",
        lines(mods[:1]) + "\nWelcome.")
    bad("bad_body_charter_description_without_empty_line",
        "No moderator and a description not preceded by the empty line.", "Welcome.")
    bad("bad_body_charter_moderator_after_description", "A moderator line inside the description.",
        lines(mods[:1]) + "\n\nWelcome.\n" + lines(mods[1:2]))
    bad("bad_body_charter_blank", "Only the empty line: no moderator and a blank description.", "\n")
    bad("bad_body_charter_carriage_return", "Lines ended by CR LF (a control character).",
        lines(mods[:1]) + "\r\n\r\nWelcome.")
    bad("bad_field_charter_with_parent", "A charter naming a parent.", lines(mods[:1]),
        parent=mods[0], expect="bad_field")


def _work(cases: list[dict[str, Any]]) -> None:
    key_a = SigningKey(SEED_A)
    key_b = SigningKey(SEED_B)
    post16 = posts.create_post(key_a, kind="post", board="general", body="hello, wall", created_at_ms=T0_MS,
                               work_bits=16)
    cases.append(_valid("valid_work_post", "A post with 16 bits of work: [16, nonce] as the 8th item.",
                        SEED_A, post16))
    reply8 = posts.create_post(key_b, kind="reply", board="general", body="Seen, thanks.",
                               created_at_ms=T0_MS + 1000, parent=post16.id, work_bits=8)
    cases.append(_valid("valid_work_reply_least_target", "A reply with 8 bits of work, the least target.",
                        SEED_B, reply8))
    # The least target whose id has more zero bits than it commits to: a node that requires more
    # than the committed target refuses it with pow_required all the same.
    body = "Committed 8 bits; the id happens to have more."
    n = 0
    while True:
        lucky = posts.create_post(key_a, kind="post", board="general", body=f"{body} ({n})", created_at_ms=T0_MS,
                                  work_bits=8)
        if work.leading_zero_bits(lucky.id) >= 12:
            break
        n += 1
    cases.append(_valid("valid_work_lucky_id",
                        "Committed target 8, and the id begins with 12 or more zero bits: worth 8 bits "
                        "to a node that requires work (a node requiring 12 answers pow_required).",
                        SEED_A, lucky))

    unsigned7 = _fields("post", "general", key_a, T0_MS, None, "Not enough work.")

    def bad(name: str, description: str, item: Any, expect: str, *more: Any) -> None:
        raw = _sign(key_a, wire.pack([*unsigned7, item, *more]))
        cases.append(_case(name, description, raw, expect, SEED_A))

    miss = _nonce(unsigned7, 16, meets=False)
    bad("bad_work", "Commits to 16 bits; the id has fewer (the first such nonce counting from 0).",
        [16, miss], "bad_work")
    hit = _nonce(unsigned7, 16, meets=True)
    bad("bad_field_work_target_below_min", f"Target {limits.MIN_POW_BITS - 1}: below min_pow_bits.",
        [limits.MIN_POW_BITS - 1, hit], "bad_field")
    bad("bad_field_work_target_above_max", f"Target {limits.MAX_POW_BITS + 1}: above max_pow_bits.",
        [limits.MAX_POW_BITS + 1, hit], "bad_field")
    bad("bad_field_work_target_boolean", "Target true (c3): a boolean is not an integer.", [True, hit], "bad_field")
    bad("bad_field_work_short_nonce", "A nonce of 7 bytes.", [16, hit[:7]], "bad_field")
    bad("bad_field_work_long_nonce", "A nonce of 9 bytes.", [16, hit + b"\x00"], "bad_field")
    bad("bad_field_work_nonce_str", "A nonce as str instead of bin.", [16, "00000000"], "bad_field")
    bad("bad_field_work_nil", "An 8th item of nil: a post without work has 7 items.", None, "bad_field")
    bad("bad_field_work_one_item", "A work item of one item.", [16], "bad_field")
    bad("bad_field_work_three_items", "A work item of three items.", [16, hit, 0], "bad_field")
    bad("bad_field_nine_items", "A valid work item followed by a 9th item.", [16, hit], "bad_field", None)
    noncanon = _replace_once(wire.pack([*unsigned7, [16, hit]]), b"\x92\x10\xc4\x08", b"\x92\xcc\x10\xc4\x08")
    cases.append(_case("non_canonical_work_target", "The target 16 as uint8 (cc 10) instead of a fixint.",
                       _sign(key_a, noncanon), "non_canonical", SEED_A))


def _unknown(cases: list[dict[str, Any]], target: posts.Post) -> None:
    key_b = SigningKey(SEED_B)
    at = T0_MS + 900_000

    def carried(name: str, description: str, kind: str, body: str, parent: bytes | None = None,
                work_bits: int | None = None) -> None:
        unsigned = _fields(kind, "general", key_b, at, parent, body)
        if work_bits is not None:
            unsigned.append([work_bits, work.mine(unsigned, work_bits)])
        raw = _sign(key_b, wire.pack(unsigned))
        post = posts.check_post(raw, NOW)
        cases.append(_valid(name, description, SEED_B, post))

    carried("valid_unknown_kind_poll", "Kind 'poll' (a kind of a later revision): stored and passed on uninterpreted.",
            "poll", "Which day? Thursday / Friday")
    carried("valid_unknown_kind_empty_body_with_parent", "Kind 'edit' with a parent and an empty body.",
            "edit", "", parent=target.id)
    carried("valid_unknown_kind_control_characters",
            "Kind 'x_2' whose body holds NUL, CR and ESC: the body of an unknown kind is not read.",
            "x_2", "a\x00b\rc\x1b[0m")
    carried("valid_unknown_kind_longest_name", "A kind name of 32 characters, the most.", "z" + "9_" * 15 + "k", "ok")
    carried("valid_unknown_kind_body_at_limit", f"A body of exactly max_body_bytes ({limits.MAX_BODY_BYTES}) bytes.",
            "blob", "b" * limits.MAX_BODY_BYTES)
    carried("valid_unknown_kind_with_work", "Kind 'poll' with 8 bits of work.", "poll", "Work too.", work_bits=8)

    def bad(name: str, description: str, kind: Any, expect: str, *, board: Any = "general", body: Any = "x",
            parent: Any = None, created_at_ms: int = at, now: int = NOW) -> None:
        raw = _sign(key_b, wire.pack(_fields(kind, board, key_b, created_at_ms, parent, body)))
        cases.append(_case(name, description, raw, expect, SEED_B, now))

    bad("unknown_kind_capital", "Kind 'Poll': not a kind name (capital).", "Poll", "unknown_kind")
    bad("unknown_kind_leading_digit", "Kind '2poll': a kind name starts with a letter.", "2poll", "unknown_kind")
    bad("unknown_kind_leading_underscore", "Kind '_poll'.", "_poll", "unknown_kind")
    bad("unknown_kind_hyphen", "Kind 'po-ll'.", "po-ll", "unknown_kind")
    bad("unknown_kind_non_ascii", "Kind 'pöll'.", "pöll", "unknown_kind")
    bad("unknown_kind_empty", "The empty kind.", "", "unknown_kind")
    bad("unknown_kind_too_long", "A kind name of 33 characters.", "z" * 33, "unknown_kind")
    bad("unknown_kind_before_board", "Kind 'Poll' on a bad board: the kind is checked first.", "Poll",
        "unknown_kind", board="gen\u200beral")
    bad("bad_body_unknown_kind_too_long", "Kind 'blob' with a body of max_body_bytes + 1 bytes.", "blob",
        "bad_body", body="b" * (limits.MAX_BODY_BYTES + 1))
    bad("bad_board_unknown_kind", "Kind 'poll' on board U+202E 'lareneg'.", "poll", "bad_board",
        board="\u202elareneg")
    bad("bad_field_unknown_kind_short_parent", "Kind 'edit' with a 31-byte parent.", "edit", "bad_field",
        parent=target.id[:31])
    bad("bad_field_unknown_kind_binary_body", "Kind 'poll' with a bin body.", "poll", "bad_field", body=b"x")
    bad("future_unknown_kind", "Kind 'poll' dated 1 ms past the future window.", "poll", "future",
        created_at_ms=NOW * 1000 + limits.MAX_FUTURE_SKEW_S * 1000 + 1)
    good = _sign(key_b, wire.pack(_fields("poll", "general", key_b, at, None, "flip")))
    flipped = bytearray(good)
    flipped[-64 + 17] ^= 0x04
    cases.append(_case("bad_signature_unknown_kind", "Kind 'poll' with one bit of its signature flipped.",
                       bytes(flipped), "bad_signature", SEED_B))
    unsigned7 = _fields("poll", "general", key_b, at, None, "Not enough work.")
    raw = _sign(key_b, wire.pack([*unsigned7, [16, _nonce(unsigned7, 16, meets=False)]]))
    cases.append(_case("bad_work_unknown_kind", "Kind 'poll' committing to 16 bits its id does not have.",
                       raw, "bad_work", SEED_B))


def build() -> dict[str, Any]:
    """The whole vector document as a JSON-ready dict."""
    key_a = SigningKey(SEED_A)
    target = posts.create_post(key_a, kind="post", board="general", body="Meeting moved to Thursday.",
                               created_at_ms=T0_MS)
    cases: list[dict[str, Any]] = [_valid("valid_target_post", "The post the statements below are about.",
                                          SEED_A, target)]
    _statements(cases, target)
    _charters(cases)
    _work(cases)
    _unknown(cases, target)
    names = [case["name"] for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return {
        "source": SOURCE,
        "format": FORMAT,
        "signature_tag_hex": TAG.hex(),
        "min_pow_bits": limits.MIN_POW_BITS,
        "max_pow_bits": limits.MAX_POW_BITS,
        "max_charter_moderators": limits.MAX_CHARTER_MODERATORS,
        "max_body_bytes": limits.MAX_BODY_BYTES,
        "known_kinds": list(posts.KINDS),
        "kind_name_pattern": "[a-z][a-z0-9_]{0,31}",
        "cases": cases,
    }


def render() -> str:
    """The exact text of moderation.json: UTF-8, non-ASCII kept literal, one trailing newline."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is out of date; rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
