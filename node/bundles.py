"""Sneakernet bundles on disk: export posts from a store to bundle files, import bundle files.

The byte format is ``dazibao.protocol.bundle`` (docs/bundles.md); this module is the shell
around it: files, the store, the clock, randomness for bundle ids, progress.

* **Export** reads the store inside one read transaction (so a node writing meanwhile cannot
  make the header disagree with the records), streams the posts in key order and writes each
  file through a temporary name and an atomic rename: memory stays bounded by a page of rows,
  and an interrupted export leaves no half-written bundle behind.
* **Import** checks every post exactly as one from a peer (``posts.check_post``: canonical
  form, rules, future window, signature) before anything is stored, in batches through the
  same ingest as gossip, so tombstones, retractions and the boards a node carries are honoured.
  Damage, missing parts and invalid posts are reported; every intact, valid post is stored;
  importing the same file again changes nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import os
import re
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dazibao.protocol import bundle, limits
from dazibao.protocol.errors import BundleError, LocalProtocolError

from .service import IngestReport, check_batch
from .store import (
    POLICY_CODES,
    REJECT_NOT_AUTHOR,
    REJECT_NOT_CARRIED,
    REJECT_RETRACTED,
    REJECT_TOMBSTONED,
    Store,
)

__all__ = [
    "BundleFileError",
    "ExportReport",
    "FileReport",
    "ImportReport",
    "Ingest",
    "export_bundle",
    "part_paths",
    "parse_since",
    "parse_size",
    "check_bundle_file",
    "import_bundles",
    "store_ingest",
]

#: Store refusals that are not a fault of the bundle: the post is valid, this node just does
#: not take it (docs/protocol.md, "POST /v1/posts"), its policy included (blocked, quotas, work).
REFUSALS = frozenset({REJECT_TOMBSTONED, REJECT_NOT_CARRIED, REJECT_RETRACTED, REJECT_NOT_AUTHOR,
                      "retract_wrong_board", *POLICY_CODES})

READ_CHUNK_BYTES = 1 << 16
_BATCH_BYTES = 4 << 20


class BundleFileError(Exception):
    """A bundle file cannot be used at all (unreadable, not a bundle, bad arguments); nothing was written."""


Progress = Callable[[int], None]  # called with a number of bytes (or posts) just done


# --- parsing command-line values ------------------------------------------------------------

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_since(text: str, now_ms: int) -> int:
    """A time given as an ISO date or date-time (UTC unless it names an offset), or as an age
    such as ``7d``, ``12h``, ``30m`` or ``2w`` before ``now_ms``; returns milliseconds since
    the epoch.  Raises ValueError with a message that says what is accepted."""
    value = text.strip()
    match = re.fullmatch(r"(\d+)\s*([smhdw])", value)
    if match:
        return max(now_ms - int(match.group(1)) * _UNIT_MS[match.group(2)], 0)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use a date (2024-05-01), a date and time (2024-05-01T12:00Z) "
            "or an age (7d, 12h, 30m, 2w)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    ms = int(when.timestamp() * 1000)
    if ms < 0:
        raise ValueError(f"{text!r} is before 1970")
    return ms


_SIZE = re.compile(r"(\d+)\s*([kmg]?)(i?b)?", re.I)


def parse_size(text: str) -> int:
    """``20000``, ``512K``, ``10M``, ``1G`` (K, M, G are 1024, 1024², 1024³ bytes).  Raises ValueError."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size: use a number of bytes, or one with K, M or G (e.g. 10M)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * scale


# --- export ---------------------------------------------------------------------------------


@dataclass
class ExportReport:
    files: list[Path]
    posts: int
    bytes: int
    # builtins.bytes: in the class body, ``bytes`` names the field above.
    bundle_id: builtins.bytes
    boards: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"files": [str(f) for f in self.files], "posts": self.posts, "bytes": self.bytes,
                "bundle_id": self.bundle_id.hex(), "boards": list(self.boards)}


