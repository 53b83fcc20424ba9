"""Identities: keys, signatures, fingerprints and encrypted key files (protocol/identity.py).

A leaked seed or a key file that opens under the wrong conditions hurts a real person, so the
key-file tests damage the file in every way we can enumerate and assert which error comes out.
Argon2id runs with the cheapest parameters the limits table allows, so the suite stays fast.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import struct
import unicodedata

import pytest

from dazibao.protocol import identity, limits
from dazibao.protocol.errors import (
    BodyError,
    KeyFileCorruptError,
    KeyFileError,
    KeyFileFormatError,
    KeyFileParamsError,
    KeyFileTruncatedError,
    LocalProtocolError,
    RemoteProtocolError,
    SignatureError,
    WrongPassphraseError,
)
from dazibao.protocol.identity import (
    KdfParams,
    SigningKey,
    fingerprint,
    open_key_file,
    read_key_file_header,
    seal_key_file,
    verify,
)

FAST = KdfParams(memory_kib=8192, iterations=1, lanes=1)
SEED = bytes(range(100, 132))  # distinctive, so a leak of it is easy to spot
PASSPHRASE = "correct horse battery staple"
NAME = "organizer"

# The key-file layout (docs/protocol.md, "Encrypted key files"), written out here on purpose
# rather than read from identity.py, so that a change of format fails these tests.
MAGIC = slice(0, 4)
VERSION = 4
KDF_ID = 5
MEMORY = slice(6, 10)
ITERATIONS = slice(10, 14)
LANES = 14
SALT = slice(15, 31)
NONCE = slice(31, 43)
PUBLIC_KEY = slice(43, 75)
NAME_LEN = 75
HEADER_BYTES = 76
CIPHERTEXT_BYTES = 32 + 16
CHECKSUM_BYTES = 32


def counter_rng(label: bytes = b"test"):
    """A deterministic stand-in for os.urandom: good enough for tests, never for real keys."""
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(label + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    return rng


def seal(key: SigningKey | None = None, name: str = NAME, passphrase=PASSPHRASE, kdf: KdfParams = FAST, label=b"test") -> bytes:
    return seal_key_file(key or SigningKey(SEED), name, passphrase, counter_rng(label), kdf)


def rechecksum(body_with_old_checksum: bytes | bytearray) -> bytes:
    """Replace the trailing SHA-256 so that only the deeper checks can catch a change."""
    body = bytes(body_with_old_checksum[:-CHECKSUM_BYTES])
    return body + hashlib.sha256(body).digest()


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return seal()


# --- keys and signatures --------------------------------------------------------------------


def test_key_from_seed_is_deterministic_and_signs():
    key, again = SigningKey(SEED), SigningKey(SEED)
    assert len(key.public_key) == identity.PUBLIC_KEY_BYTES == 32
    assert key.public_key == again.public_key
    assert key.seed() == SEED
    signature = key.sign(b"message")
    assert len(signature) == identity.SIGNATURE_BYTES == 64
    assert signature == again.sign(b"message")  # Ed25519 signatures are deterministic
    assert verify(key.public_key, b"message", signature) is None


def test_distinct_seeds_give_distinct_keys():
    keys = {SigningKey(bytes([i]) * 32).public_key for i in range(64)}
    assert len(keys) == 64


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), bytearray(32), "0" * 32, None, list(range(32))])
def test_bad_seed_is_a_local_error(seed):
    with pytest.raises(LocalProtocolError):
        SigningKey(seed)


def test_verify_raises_for_every_kind_of_mismatch():
    key, other = SigningKey(SEED), SigningKey(bytes(32))
    signature = key.sign(b"message")
    for public_key, message, sig in [
        (key.public_key, b"messagE", signature),  # another message
        (other.public_key, b"message", signature),  # another key
        (key.public_key, b"message", signature[:-1]),  # short signature
        (key.public_key, b"message", signature + b"\x00"),  # long signature
        (key.public_key[:31], b"message", signature),  # short key
        (key.public_key, b"message", bytes(64)),
    ]:
        with pytest.raises(SignatureError):
            verify(public_key, message, sig)
    for i in range(64):
        tampered = bytearray(signature)
        tampered[i] ^= 0x01
        with pytest.raises(SignatureError):
            verify(key.public_key, b"message", bytes(tampered))


def test_verify_refuses_s_plus_group_order():
    # Malleability (RFC 8032 section 5.1.7): S + L is the same scalar mod L, and must be refused
    # so that a post has one signature, hence one byte form.
    group_order = 2**252 + 27742317777372353535851937790883648493
    key = SigningKey(SEED)
    signature = key.sign(b"message")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + group_order).to_bytes(32, "little")
    with pytest.raises(SignatureError):
        verify(key.public_key, b"message", malleated)


# --- fingerprints ---------------------------------------------------------------------------

FINGERPRINT_RE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){5}$")


def test_fingerprint_format():
    fp = fingerprint(SigningKey(SEED).public_key)
    assert FINGERPRINT_RE.match(fp), fp
    assert len(fp) == 29  # 24 base32 characters (120 bits) and 5 dashes


def test_fingerprint_is_the_documented_function():
    # SHA-256 over the domain tag and the key, first 15 bytes, lower-case base32, groups of four.
    import base64

    public_key = SigningKey(SEED).public_key
    digest = hashlib.sha256(b"dazibao/v1/fingerprint\x00" + public_key).digest()[:15]
    text = base64.b32encode(digest).decode().lower()
    assert fingerprint(public_key) == "-".join(text[i : i + 4] for i in range(0, 24, 4))


def test_fingerprint_is_stable():
    # Pinned: people compare fingerprints across machines and releases; it must never change.
    assert fingerprint(SigningKey(bytes([1]) * 32).public_key) == "muaz-ooly-d3fg-i3b4-eldm-vhiz"
    assert fingerprint(bytes(32)) == fingerprint(bytes(32))


def test_distinct_keys_have_distinct_fingerprints():
    fps = {fingerprint(SigningKey(bytes([i, 7]) * 16).public_key) for i in range(256)}
    assert len(fps) == 256
    assert all(FINGERPRINT_RE.match(fp) for fp in fps)
    # A one-bit change in the key changes the fingerprint.
    public_key = bytearray(SigningKey(SEED).public_key)
    before = fingerprint(bytes(public_key))
    public_key[31] ^= 0x01
    assert fingerprint(bytes(public_key)) != before


@pytest.mark.parametrize("public_key", [b"", bytes(31), bytes(33)])
def test_fingerprint_of_a_wrong_length_key_is_a_local_error(public_key):
    with pytest.raises(LocalProtocolError):
        fingerprint(public_key)


# --- key files: the good path ---------------------------------------------------------------


def test_key_file_round_trip(sealed):
    key, header = open_key_file(sealed, PASSPHRASE)
    assert key.seed() == SEED
    assert key.public_key == SigningKey(SEED).public_key
    assert header.public_key == key.public_key
    assert header.name == NAME
    assert header.kdf == FAST
    assert read_key_file_header(sealed) == header


def test_key_file_layout(sealed):
    assert sealed[MAGIC] == b"DZBK"
    assert sealed[VERSION] == 1 and sealed[KDF_ID] == 1
    assert struct.unpack(">IIB", sealed[6:15]) == (FAST.memory_kib, FAST.iterations, FAST.lanes)
    assert sealed[PUBLIC_KEY] == SigningKey(SEED).public_key
    assert sealed[NAME_LEN] == len(NAME.encode())
    assert len(sealed) == HEADER_BYTES + len(NAME.encode()) + CIPHERTEXT_BYTES + CHECKSUM_BYTES
    assert sealed[-CHECKSUM_BYTES:] == hashlib.sha256(sealed[:-CHECKSUM_BYTES]).digest()
    # The seed is encrypted: it must not appear in the file in any form.
    assert SEED not in sealed and SEED.hex().encode() not in sealed


def test_key_file_salt_and_nonce_come_from_rng():
    one, two = seal(label=b"one"), seal(label=b"two")
    assert one != two and one[SALT] != two[SALT] and one[NONCE] != two[NONCE]
    assert seal(label=b"one") == one  # nothing else is random
    assert open_key_file(two, PASSPHRASE)[0].seed() == SEED


def test_rng_returning_the_wrong_length_is_a_local_error():
    with pytest.raises(LocalProtocolError):
        seal_key_file(SigningKey(SEED), NAME, PASSPHRASE, lambda n: bytes(n - 1), FAST)


def test_bytes_passphrase_round_trip():
    data = seal(passphrase=b"\x00\xffraw bytes")
    assert open_key_file(data, b"\x00\xffraw bytes")[0].seed() == SEED


@pytest.mark.parametrize("passphrase", ["", b""])
def test_empty_passphrase_is_a_local_error(passphrase, sealed):
    with pytest.raises(LocalProtocolError):
        seal(passphrase=passphrase)
    with pytest.raises(LocalProtocolError):
        open_key_file(sealed, passphrase)


def test_cjk_pseudonym_name_round_trips():
    for name in ["夜猫子", "工会 通知", "字" * limits.MAX_DISPLAY_NAME_CHARS]:
        data = seal(name=name)
        key, header = open_key_file(data, PASSPHRASE)
        assert header.name == name and read_key_file_header(data).name == name
        assert key.seed() == SEED
    assert len(("字" * limits.MAX_DISPLAY_NAME_CHARS).encode()) == limits.MAX_DISPLAY_NAME_BYTES


@pytest.mark.parametrize("name", ["", " lead", "trail ", "a\u202eb", "a\u200bb", "x" * 65, "字" * 65, "cafe\u0301", "tab\there"])
def test_bad_pseudonym_name_is_refused_when_sealing(name):
    with pytest.raises(BodyError):
        seal(name=name)


def test_nfc_passphrase_equivalence():
    # The same passphrase typed as a precomposed or a decomposed é must open the same file.
    composed, decomposed = "caf\u00e9 \u00fcber", "cafe\u0301 u\u0308ber"
    assert composed != decomposed and unicodedata.normalize("NFC", decomposed) == composed
    data = seal(passphrase=decomposed)
    assert open_key_file(data, composed)[0].seed() == SEED
    assert open_key_file(data, decomposed)[0].seed() == SEED
    # Bytes are taken as given: the decomposed UTF-8 is a different passphrase.
    with pytest.raises(WrongPassphraseError):
        open_key_file(data, decomposed.encode())
    assert open_key_file(data, composed.encode())[0].seed() == SEED


def test_cjk_passphrase():
    data = seal(passphrase="我们的口令是团结")
    assert open_key_file(data, "我们的口令是团结")[0].seed() == SEED
    with pytest.raises(WrongPassphraseError):
        open_key_file(data, "我们的口令是团")


# --- key files: damage ----------------------------------------------------------------------


def test_wrong_passphrase(sealed):
    for wrong in ["correct horse battery stapl", "Correct horse battery staple", PASSPHRASE + " ", "x"]:
        with pytest.raises(WrongPassphraseError) as info:
            open_key_file(sealed, wrong)
        assert info.value.code == "wrong_passphrase"


def test_truncation_at_every_length(sealed):
    for length in range(len(sealed)):
        cut = sealed[:length]
        expected = KeyFileFormatError if length < 5 else KeyFileTruncatedError
        for call in (read_key_file_header, lambda data: open_key_file(data, PASSPHRASE)):
            with pytest.raises(expected):
                call(cut)


def test_trailing_bytes_are_corrupt(sealed):
    for extra in [b"\x00", b"\n", sealed[-1:], bytes(100)]:
        with pytest.raises(KeyFileCorruptError):
            open_key_file(sealed + extra, PASSPHRASE)
        with pytest.raises(KeyFileCorruptError):
            read_key_file_header(sealed + extra)


def _expected_for_flip(sealed: bytes, offset: int, mask: int) -> type[KeyFileError]:
    """Which error a file with ``sealed[offset] ^= mask`` must give, checksum left stale."""
    if offset < 5:
        return KeyFileFormatError  # magic bytes or format version
    if offset == NAME_LEN:
        # The name length decides how long the file should be: longer means cut off, shorter
        # means unexpected trailing bytes.
        new_len = sealed[NAME_LEN] ^ mask
        return KeyFileTruncatedError if new_len > sealed[NAME_LEN] else KeyFileCorruptError
    return KeyFileCorruptError  # everything else is covered by the checksum


@pytest.mark.parametrize("mask", [0xFF, 0x01, 0x80])
def test_flipping_each_byte(sealed, mask):
    for offset in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[offset] ^= mask
        expected = _expected_for_flip(sealed, offset, mask)
        with pytest.raises(KeyFileError) as info:
            open_key_file(bytes(damaged), PASSPHRASE)
        assert type(info.value) is expected, (offset, mask, info.value)
        with pytest.raises(expected):
            read_key_file_header(bytes(damaged))


def _expected_for_flip_rechecksummed(sealed: bytes, offset: int) -> type[KeyFileError] | None:
    """The error once the checksum is recomputed: what an attacker, not bit rot, would produce.

    None means the file must still be refused, by WrongPassphraseError, since every header byte
    is authenticated data of the AEAD and the rest is the ciphertext and its tag.
    """
    name_len = sealed[NAME_LEN]
    if offset < 5 or offset == KDF_ID:
        return KeyFileFormatError
    if MEMORY.start <= offset < MEMORY.stop:
        memory = int.from_bytes(sealed[MEMORY], "big") ^ (0xFF << (8 * (MEMORY.stop - 1 - offset)))
        return None if limits.KDF_MIN_MEMORY_KIB <= memory <= limits.KDF_MAX_MEMORY_KIB else KeyFileParamsError
    if ITERATIONS.start <= offset < ITERATIONS.stop or offset == LANES:
        return KeyFileParamsError  # 1 ^ 0xFF = 254, and any high byte, are out of bounds
    if offset == NAME_LEN:
        return KeyFileTruncatedError if name_len ^ 0xFF > name_len else KeyFileCorruptError
    if HEADER_BYTES <= offset < HEADER_BYTES + name_len:
        return KeyFileCorruptError  # an ASCII byte ^ 0xFF is not UTF-8: invalid pseudonym name
    return None


def test_tampering_with_a_recomputed_checksum(sealed):
    # The checksum is unkeyed, so it only catches accidents.  Tampering that also fixes the
    # checksum must still be refused: by the format/params checks or by the AEAD, never by
    # opening with a different name, public key or KDF cost than the one sealed.
    seen = set()
    for offset in range(len(sealed) - CHECKSUM_BYTES):
        damaged = bytearray(sealed)
        damaged[offset] ^= 0xFF
        data = rechecksum(damaged)
        expected = _expected_for_flip_rechecksummed(sealed, offset) or WrongPassphraseError
        seen.add(expected)
        with pytest.raises(KeyFileError) as info:
            open_key_file(data, PASSPHRASE)
        assert type(info.value) is expected, (offset, info.value)
    assert seen == {KeyFileFormatError, KeyFileParamsError, KeyFileTruncatedError, KeyFileCorruptError, WrongPassphraseError}


def test_unknown_version_and_kdf_are_format_errors(sealed):
    for offset, value in [(VERSION, 2), (VERSION, 0), (KDF_ID, 2), (KDF_ID, 0)]:
        damaged = bytearray(sealed)
        damaged[offset] = value
        with pytest.raises(KeyFileFormatError):
            open_key_file(rechecksum(damaged), PASSPHRASE)


def test_not_a_key_file():
    for data in [b"", b"DZB", b"DZBK", b"PK\x03\x04" + bytes(200), b"{\"key\": 1}", bytes(500)]:
        with pytest.raises(KeyFileFormatError):
            open_key_file(data, PASSPHRASE)


def _with_params(sealed: bytes, memory_kib: int, iterations: int, lanes: int) -> bytes:
    damaged = bytearray(sealed)
    damaged[6:15] = struct.pack(">IIB", memory_kib, iterations, lanes)
    return rechecksum(damaged)


@pytest.mark.parametrize(
    ("memory_kib", "iterations", "lanes"),
    [
        (limits.KDF_MIN_MEMORY_KIB - 1, 1, 1),
        (0, 1, 1),
        (limits.KDF_MAX_MEMORY_KIB + 1, 1, 1),
        (2**32 - 1, 1, 1),
        (8192, 0, 1),
        (8192, limits.KDF_MAX_ITERATIONS + 1, 1),
        (8192, 2**32 - 1, 1),
        (8192, 1, 0),
        (8192, 1, limits.KDF_MAX_LANES + 1),
        (8192, 1, 255),
    ],
)
def test_out_of_bounds_kdf_params(sealed, memory_kib, iterations, lanes):
    # Refused before any key derivation runs: a hostile file must not make us allocate 4 TiB or
    # spin for hours.  (If Argon2id ran with these values, this test would hang or crash.)
    params = KdfParams(memory_kib, iterations, lanes)
    with pytest.raises(KeyFileParamsError):
        params.check()
    data = _with_params(sealed, memory_kib, iterations, lanes)
    with pytest.raises(KeyFileParamsError):
        read_key_file_header(data)
    with pytest.raises(KeyFileParamsError):
        open_key_file(data, PASSPHRASE)
    with pytest.raises(KeyFileParamsError):
        seal(kdf=params)


def test_in_bounds_kdf_params_change_is_wrong_passphrase(sealed):
    # Legal but different costs derive a different key; the AEAD (header as associated data)
    # refuses it.
    with pytest.raises(WrongPassphraseError):
        open_key_file(_with_params(sealed, 8192, 2, 1), PASSPHRASE)


def test_the_bounds_themselves_are_accepted():
    KdfParams(limits.KDF_MIN_MEMORY_KIB, limits.KDF_MIN_ITERATIONS, 1).check()
    KdfParams(limits.KDF_MAX_MEMORY_KIB, limits.KDF_MAX_ITERATIONS, limits.KDF_MAX_LANES).check()
    identity.DEFAULT_KDF.check()


def test_header_public_key_must_match_the_sealed_seed():
    # A file whose header names one key but holds another's seed (made by a hostile or buggy
    # sealer, with a valid AEAD) must not open as the key the header claims.
    key = SigningKey(SEED)
    key.public_key = SigningKey(bytes(32)).public_key
    data = seal(key=key)
    with pytest.raises(KeyFileCorruptError):
        open_key_file(data, PASSPHRASE)


def test_key_file_errors_are_remote_errors_with_codes(sealed):
    codes = set()
    for data, cls in [
        (b"", KeyFileFormatError),
        (sealed[:50], KeyFileTruncatedError),
        (sealed + b"\x00", KeyFileCorruptError),
        (_with_params(sealed, 1, 1, 1), KeyFileParamsError),
    ]:
        with pytest.raises(cls) as info:
            open_key_file(data, PASSPHRASE)
        assert isinstance(info.value, RemoteProtocolError)
        codes.add(info.value.code)
    with pytest.raises(WrongPassphraseError) as info:
        open_key_file(sealed, "nope")
    codes.add(info.value.code)
    assert codes == {"keyfile_format", "keyfile_truncated", "keyfile_corrupt", "keyfile_params", "wrong_passphrase"}


# --- secrets never leak ---------------------------------------------------------------------


def _secret_forms(seed: bytes) -> list[str]:
    return [seed.hex(), seed.hex().upper(), repr(seed), seed.decode("latin-1"), str(list(seed))]


def _assert_no_secret(text: str, seed: bytes) -> None:
    for form in _secret_forms(seed):
        assert form not in text
    # Also no 8-byte window of the seed in hex, in case a message prints part of it.
    for i in range(len(seed) - 7):
        assert seed[i : i + 8].hex() not in text.lower()


def _exception_text(err: BaseException) -> str:
    parts = []
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        parts += [str(err), repr(err), repr(err.args), repr(getattr(err, "__dict__", {}))]
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


def test_seed_is_not_in_repr_or_str():
    key = SigningKey(SEED)
    for text in [repr(key), str(key), f"{key}", f"{key!r}", f"{key!s}"]:
        _assert_no_secret(text, SEED)
        assert fingerprint(key.public_key) in text
    assert not hasattr(key, "__dict__")  # __slots__: no stray attribute can hold a copy


def test_signing_keys_cannot_be_pickled():
    # A pickle would carry the seed in the clear into wherever it is written.
    with pytest.raises(TypeError):
        pickle.dumps(SigningKey(SEED))


def test_seed_never_in_exception_messages(sealed):
    errors_seen: list[BaseException] = []

    def collect(fn, *args):
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - we want every error, whatever its type
            errors_seen.append(err)
        else:
            raise AssertionError(f"{fn.__name__} did not raise")

    collect(open_key_file, sealed, "wrong")
    collect(open_key_file, sealed[:-1], PASSPHRASE)
    collect(open_key_file, sealed + b"\x00", PASSPHRASE)
    damaged = bytearray(sealed)
    damaged[HEADER_BYTES + len(NAME) + 3] ^= 0x01  # inside the ciphertext of the seed
    collect(open_key_file, bytes(damaged), PASSPHRASE)
    collect(open_key_file, rechecksum(damaged), PASSPHRASE)
    collect(open_key_file, _with_params(sealed, 1, 1, 1), PASSPHRASE)
    key = SigningKey(SEED)
    collect(seal_key_file, key, "", PASSPHRASE, counter_rng(), FAST)
    collect(seal_key_file, key, NAME, "", counter_rng(), FAST)
    collect(seal_key_file, key, NAME, PASSPHRASE, lambda n: b"", FAST)
    collect(seal_key_file, key, NAME, PASSPHRASE, counter_rng(), KdfParams(1, 1, 1))
    collect(SigningKey, SEED + b"\x00")
    collect(SigningKey, SEED[:-1])
    collect(SigningKey, SEED.hex())
    collect(verify, key.public_key, b"m", key.sign(b"other"))
    mismatched = SigningKey(SEED)
    mismatched.public_key = SigningKey(bytes(32)).public_key
    collect(open_key_file, seal(key=mismatched), PASSPHRASE)
    assert len(errors_seen) == 15
    for err in errors_seen:
        _assert_no_secret(_exception_text(err), SEED)
        _assert_no_secret(_exception_text(err), SEED[:-1])


def test_header_and_its_repr_hold_no_secret(sealed):
    header = read_key_file_header(sealed)
    _assert_no_secret(repr(header), SEED)
    key, header = open_key_file(sealed, PASSPHRASE)
    _assert_no_secret(repr((key, header)), SEED)
