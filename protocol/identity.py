"""Pseudonymous identities: Ed25519 keys, signatures, fingerprints and encrypted key files.

Bytes in, bytes out.  Randomness is never drawn here: callers pass a 32-byte seed to make a
key and an ``rng(n) -> bytes`` to seal a key file.  See docs/protocol.md, "Identities" and
"Encrypted key files".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from . import limits
from .errors import (
    BodyError,
    KeyFileCorruptError,
    KeyFileFormatError,
    KeyFileParamsError,
    KeyFileTruncatedError,
    LocalProtocolError,
    SignatureError,
    WrongPassphraseError,
)
from .names import check_visible_text

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "SEED_BYTES",
    "SigningKey",
    "verify",
    "fingerprint",
    "KdfParams",
    "DEFAULT_KDF",
    "seal_key_file",
    "open_key_file",
    "read_key_file_header",
    "KeyFileHeader",
    "check_display_name",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32

FINGERPRINT_TAG = b"dazibao/v1/fingerprint\x00"
FINGERPRINT_BYTES = 15  # 120 bits, shown as 24 base32 characters in six groups of four.


class SigningKey:
    """An Ed25519 private key.  Its bytes never appear in a repr, a log or an exception."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != SEED_BYTES:
            raise LocalProtocolError("a signing key is made from exactly 32 seed bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (RFC 8032)."""
        return self._key.sign(message)

    def seed(self) -> bytes:
        """The 32 secret seed bytes.  Only the key-file sealer should need them."""
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"<SigningKey {fingerprint(self.public_key)}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:  # pragma: no cover - guard, not behaviour
        raise TypeError("signing keys are not picklable")


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature; return None or raise SignatureError.

    This is the one function in dazibao that verifies signatures.  It uses libsodium's strict
    verification (docs/protocol.md, "Signatures"): S must be below the group order, the public
    key and R must be canonical encodings of points that are not of small order.  The choice of
    libsodium over OpenSSL is measured by ``python bench/run.py verify``.
    """
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        raise SignatureError("signature or public key has the wrong length")
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.CryptoError, ValueError):
        raise SignatureError("signature does not verify") from None


def fingerprint(public_key: bytes) -> str:
    """The human-checkable fingerprint of a public key, e.g. ``k7q2-m4xa-9p3d-...``.

    SHA-256 over a domain tag and the key, first 15 bytes, RFC 4648 base32 in lower case, in
    groups of four characters joined by ``-``.
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise LocalProtocolError("a public key is 32 bytes")
    digest = hashlib.sha256(FINGERPRINT_TAG + public_key).digest()[:FINGERPRINT_BYTES]
    text = base64.b32encode(digest).decode("ascii").lower()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def check_display_name(name: str, what: str = "display name") -> str:
    """Check a display name (NFC, 1..64 code points, no control or format characters).

    Returns the name; raises BodyError.  The same rule applies to profile posts and key files.
    """
    if type(name) is not str:
        raise BodyError(f"{what}: expected a string")
    if not 1 <= len(name) <= limits.MAX_DISPLAY_NAME_CHARS:
        raise BodyError(f"{what}: must be 1 to {limits.MAX_DISPLAY_NAME_CHARS} characters")
    if len(name.encode("utf-8", "surrogatepass")) > limits.MAX_DISPLAY_NAME_BYTES:
        raise BodyError(f"{what}: longer than {limits.MAX_DISPLAY_NAME_BYTES} UTF-8 bytes")
    check_visible_text(name, what, error=BodyError)
    return name


# --- encrypted key files (docs/protocol.md, "Encrypted key files") ---------------------------

KEYFILE_MAGIC = b"DZBK"
KEYFILE_VERSION = 1
KDF_ARGON2ID = 1
_HEADER = struct.Struct(">4sBBIIB16s12s32sB")  # magic .. name length
_CIPHERTEXT_BYTES = SEED_BYTES + 16
_CHECKSUM_BYTES = 32


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters (RFC 9106)."""

    memory_kib: int = 65_536
    iterations: int = 3
    lanes: int = 4

    def check(self) -> None:
        """Raise KeyFileParamsError unless the parameters are within the limits table."""
        if not limits.KDF_MIN_MEMORY_KIB <= self.memory_kib <= limits.KDF_MAX_MEMORY_KIB:
            raise KeyFileParamsError(f"Argon2id memory {self.memory_kib} KiB is out of bounds")
        if not limits.KDF_MIN_ITERATIONS <= self.iterations <= limits.KDF_MAX_ITERATIONS:
            raise KeyFileParamsError(f"Argon2id iterations {self.iterations} is out of bounds")
        if not 1 <= self.lanes <= limits.KDF_MAX_LANES:
            raise KeyFileParamsError(f"Argon2id lanes {self.lanes} is out of bounds")
        if self.memory_kib < 8 * self.lanes:
            raise KeyFileParamsError("Argon2id memory must be at least 8 KiB per lane")


#: RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
DEFAULT_KDF = KdfParams()


@dataclass(frozen=True, slots=True)
class KeyFileHeader:
    """What a key file says about itself without a passphrase."""

    public_key: bytes
    name: str
    kdf: KdfParams


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        # NFC so that the same passphrase typed through different input methods matches.
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not isinstance(passphrase, bytes) or not passphrase:
        raise LocalProtocolError("the passphrase must be a non-empty string")
    return passphrase


def _derive(passphrase: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    return Argon2id(
        salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes, memory_cost=kdf.memory_kib
    ).derive(passphrase)


def seal_key_file(
    key: SigningKey,
    name: str,
    passphrase: str | bytes,
    rng: Callable[[int], bytes],
    kdf: KdfParams = DEFAULT_KDF,
) -> bytes:
    """Encrypt ``key`` under ``passphrase`` into the bytes of a key file.

    ``rng(n)`` must return ``n`` cryptographically random bytes (salt and nonce).  Raises
    LocalProtocolError for an empty passphrase, BodyError for a bad name and
    KeyFileParamsError for KDF parameters outside the limits.
    """
    check_display_name(name, "pseudonym name")
    kdf.check()
    secret = _passphrase_bytes(passphrase)
    salt, nonce = rng(16), rng(12)
    if len(salt) != 16 or len(nonce) != 12:
        raise LocalProtocolError("rng returned the wrong number of bytes")
    name_bytes = name.encode("utf-8")
    header = _HEADER.pack(
        KEYFILE_MAGIC, KEYFILE_VERSION, KDF_ARGON2ID, kdf.memory_kib, kdf.iterations, kdf.lanes,
        salt, nonce, key.public_key, len(name_bytes),
    ) + name_bytes
    ciphertext = ChaCha20Poly1305(_derive(secret, salt, kdf)).encrypt(nonce, key.seed(), header)
    body = header + ciphertext
    return body + hashlib.sha256(body).digest()


def _parse(data: bytes) -> tuple[KeyFileHeader, bytes, bytes, bytes, bytes]:
    data = bytes(data)
    if len(data) < 5 or data[:4] != KEYFILE_MAGIC:
        raise KeyFileFormatError("not a dazibao key file (bad magic bytes)")
    if data[4] != KEYFILE_VERSION:
        raise KeyFileFormatError(f"key file format version {data[4]} is not supported")
    if len(data) < _HEADER.size:
        raise KeyFileTruncatedError(f"key file is {len(data)} bytes, shorter than its header")
    _, _, kdf_id, memory_kib, iterations, lanes, salt, nonce, public_key, name_len = _HEADER.unpack_from(data)
    expected = _HEADER.size + name_len + _CIPHERTEXT_BYTES + _CHECKSUM_BYTES
    if len(data) < expected:
        raise KeyFileTruncatedError(f"key file is {len(data)} bytes, its header says {expected}")
    if len(data) > expected:
        raise KeyFileCorruptError(f"key file has {len(data) - expected} unexpected trailing bytes")
    body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), checksum):
        raise KeyFileCorruptError("key file checksum does not match: it is damaged or was altered")
    if kdf_id != KDF_ARGON2ID:
        raise KeyFileFormatError(f"key derivation function {kdf_id} is not supported")
    kdf = KdfParams(memory_kib, iterations, lanes)
    kdf.check()
    header_end = _HEADER.size + name_len
    try:
        name = data[_HEADER.size : header_end].decode("utf-8")
        check_display_name(name, "pseudonym name")
    except (UnicodeDecodeError, BodyError):
        raise KeyFileCorruptError("key file holds an invalid pseudonym name") from None
    header = KeyFileHeader(public_key=public_key, name=name, kdf=kdf)
    return header, data[:header_end], salt, nonce, data[header_end : header_end + _CIPHERTEXT_BYTES]


def read_key_file_header(data: bytes) -> KeyFileHeader:
    """Name, public key and KDF parameters of a key file, without opening it.

    Raises the KeyFileError subclasses of :func:`open_key_file` except WrongPassphraseError.
    """
    return _parse(data)[0]


def open_key_file(data: bytes, passphrase: str | bytes) -> tuple[SigningKey, KeyFileHeader]:
    """Decrypt a key file.  Returns the key and the header.

    Raises KeyFileFormatError (not a key file / unknown version), KeyFileTruncatedError,
    KeyFileCorruptError (checksum or content damaged), KeyFileParamsError (KDF costs out of
    bounds) or WrongPassphraseError.  None of their messages contain secret material.
    """
    header, aad, salt, nonce, ciphertext = _parse(data)
    secret = _passphrase_bytes(passphrase)
    try:
        seed = ChaCha20Poly1305(_derive(secret, salt, header.kdf)).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise WrongPassphraseError("the passphrase does not open this key file") from None
    key = SigningKey(seed)
    if key.public_key != header.public_key:
        raise KeyFileCorruptError("key file's secret key does not match its public key")
    return key, header