def part_paths(output: Path, parts: int) -> list[Path]:
    """Where the parts of a split bundle go: ``labor.dzb`` -> ``labor.part01-of-12.dzb``, ..."""
    width = len(str(parts))
    suffix = output.suffix or ".dzb"
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return [output.with_name(f"{stem}.part{i:0{width}d}-of-{parts}{suffix}") for i in range(1, parts + 1)]


def export_bundle(store: Store, output: Path, *, boards: Sequence[str] | None = None, since_ms: int | None = None,
                  split_bytes: int | None = None, now_ms: int, bundle_id: bytes | None = None,
                  progress: Progress | None = None, mode: int = 0o600) -> ExportReport:
    """Write the posts of ``boards`` (all boards when None), created at or after ``since_ms``,
    to the bundle file ``output``, or to numbered parts of at most ``split_bytes`` bytes each
    (see :func:`part_paths`).  ``progress`` is called with the number of posts written.

    Every file is written under a temporary name and renamed into place once complete, so an
    existing file is replaced whole or not at all.  Raises BundleFileError for arguments that
    cannot work (a part size too small, too many parts, a bad board) or a file that cannot be
    written; StoreError for the database.
    """
    header_boards = tuple(sorted(set(boards), key=lambda b: b.encode("utf-8"))) if boards else ()
    if len(header_boards) > limits.MAX_BUNDLE_BOARDS:
        raise BundleFileError(f"a bundle can name at most {limits.MAX_BUNDLE_BOARDS} boards")
    bundle_id = bundle_id or os.urandom(bundle.BUNDLE_ID_BYTES)
    scope = list(header_boards) or None
    try:
        with store.snapshot():
            counts = bundle.plan_parts(store.iter_sizes(scope, since_ms=since_ms), split_bytes, header_boards)
            paths = part_paths(output, len(counts)) if split_bytes is not None else [output]
            total = sum(counts)
            written = _write_parts(store, paths, counts, scope, since_ms, header_boards, now_ms, bundle_id,
                                   progress, mode)
    except LocalProtocolError as exc:
        raise BundleFileError(str(exc)) from None
    return ExportReport(paths, total, written, bundle_id, header_boards)


def _write_parts(store: Store, paths: list[Path], counts: list[int], scope: list[str] | None,
                 since_ms: int | None, boards: tuple[str, ...], now_ms: int, bundle_id: bytes,
                 progress: Progress | None, mode: int) -> int:
    rows = store.iter_rows(scope, since_ms=since_ms)
    temps: list[tuple[str, Path]] = []
    written = 0
    try:
        # One path per part: part_paths(output, len(counts)), or [output] for the one part.
        for number, (path, count) in enumerate(zip(paths, counts, strict=True), start=1):
            tmp = _temp_beside(path, mode)
            temps.append((tmp, path))
            encoder = bundle.BundleEncoder(bundle_id=bundle_id, created_at_ms=now_ms, boards=boards,
                                           post_count=count, part=number, parts=len(counts))
            with open(tmp, "wb") as fh:
                fh.write(encoder.start())
                for _ in range(count):
                    fh.write(encoder.add(next(rows).raw))
                    if progress is not None:
                        progress(1)
                fh.write(encoder.finish())
                fh.flush()
                os.fsync(fh.fileno())
            written += encoder.bytes_written
        for tmp, path in temps:
            os.replace(tmp, path)
        temps.clear()
    except OSError as exc:
        raise BundleFileError(f"cannot write {exc.filename or paths[0]}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return written


def _temp_beside(path: Path, mode: int) -> str:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise BundleFileError(f"cannot write in {path.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    os.chmod(tmp, mode)
    return tmp


# --- import ---------------------------------------------------------------------------------

#: Stores checked posts: takes raw posts, returns what was accepted, duplicated and refused.
Ingest = Callable[[list[bytes]], Awaitable[IngestReport]]


def store_ingest(store: Store, *, now: Callable[[], float], boards: Sequence[str] | None = None) -> Ingest:
    """An :data:`Ingest` that checks posts (``check_batch``, as gossip does) and stores them in
    ``store`` directly, for callers without a :class:`~dazibao.node.service.NodeCore`."""

    async def ingest(raws: list[bytes]) -> IngestReport:
        good, bad = check_batch(raws, now())
        if not good:
            return IngestReport([], 0, bad)
        result = store.ingest(good, source="import", now_ms=int(now() * 1000), boards=boards or None)
        return IngestReport(list(result.added), result.duplicates, bad + list(result.rejected))

    return ingest


@dataclass
class FileReport:
    """What was read from one file."""

    path: Path
    bundle_id: bytes | None = None
    part: int | None = None
    parts: int | None = None
    boards: tuple[str, ...] = ()
    records: int = 0
    expected: int | None = None
    complete: bool = False
    #: The first ``max_import_problems`` damage reports; ``damaged_more`` counts the others.
    damaged: list[bundle.Damaged] = field(default_factory=list)
    damaged_more: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path), "bundle_id": self.bundle_id.hex() if self.bundle_id else None,
            "part": self.part, "parts": self.parts, "boards": list(self.boards), "records": self.records,
            "expected": self.expected, "complete": self.complete,
            "damaged": [{"offset": d.offset, "code": d.code, "reason": d.reason} for d in self.damaged],
            "damaged_more": self.damaged_more,
        }


