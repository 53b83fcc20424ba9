"""msgpack framing with hard limits: the one place msgpack exceptions are caught.

Every dazibao message on the wire is one msgpack value with no trailing bytes, restricted to
nil, booleans, non-negative and negative integers, UTF-8 strings, binary strings, arrays and
maps with string keys (docs/protocol.md, "Encoding").  Floats and extension types are never
valid.  Canonical form is "what :func:`pack` produces": shortest integer forms, ``str`` for
text and ``bin`` for bytes, shortest length headers; a decoder that cares about canonical form
re-encodes what it decoded and compares bytes (:func:`unpack_canonical`).
"""

from __future__ import annotations

from typing import Any, cast

import msgpack

from . import limits
from .errors import FieldError, MalformedError, NonCanonicalError, TooLargeError, VersionError

__all__ = [
    "pack",
    "unpack",
    "unpack_canonical",
    "unpack_message",
    "unpack_bin_list",
    "reject_malformed",
    "expect_list",
    "expect_int",
    "expect_bytes",
    "expect_str",
]


#: The most items any array or map of the protocol may hold (the largest count limit).  The
#: decoder refuses a longer container from its header, before it builds a single item, so a
#: body that announces millions of items costs nothing.
MAX_CONTAINER_ITEMS = max(limits.MAX_RECONCILE_RANGES, limits.MAX_IDLIST_IDS, limits.MAX_IDS_PER_REQUEST,
                          limits.MAX_POSTS_PER_BATCH, limits.MAX_BUNDLE_BOARDS)


def _no_ext(code: int, data: bytes) -> Any:
    raise MalformedError(f"msgpack extension type {code} is not allowed")


def pack(value: Any) -> bytes:
    """Encode ``value`` canonically.  Raises TypeError for a value outside the data model."""
    # msgpack ships no type information; packb without a file object always returns bytes.
    return cast(bytes, msgpack.packb(value, use_bin_type=True))


