"""Benchmark ``verify``: raw Ed25519 verification against dazibao's whole per-post check.

Measured in one run, on the same machine and the same posts (docs/performance.md, "verify"):

* ``raw_cryptography_per_s`` -- ``Ed25519PublicKey.verify`` of pyca/cryptography (OpenSSL), with
  the public-key objects loaded beforehand;
* ``raw_libsodium_per_s`` -- ``nacl.bindings.crypto_sign_open`` of PyNaCl (libsodium), the call
  that ``dazibao.protocol.identity.verify`` makes, with ``signature + message`` joined beforehand;
* ``decode_per_s`` -- ``posts.decode_post(raw)``: msgpack decode, canonical re-encode, field rules;
* ``check_post_per_s`` -- ``posts.check_post(raw, now)``: decode, future window and signature,
  i.e. everything a node does to accept a post from outside before storing it.

The raw rates verify exactly what dazibao signs (``POST_SIGNATURE_TAG`` + 32-byte id) with the
same keys and signatures.  Posts are realistic: bodies of 100 to 2000 UTF-8 bytes, a third of
them Chinese, a third replies, many authors and several boards.  The candidates are measured in
interleaved rounds (the order rotates every round) and each figure is the median over rounds;
each ratio is the median of the per-round ratios, so a slowdown of the shared machine that hits
one round hits both sides of its ratio.  A library that cannot be imported is skipped.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

from dazibao.protocol import identity, posts

try:
    import nacl
    import nacl.bindings
except ImportError:  # pragma: no cover - PyNaCl is a dependency; the skip is for other setups
    nacl = None

try:
    import cryptography
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover
    cryptography = None

# A fixed receiver clock (seconds): the protocol takes time as an argument, so the benchmark
# does not need the wall clock for it, and the posts are dated just before it.
NOW_S = 1_760_000_000
BOARDS = ("general", "logistics", "城市/北区", "press review", "legal-aid", "夜班")

_LATIN_WORDS = (
    "meeting moved to thursday the usual place bring banners water and a charger we need "
    "volunteers for the night shift please share with people you trust not on open channels "
    "lawyer phone number is on the card check the map before leaving stay in pairs"
).split()
# Common Chinese characters and punctuation, so that bodies look like real text to the decoder
# (three UTF-8 bytes per character).
_CJK = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种"
    "面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
    "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比"
    "或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做"
    "必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权"
    "收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信"
    "马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连"
    "断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存"
    "候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
)
_CJK_PUNCT = "，。、；：！？"


def _fit(text: str, size: int) -> str:
    """``text`` cut or padded with full stops to exactly ``size`` UTF-8 bytes, no outer space."""
    data = text.encode("utf-8")[:size].decode("utf-8", "ignore").strip()
    return data + "." * (size - len(data.encode("utf-8")))


def _latin_body(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_LATIN_WORDS)
        if rng.random() < 0.08:
            word += rng.choice(".,;:!?")
        if rng.random() < 0.03:
            word += "\n"
        words.append(word)
        length += len(word) + 1
    return _fit(" ".join(words), size)


def _cjk_body(rng: random.Random, size: int) -> str:
    chars = []
    for _ in range(size // 3):
        roll = rng.random()
        chars.append(rng.choice(_CJK_PUNCT) if roll < 0.07 else "\n" if roll < 0.08 else rng.choice(_CJK))
    return _fit("".join(chars), size)


def make_posts(n_posts: int, n_authors: int, seed: int = 20260101) -> list[posts.Post]:
    """Deterministic, realistic signed posts: 100..2000-byte bodies, 1/3 Chinese, 1/3 replies."""
    rng = random.Random(seed)
    keys = [identity.SigningKey(rng.randbytes(32)) for _ in range(n_authors)]
    made: list[posts.Post] = []
    for i in range(n_posts):
        size = rng.randint(100, 2000)
        body = _cjk_body(rng, size) if i % 3 == 0 else _latin_body(rng, size)
        created_at_ms = NOW_S * 1000 - rng.randint(0, 30 * 86_400_000)
        if made and i % 3 == 1:
            parent = rng.choice(made)
            post = posts.create_post(
                rng.choice(keys), kind=posts.KIND_REPLY, board=parent.board, body=body,
                created_at_ms=created_at_ms, parent=parent.id,
            )
        else:
            post = posts.create_post(
                rng.choice(keys), kind=posts.KIND_POST, board=rng.choice(BOARDS), body=body,
                created_at_ms=created_at_ms,
            )
        made.append(post)
    return made


def _timed(loop: Callable[[], int]) -> float:
    """Run ``loop`` once with the garbage collector paused; return operations per second."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        count = loop()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return count / elapsed