@dataclass
class ImportReport:
    """What an import did.  ``problems`` is empty when every file was whole and every post valid."""

    files: list[FileReport] = field(default_factory=list)
    added: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # code -> count: valid posts this node does not take
    #: Valid new posts dropped at once because they are older than this node's retention for
    #: their board (config retention_days): neither added nor refused.
    expired: int = 0
    #: (file, id, code) of the first ``max_import_problems`` invalid posts; ``invalid_more``
    #: counts the others, so that a crafted file cannot make the report itself fill memory.
    invalid: list[tuple[str, bytes | None, str]] = field(default_factory=list)
    invalid_more: int = 0
    missing_parts: dict[bytes, list[int]] = field(default_factory=dict)
    part_problems: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> int:
        return sum(len(f.damaged) + f.damaged_more for f in self.files)

    @property
    def invalid_count(self) -> int:
        """How many posts were refused as invalid (named in ``invalid`` or counted in ``invalid_more``)."""
        return len(self.invalid) + self.invalid_more

    def problems(self) -> list[str]:
        """One line per thing that went wrong, for people."""
        lines = []
        for f in self.files:
            for d in f.damaged:
                lines.append(f"{f.path}: {d}")
            if f.damaged_more:
                lines.append(f"{f.path}: {f.damaged_more} more damaged places not listed")
            if f.expected is not None and f.records < f.expected:
                lines.append(f"{f.path}: {f.expected - f.records} of {f.expected} posts could not be read")
        for name, pid, code in self.invalid:
            lines.append(f"{name}: post {pid.hex()[:16] if pid else '(unreadable)'} refused: {code}")
        if self.invalid_more:
            lines.append(f"{self.invalid_more} more invalid posts refused, not listed")
        lines.extend(self.part_problems)
        return lines

    @property
    def ok(self) -> bool:
        return not self.problems()

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "added": self.added,
            "duplicates": self.duplicates,
            "refused": dict(sorted(self.refused.items())),
            "expired": self.expired,
            "invalid": [{"file": name, "id": pid.hex() if pid else None, "code": code}
                        for name, pid, code in self.invalid],
            "invalid_more": self.invalid_more,
            "missing_parts": [{"bundle_id": bid.hex(), "parts": parts}
                              for bid, parts in sorted(self.missing_parts.items())],
            "files": [f.as_dict() for f in self.files],
            "problems": self.problems(),
        }