def unpack(data: bytes, *, max_bytes: int, what: str = "message", typed: bool = False) -> Any:
    """Decode one msgpack value that must fill ``data`` exactly.

    With ``typed=True`` the caller promises to check the type of every value it uses (so that
    floats, timestamps and non-string map keys are refused there); the generic walk that
    refuses them is then skipped.

    Raises TooLargeError when ``data`` is longer than ``max_bytes`` or holds an array or map
    of more than MAX_CONTAINER_ITEMS items (refused from its header), and MalformedError for
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
            # Checked against each container's header before its items are built.
            max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
        )
    except MalformedError:
        raise
    except msgpack.ExtraData:
        raise MalformedError(f"{what}: trailing bytes after the msgpack value") from None
    except (ValueError, msgpack.UnpackException) as exc:
        # ValueError covers truncated input, bad UTF-8, too-deep nesting, non-string map keys
        # and the length caps.  Nothing else is expected from unpackb.
        if "exceeds max_" in str(exc):
            # A container longer than any the protocol allows, refused from its header.
            raise TooLargeError(f"{what}: a container has more than {MAX_CONTAINER_ITEMS} items") from None
        raise MalformedError(f"{what}: not well-formed msgpack ({type(exc).__name__})") from None
    if not typed and _outside_model(value, what):
        raise FieldError(f"{what}: floating-point numbers are not allowed")
    return value


def reject_malformed(value: Any, what: str) -> None:
    """Raise MalformedError if a decoded value holds an extension value (the timestamp type,
    which msgpack decodes by itself) or a map key that is not a string anywhere.

    A decoder that checks every field's type (``unpack(..., typed=True)``) calls this on its
    error path only, so that such input is reported as ``malformed`` (docs/protocol.md,
    "Encoding": a decoding error, which comes before every other check) rather than as a
    field of the wrong type.
    """
    _outside_model(value, what)


def _outside_model(value: Any, what: str) -> bool:
    """Raise MalformedError for an extension value or a non-string map key anywhere in
    ``value``; otherwise return whether a float occurs in it.  Malformed input is reported
    before floats, whatever their places, because decoding comes before the checks of values.
    """
    # Iterative walk: a hostile value may be deeply nested, and recursion would be a way in.
    stack = [value]
    floats = False
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            floats = True
        elif isinstance(item, msgpack.Timestamp):
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
    return floats


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


def unpack_message(data: bytes, *, max_bytes: int, version: int, what: str = "message") -> list[Any]:
    """Decode the canonical message ``[version, ...]``, checking the version first.

    The order is that of docs/protocol.md ("Encoding", "Order of checks"): the size, then
    well-formedness (extension values and non-string map keys included), then the version --
    so that a message of another version is reported as ``unsupported_version`` whatever else
    it holds, floats included -- then floats, then canonical form.  The caller checks the rest
    of the shape.

    Raises TooLargeError (over ``max_bytes``, or a container over MAX_CONTAINER_ITEMS),
    MalformedError, FieldError (not a non-empty array whose first item is an integer, or a
    float anywhere), VersionError (an integer other than ``version``) or NonCanonicalError.
    """
    value = unpack(data, max_bytes=max_bytes, what=what, typed=True)
    floats = _outside_model(value, what)
    if type(value) is not list or not value:
        raise FieldError(f"{what}: expected a non-empty array")
    if type(value[0]) is not int:
        raise FieldError(f"{what}: the version must be an integer")
    if value[0] != version:
        raise VersionError(f"{what}: message version {value[0]} is not supported")
    if floats:
        raise FieldError(f"{what}: floating-point numbers are not allowed")
    # Every value left is of the data model, so pack() cannot fail.
    if pack(value) != bytes(data):
        raise NonCanonicalError(f"{what}: bytes are not the canonical encoding")
    return value


# --- bounded, item-by-item decoding of ``[version, [bin, ...]]`` --------------------------


def _is_array_head(byte: int) -> bool:
    return 0x90 <= byte <= 0x9F or byte in (0xDC, 0xDD)


def _is_int_head(byte: int) -> bool:
    return byte <= 0x7F or byte >= 0xE0 or 0xCC <= byte <= 0xD3


def _is_ext_head(byte: int) -> bool:
    # fixext 1..16 (d4..d8) and ext 8/16/32 (c7..c9): never valid, a decoding error.
    return 0xD4 <= byte <= 0xD8 or 0xC7 <= byte <= 0xC9


def _array_head(n: int) -> int:
    """The first byte of the canonical header of an array of ``n`` items."""
    return 0x90 | n if n <= 15 else 0xDC if n <= 0xFFFF else 0xDD


def _bin_head(n: int) -> int:
    """The first byte of the canonical header of a binary string of ``n`` bytes."""
    return 0xC4 if n <= 0xFF else 0xC5 if n <= 0xFFFF else 0xC6


def _array_count(data: bytes, at: int, what: str) -> int:
    """The item count of the array header at ``data[at]``; MalformedError if it is cut off."""
    head = data[at]
    if head <= 0x9F:
        return head & 0x0F
    size = 2 if head == 0xDC else 4
    if at + 1 + size > len(data):
        raise MalformedError(f"{what}: truncated")
    return int.from_bytes(data[at + 1 : at + 1 + size], "big")


def unpack_bin_list(
    data: bytes,
    *,
    max_bytes: int,
    version: int,
    max_items: int,
    item_len: int | None = None,
    item_max_len: int | None = None,
    what: str = "message",
) -> list[bytes]:
    """Decode the canonical message ``[version, [bin, ...]]`` and return the binary strings.

    The message is read one header at a time, and each check is made as soon as its header is
    read: a body that announces millions of items, or holds anything but binary strings, is
    refused after a few bytes, without building the value first.  The result is the same as
    :func:`unpack_canonical` followed by the shape checks, with the same error classes.

    Raises TooLargeError (``data`` over ``max_bytes``, more than ``max_items`` items, an item
    over ``item_max_len``), MalformedError (not well-formed, truncated, trailing bytes),
    NonCanonicalError (a header not in its shortest form), VersionError (another version) and
    FieldError (any other shape).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedError(f"{what}: expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise TooLargeError(f"{what} is {len(data)} bytes, the limit is {max_bytes}")
    if not data or data[0] == 0xC1:
        raise MalformedError(f"{what}: not well-formed msgpack")
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, ext_hook=_no_ext, max_buffer_size=len(data),
        max_array_len=MAX_CONTAINER_ITEMS, max_map_len=MAX_CONTAINER_ITEMS,
        max_str_len=max_bytes, max_bin_len=max_bytes,
    )
    unpacker.feed(data)
    try:
        if not _is_array_head(data[0]):
            raise FieldError(f"{what}: expected a non-empty array")
        length = unpacker.read_array_header()
        if length == 0:
            raise FieldError(f"{what}: expected a non-empty array")
        at = unpacker.tell()
        if at >= len(data):
            raise MalformedError(f"{what}: truncated")
        if _is_ext_head(data[at]):
            raise MalformedError(f"{what}: msgpack extension types are not allowed")
        if not _is_int_head(data[at]):
            raise FieldError(f"{what}: the version must be an integer")
        got = unpacker.unpack()
        # The version is decided before the canonical form of the headers that led to it, as
        # unpack_message does: another version is unsupported_version whatever its bytes.
        if got != version:
            raise VersionError(f"{what}: message version {got} is not supported")
        if data[0] != _array_head(length) or pack(got) != data[at : unpacker.tell()]:
            raise NonCanonicalError(f"{what}: bytes are not the canonical encoding")
        if length != 2:
            raise FieldError(f"{what}: expected 2 items, got {length}")
        at = unpacker.tell()
        if at >= len(data):
            raise MalformedError(f"{what}: truncated")
        if not _is_array_head(data[at]):
            raise FieldError(f"{what} items: expected an array")
        # The count is read from the header by hand, so that a count past the limit is
        # reported as too_large rather than as the decoder's own cap.
        count = _array_count(data, at, what)
        if count > max_items:
            raise TooLargeError(f"{what}: {count} items, the limit is {max_items}")
        if unpacker.read_array_header() != count or data[at] != _array_head(count):
            raise NonCanonicalError(f"{what}: bytes are not the canonical encoding")
        items: list[bytes] = []
        for _ in range(count):
            at = unpacker.tell()
            if at >= len(data):
                raise MalformedError(f"{what}: truncated")
            if _is_ext_head(data[at]):
                raise MalformedError(f"{what}: msgpack extension types are not allowed")
            if data[at] not in (0xC4, 0xC5, 0xC6):
                raise FieldError(f"{what} item: expected binary")
            item = unpacker.unpack()
            if data[at] != _bin_head(len(item)):
                raise NonCanonicalError(f"{what}: bytes are not the canonical encoding")
            if item_len is not None and len(item) != item_len:
                raise FieldError(f"{what} item: expected {item_len} bytes, got {len(item)}")
            if item_max_len is not None and len(item) > item_max_len:
                raise TooLargeError(f"{what} item: {len(item)} bytes, the limit is {item_max_len}")
            items.append(item)
        if unpacker.tell() != len(data):
            raise MalformedError(f"{what}: trailing bytes after the msgpack value")
    except (ValueError, msgpack.UnpackException) as exc:
        # Truncated input (OutOfData), a header over the caps: the bytes are not a message.
        raise MalformedError(f"{what}: not well-formed msgpack ({type(exc).__name__})") from None
    return items


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