def _candidates(sample: list[posts.Post]) -> dict[str, Callable[[], int]]:
    """name -> a loop over every post that returns how many operations it did."""
    raws = [post.raw for post in sample]
    messages = [posts.POST_SIGNATURE_TAG + post.id for post in sample]
    loops: dict[str, Callable[[], int]] = {}

    if cryptography is not None:
        # Keys are loaded once, as a node would cache them per author: this is the raw verify.
        triples = [
            (Ed25519PublicKey.from_public_bytes(post.author), post.signature, message)
            for post, message in zip(sample, messages, strict=True)
        ]

        def raw_cryptography() -> int:
            for key, signature, message in triples:
                key.verify(signature, message)
            return len(triples)

        loops["raw_cryptography"] = raw_cryptography

    if nacl is not None:
        crypto_sign_open = nacl.bindings.crypto_sign_open
        pairs = [(post.signature + message, post.author) for post, message in zip(sample, messages, strict=True)]

        def raw_libsodium() -> int:
            for signed, public_key in pairs:
                crypto_sign_open(signed, public_key)
            return len(pairs)

        loops["raw_libsodium"] = raw_libsodium

    decode_post = posts.decode_post
    check_post = posts.check_post

    def decode() -> int:
        for raw in raws:
            decode_post(raw)
        return len(raws)

    def check() -> int:
        for raw in raws:
            check_post(raw, NOW_S)
        return len(raws)

    loops["decode"] = decode
    loops["check_post"] = check
    return loops


def _sanity(sample: list[posts.Post], loops: dict[str, Callable[[], int]]) -> None:
    # Every candidate must succeed on every post, or a fast failure would pass for speed.
    for post in sample:
        if posts.check_post(post.raw, NOW_S).id != post.id:
            raise RuntimeError("check_post gave a different id for a post it just made")
    for loop in loops.values():
        loop()  # raises on any failure; also the warm-up pass


def _library_versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    if cryptography is not None:
        try:
            from cryptography.hazmat.backends.openssl.backend import backend

            openssl = backend.openssl_version_text()
        except Exception:  # pragma: no cover - only decorates the report
            openssl = "OpenSSL"
        parts.append(f"cryptography {cryptography.__version__} ({openssl})")
    if nacl is not None:
        parts.append(f"PyNaCl {nacl.__version__} (libsodium)")
    return ", ".join(parts)


def main(quick: bool) -> dict[str, float]:
    n_posts, n_authors, rounds = (400, 40, 5) if quick else (3000, 300, 15)
    setup_start = time.perf_counter()
    sample = make_posts(n_posts, n_authors)
    loops = _candidates(sample)
    _sanity(sample, loops)
    setup_s = time.perf_counter() - setup_start
    names = list(loops)

    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        # Rotate the order so that no candidate always runs first (cold) or last (hot).
        for name in names[r % len(names):] + names[: r % len(names)]:
            per_round[name].append(_timed(loops[name]))
    median = {name: statistics.median(rates) for name, rates in per_round.items()}

    raw_names = [name for name in ("raw_libsodium", "raw_cryptography") if name in median]
    fastest = max(raw_names, key=lambda name: median[name])
    ratio_check = statistics.median(c / f for c, f in zip(per_round["check_post"], per_round[fastest], strict=True))

    body_sizes = [len(post.body.encode("utf-8")) for post in sample]
    print(
        f"verify: {n_posts} posts by {n_authors} authors on {len(BOARDS)} boards, bodies "
        f"{min(body_sizes)}..{max(body_sizes)} bytes (mean {statistics.mean(body_sizes):.0f}), "
        f"1/3 Chinese, 1/3 replies"
    )
    print(f"        {rounds} interleaved rounds, median of each; setup {setup_s:.1f} s, "
          f"total {time.perf_counter() - setup_start:.1f} s")
    print(f"        {_library_versions()}; {os.cpu_count()} CPUs, {platform.machine()}")
    labels = {
        "raw_cryptography": "raw Ed25519 verify, cryptography (OpenSSL)",
        "raw_libsodium": "raw Ed25519 verify, PyNaCl (libsodium)",
        "decode": "posts.decode_post (no signature)",
        "check_post": "posts.check_post (decode + window + verify)",
    }
    print(f"  {'what':46s} {'median/s':>10s} {'us/op':>8s} {'min/s':>10s} {'max/s':>10s}")
    for name in names:
        rates = per_round[name]
        print(
            f"  {labels[name]:46s} {median[name]:10.0f} {1e6 / median[name]:8.1f} "
            f"{min(rates):10.0f} {max(rates):10.0f}"
        )

    result: dict[str, float] = {}
    if "raw_cryptography" in median:
        result["raw_cryptography_per_s"] = round(median["raw_cryptography"], 1)
    if "raw_libsodium" in median:
        result["raw_libsodium_per_s"] = round(median["raw_libsodium"], 1)
    result["fastest_raw_per_s"] = round(median[fastest], 1)
    result["check_post_per_s"] = round(median["check_post"], 1)
    result["decode_per_s"] = round(median["decode"], 1)
    result["ratio_check_to_fastest_raw"] = round(ratio_check, 3)
    print(f"  check_post / fastest raw ({fastest}): {ratio_check:.3f}  (target >= 0.8)")
    if "raw_cryptography" in median and "raw_libsodium" in median:
        ratio_libs = statistics.median(
            s / c for s, c in zip(per_round["raw_libsodium"], per_round["raw_cryptography"], strict=True)
        )
        result["ratio_libsodium_to_cryptography"] = round(ratio_libs, 3)
        print(f"  libsodium / cryptography: {ratio_libs:.3f}")
    sys.stdout.flush()
    return result