def _bundle_events(path: Path, progress: Progress | None = None) -> Generator[object, None, None]:
    """The decoder events of one bundle file, read in chunks; ``progress`` gets the bytes read.

    Raises BundleFileError naming the file when it cannot be read or is not a bundle.
    """
    decoder = bundle.BundleDecoder()
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(READ_CHUNK_BYTES)
                decoder.receive_data(chunk)
                yield from decoder.events()
                if not chunk:
                    return
                if progress is not None:
                    progress(len(chunk))
    except IsADirectoryError:
        raise BundleFileError(f"{path}: is a folder, not a bundle file") from None
    except OSError as exc:
        raise BundleFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except BundleError as exc:
        raise BundleFileError(f"{path}: {exc.message} [{exc.code}]") from None


def check_bundle_file(path: Path) -> None:
    """Make sure ``path`` can be read and is a bundle (its first frame), before anything is imported.

    Raises BundleFileError naming the file and what is wrong with it.
    """
    with contextlib.closing(_bundle_events(path)) as events:
        for event in events:
            if not isinstance(event, bundle.Damaged):
                return


async def import_bundles(paths: Sequence[Path], ingest: Ingest, *, progress: Progress | None = None,
                         batch_posts: int = limits.MAX_POSTS_PER_BATCH) -> ImportReport:
    """Read every bundle file in ``paths`` (parts of split bundles in any order) and store the
    valid posts through ``ingest``.  ``progress`` is called with the number of bytes read.

    Every file is first checked to be a readable bundle (:func:`check_bundle_file`); if one is
    not, BundleFileError is raised and nothing is stored.  After that, damage is reported in
    the returned ImportReport, never raised: each intact, valid post is stored.
    """
    for path in paths:
        check_bundle_file(path)
    report = ImportReport()
    tracker = bundle.PartTracker()
    for path in paths:
        file_report = FileReport(path)
        report.files.append(file_report)
        pending: list[bytes] = []
        pending_bytes = 0

        async def flush(path: Path = path) -> None:
            nonlocal pending, pending_bytes
            if pending:
                result = await ingest(pending)
                _count(report, str(path), result, len(pending))
                pending, pending_bytes = [], 0

        # A BundleFileError here means the file changed since check_bundle_file.
        with contextlib.closing(_bundle_events(path, progress)) as events:
            for event in events:
                if isinstance(event, bundle.PostRecord):
                    pending.append(event.raw)
                    pending_bytes += len(event.raw)
                    if len(pending) >= batch_posts or pending_bytes >= _BATCH_BYTES:
                        await flush()
                else:
                    _note(file_report, tracker, event)
        await flush()
    report.missing_parts = tracker.missing()
    report.part_problems = [exc.message for exc in tracker.problems()]
    return report


def _note(file_report: FileReport, tracker: bundle.PartTracker, event: object) -> None:
    if isinstance(event, bundle.Damaged):
        if len(file_report.damaged) < limits.MAX_IMPORT_PROBLEMS:
            file_report.damaged.append(event)
        else:
            file_report.damaged_more += 1
    elif isinstance(event, bundle.Header):
        file_report.bundle_id, file_report.part, file_report.parts = event.bundle_id, event.part, event.parts
        file_report.boards = event.boards
        tracker.add(event.bundle_id, event.part, event.parts)
    elif isinstance(event, bundle.Trailer):
        if file_report.bundle_id is None:  # the header was lost: the trailer says the same
            file_report.bundle_id, file_report.part, file_report.parts = event.bundle_id, event.part, event.parts
        tracker.add(event.bundle_id, event.part, event.parts)
    elif isinstance(event, bundle.End):
        file_report.records, file_report.expected, file_report.complete = event.records, event.expected, event.complete


def _count(report: ImportReport, name: str, result: IngestReport, sent: int) -> None:
    report.added += len(result.accepted)
    report.duplicates += result.duplicates
    # Every post sent is accepted, a duplicate or rejected, except those the node's retention
    # purged at once (node/service.py, ingest_checked): they are what is left.
    report.expired += max(0, sent - len(result.accepted) - result.duplicates - len(result.rejected))
    for pid, code in result.rejected:
        if code in REFUSALS:
            report.refused[code] += 1
        elif len(report.invalid) < limits.MAX_IMPORT_PROBLEMS:
            report.invalid.append((name, pid, code))
        else:
            report.invalid_more += 1
