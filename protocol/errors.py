"""The exception tree of the dazibao protocol.

Two families, as in h11:

* :class:`LocalProtocolError` -- *we* misused the API (a bug in the caller).
* :class:`RemoteProtocolError` -- the bytes we were handed (by a peer, a file or a form) are
  not acceptable.  Every such error carries a stable short ``code`` that is part of the
  protocol (docs/protocol.md, "Error codes") and a human-readable message.

Any other exception escaping ``dazibao.protocol`` is a bug.
"""

from __future__ import annotations

__all__ = [
    "DazibaoError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "DecodeError",
    "MalformedError",
    "NonCanonicalError",
    "FieldError",
    "VersionError",
    "TooLargeError",
    "ValidationError",
    "UnknownKindError",
    "BoardError",
    "BodyError",
    "SignatureError",
    "FutureError",
    "WorkError",
    "RetractionError",
    "RetractionBoardError",
    "ReconcileError",
    "KeyFileError",
    "KeyFileFormatError",
    "KeyFileTruncatedError",
    "KeyFileCorruptError",
    "KeyFileParamsError",
    "WrongPassphraseError",
    "BundleError",
    "BundleFormatError",
    "BundleTruncatedError",
    "BundleDamagedError",
    "BundleMismatchError",
    "BundlePartsError",
    "ERROR_CODES",
    "BLOCKED",
    "QUOTA_POSTS",
    "QUOTA_BYTES",
    "POW_REQUIRED",
    "POLICY_CODES",
]


class DazibaoError(Exception):
    """Base of every exception the protocol raises on purpose."""


class LocalProtocolError(DazibaoError):
    """The caller used the protocol API wrongly (for example signed with a bad argument)."""


class RemoteProtocolError(DazibaoError):
    """Input from outside (peer, file, form) was rejected.

    ``code`` is stable and documented; ``str(err)`` is a short explanation meant for logs and
    for the one-line error a user sees.
    """

    code: str = "invalid"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# --- decoding: the bytes do not have the required shape ----------------------------------


class DecodeError(RemoteProtocolError):
    """The bytes could not be decoded into a protocol value."""

    code = "malformed"


class MalformedError(DecodeError):
    """Not well-formed msgpack, truncated, with trailing bytes, or of the wrong shape."""

    code = "malformed"


class NonCanonicalError(DecodeError):
    """Well-formed, but not the canonical encoding of the value it decodes to."""

    code = "non_canonical"


class FieldError(DecodeError):
    """A field has the wrong type, length or value."""

    code = "bad_field"


class VersionError(DecodeError):
    """The format version is not one this implementation supports."""

    code = "unsupported_version"


class TooLargeError(DecodeError):
    """The input exceeds a size or count limit."""

    code = "too_large"


# --- validation: well-formed, but breaking a rule of the protocol -------------------------


class ValidationError(RemoteProtocolError):
    """A decoded value breaks a rule of the protocol."""

    code = "invalid"


class UnknownKindError(ValidationError):
    """The post kind is not one this implementation knows."""

    code = "unknown_kind"


class BoardError(ValidationError):
    """The board name breaks the board-name rule."""

    code = "bad_board"


class BodyError(ValidationError):
    """The body (text, display name) breaks the rule for its kind."""

    code = "bad_body"


class SignatureError(ValidationError):
    """The signature does not verify for this author and post id."""

    code = "bad_signature"


class FutureError(ValidationError):
    """The post is dated too far in the future."""

    code = "future"


class WorkError(ValidationError):
    """The post id has fewer leading zero bits than the work target the post commits to."""

    code = "bad_work"


class RetractionError(ValidationError):
    """A retraction names a post by another author."""

    code = "retract_not_author"


class ReconcileError(ValidationError):
    """A reconciliation reply is not an answer to what was asked."""

    code = "bad_reconcile"


class RetractionBoardError(RetractionError):
    """A retraction is not on the board of the post it names."""

    code = "retract_wrong_board"


# --- encrypted key files --------------------------------------------------------------------


class KeyFileError(RemoteProtocolError):
    """The key file could not be opened."""

    code = "keyfile"


class KeyFileFormatError(KeyFileError):
    """Not a dazibao key file, or a format version this implementation does not know."""

    code = "keyfile_format"


class KeyFileTruncatedError(KeyFileError):
    """The key file is shorter than its header says: it was cut off."""

    code = "keyfile_truncated"


class KeyFileCorruptError(KeyFileError):
    """The key file's checksum does not match: it was damaged or tampered with."""

    code = "keyfile_corrupt"


class KeyFileParamsError(KeyFileError):
    """The key file asks for key-derivation parameters outside the allowed bounds."""

    code = "keyfile_params"


class WrongPassphraseError(KeyFileError):
    """The passphrase does not open this key file."""

    code = "wrong_passphrase"


# --- bundles (docs/bundles.md) ---------------------------------------------------------------


class BundleError(RemoteProtocolError):
    """The bundle file could not be read in full."""

    code = "bundle"


class BundleFormatError(BundleError):
    """Not a dazibao bundle, or a bundle format version this implementation does not know."""

    code = "bundle_format"


class BundleTruncatedError(BundleError):
    """The bundle ends before its trailer: it was cut off."""

    code = "bundle_truncated"


class BundleDamagedError(BundleError):
    """Part of the bundle is damaged: a frame's marker, length or checksum is wrong."""

    code = "bundle_damaged"


class BundleMismatchError(BundleError):
    """The bundle's trailer does not match its contents or its header: it was altered."""

    code = "bundle_mismatch"


class BundlePartsError(BundleError):
    """Parts of a split bundle are missing, or disagree about how many parts there are."""

    code = "bundle_parts"


def _codes() -> dict[str, str]:
    table: dict[str, str] = {}
    stack: list[type[RemoteProtocolError]] = [RemoteProtocolError]
    while stack:
        cls = stack.pop()
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        table.setdefault(cls.code, doc)
        stack.extend(cls.__subclasses__())
    return dict(sorted(table.items()))


#: Every stable error code with its one-line meaning (docs/protocol.md lists the same set).
ERROR_CODES: dict[str, str] = _codes()


# --- policy refusals (docs/protocol.md, "POST /v1/posts") ----------------------------------------
#
# A node answers these for a post that is valid but that its own policy does not take: they are
# not exceptions of the protocol, and they do not mean that the sender misbehaved (a node does not
# back off from a peer for them, exactly as for ``not_carried``).  protocol/trust.py returns them.

#: A moderator this node follows on the post's board blocks the post or its author there.
BLOCKED = "blocked"
#: The post's author is a stranger on the board and already added its posts allowance for the day.
QUOTA_POSTS = "quota_posts"
#: The post's author is a stranger on the board and already added its bytes allowance for the day.
QUOTA_BYTES = "quota_bytes"
#: The board asks strangers for proof of work and the post commits to none, or to a lower target.
POW_REQUIRED = "pow_required"

#: Every policy refusal code with its one-line meaning (docs/protocol.md lists the same set).
POLICY_CODES: dict[str, str] = {
    BLOCKED: "A moderator this node follows on the board blocks this post or its author there.",
    POW_REQUIRED: "The board requires proof of work from strangers, and the post commits to no or a lower target.",
    QUOTA_BYTES: "The author, a stranger on the board, is over its daily byte quota there.",
    QUOTA_POSTS: "The author, a stranger on the board, is over its daily post quota there.",
}
