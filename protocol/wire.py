"""msgpack framing with hard limits: the one place msgpack exceptions are caught.

Every dazibao message on the wire is one msgpack value with no trailing bytes, restricted to
nil, booleans, non-negative and negative integers, UTF-8 strings, binary strings, arrays and
maps with string keys (docs/protocol.md, "Encoding").  Floats and extension types are never
valid.  Canonical form is "what :func:`pack` produces": shortest integer forms, ``str`` for
text and ``bin`` for bytes, shortest length headers; a decoder that cares about canonical form
re-encodes what it decoded and compares bytes (:func:`unpack_canonical`).
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import FieldError, MalformedError, NonCanonicalError, TooLargeError

__all__ = [
    "pack",
    "unpack",
    "unpack_canonical",
    "expect_list",
    "expect_int",
    "expect_bytes",
    "expect_str",
]


def _no_ext(code: int, data: bytes) -> Any:
    raise MalformedError(f"msgpack extension type {code} is not allowed")


def pack(value: Any) -> bytes:
    """Encode ``value`` canonically.  Raises TypeError for a value outside the data model."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes, *, max_bytes: int, what: str = "message", typed: bool = False) -> Any:
    """Decode one msgpack value that must fill ``data`` exactly.

    With ``typed=True`` the caller promises to check the type of every value it uses (so that
    floats, timestamps and non-string map keys are refused there); the generic walk that
    refuses them is then skipped.

    Raises TooLargeError when ``data`` is longer than ``max_bytes`` and MalformedError for
    anything that is not exactly one well-formed msgpack value of the allowed types.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedError(f"{what}: expected bytes")
    if len(data) > max_bytes:
        raise TooLargeError(f"{what} is {len(data)} bytes, the limit is {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_no_ext,
        )
    except MalformedError:
        raise
    except msgpack.ExtraData:
        raise MalformedError(f"{what}: trailing bytes after the msgpack value") from None
    except (ValueError, msgpack.UnpackException) as exc:
        # ValueError covers truncated input, bad UTF-8, too-deep nesting, non-string map keys
        # and the length caps.  Nothing else is expected from unpackb.
        raise MalformedError(f"{what}: not well-formed msgpack ({type(exc).__name__})") from None
    if not typed:
        _reject_floats(value, what)
    return value


def _reject_floats(value: Any, what: str) -> None:
    # Iterative walk: a hostile value may be deeply nested, and recursion would be a way in.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            raise FieldError(f"{what}: floating-point numbers are not allowed")
        if isinstance(item, msgpack.Timestamp):
            # msgpack decodes extension type -1 (timestamp) itself without calling ext_hook,
            # so the "no extension types" rule has to be enforced here as well.
            raise MalformedError(f"{what}: msgpack extension type -1 is not allowed")
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            # strict_map_key lets bytes keys through; the data model allows only strings.
            if any(type(key) is not str for key in item):
                raise MalformedError(f"{what}: map keys must be strings")
            stack.extend(item.values())


def unpack_canonical(data: bytes, *, max_bytes: int, what: str = "message") -> Any:
    """Like :func:`unpack`, and also raise NonCanonicalError unless ``pack`` gives ``data`` back."""
    value = unpack(data, max_bytes=max_bytes, what=what)
    try:
        again = pack(value)
    except (TypeError, ValueError, OverflowError):
        raise NonCanonicalError(f"{what}: value cannot be re-encoded") from None
    if again != bytes(data):
        raise NonCanonicalError(f"{what}: bytes are not the canonical encoding")
    return value


# --- shape checks shared by every decoder ------------------------------------------------


def expect_list(value: Any, length: int | None, what: str) -> list[Any]:
    """``value`` as a list (of exactly ``length`` items when given); FieldError otherwise."""
    if type(value) is not list:
        raise FieldError(f"{what}: expected an array")
    if length is not None and len(value) != length:
        raise FieldError(f"{what}: expected {length} items, got {len(value)}")
    return value


def expect_int(value: Any, what: str, *, lo: int = 0, hi: int = 2**64 - 1) -> int:
    """``value`` as an int in [lo, hi]; FieldError otherwise (booleans are not integers)."""
    if type(value) is not int:
        raise FieldError(f"{what}: expected an integer")
    if not lo <= value <= hi:
        raise FieldError(f"{what}: {value} is outside [{lo}, {hi}]")
    return value


def expect_bytes(value: Any, what: str, *, length: int | None = None, max_len: int | None = None) -> bytes:
    """``value`` as bytes of the given length; FieldError otherwise."""
    if type(value) is not bytes:
        raise FieldError(f"{what}: expected binary")
    if length is not None and len(value) != length:
        raise FieldError(f"{what}: expected {length} bytes, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        raise TooLargeError(f"{what}: {len(value)} bytes, the limit is {max_len}")
    return value


def expect_str(value: Any, what: str) -> str:
    """``value`` as a str; FieldError otherwise."""
    if type(value) is not str:
        raise FieldError(f"{what}: expected a string")
    return value
