"""Bundle bombs: crafted files whose reading would cost far more than their size.

After damage the reader looks for the next intact frame at every marker, and checking a frame
costs the length it claims.  A file of frame heads that each claim the largest length and fail
their checksum, one every 9 bytes, made the old reader checksum up to 256 KiB for every 9 bytes
of file: 2 MB took tens of seconds, 100 MB about an hour.  The reader's work must be linear in
the file size (limit ``bundle_resync_overlap``), and a real `dazibao import` of such a file
must end quickly with its damage named.
"""

from __future__ import annotations

import json
import time

from dazibao.node.config import DataDir
from dazibao.protocol import bundle, limits

from ..node.procs import dazibao
from .helpers import store_with

MIB = 1 << 20
CHUNK = 1 << 16  # as node/bundles.py reads files


def _head(kind: bytes, length: int) -> bytes:
    return bundle.FRAME_MARKER + kind + length.to_bytes(4, "big")


def _tiny_record() -> bytes:
    """An intact record frame of one byte (not a post: the reader does not check posts)."""
    head = b"P" + (1).to_bytes(4, "big") + b"x"
    return bundle.FRAME_MARKER + head + bundle.crc32(head).to_bytes(4, "big")


def make_bomb(size: int, style: str = "header") -> bytes:
    """A valid preamble and header frame, then ``size`` bytes of crafted frame heads.

    ``header``: heads claiming the largest header payload (256 KiB), one every 9 bytes, all
    failing their checksum (the old reader's worst case while resynchronizing);
    ``record``: the same with the largest record payload;
    ``step``: an intact tiny record and a failing 256 KiB header claim, over and over, so that
    the reader keeps falling back in step before each failure.
    """
    start = bundle.BundleEncoder(bundle_id=bytes(16), created_at_ms=0, post_count=0).start()
    if style == "header":
        unit = _head(b"H", limits.MAX_BUNDLE_HEADER_BYTES)
    elif style == "record":
        unit = _head(b"P", limits.MAX_POST_BYTES)
    else:
        unit = _tiny_record() + _head(b"H", limits.MAX_BUNDLE_HEADER_BYTES)
    return start + unit * (size // len(unit))


def read_time(data: bytes, budget_s: float) -> float:
    """Seconds to read ``data`` through the streaming decoder in 64 KiB chunks, as an import does.

    Gives up (and fails) once ``budget_s`` is spent, so that a slow reader fails fast.
    """
    started = time.perf_counter()
    decoder = bundle.BundleDecoder()
    events = 0
    for i in range(0, len(data) + 1, CHUNK):
        decoder.receive_data(data[i : i + CHUNK] or b"")
        for event in decoder.events():
            events += 1
            if isinstance(event, bundle.End):
                return time.perf_counter() - started
        elapsed = time.perf_counter() - started
        assert elapsed < budget_s, f"reading {len(data) // MIB} MiB took over {budget_s} s (at byte {i})"
    decoder.receive_data(b"")
    assert any(isinstance(e, bundle.End) for e in decoder.events())
    return time.perf_counter() - started


def test_bomb_reading_time_grows_linearly():
    # The old reader took about 9 s for 1 MiB and 29 s for 2 MiB of the "header" style here,
    # and t(8 MiB) / t(1 MiB) was about 16; a linear reader reads each in well under a second.
    for style in ("header", "record", "step"):
        times = {}
        for mib in (1, 2, 4, 8):
            data = make_bomb(mib * MIB, style)
            # Best of two, so that a noisy neighbour does not decide the ratio.
            times[mib] = min(read_time(data, budget_s=4.0 * mib), read_time(data, budget_s=4.0 * mib))
        floor = 0.05  # below this, timer and scheduler noise dominate
        ratio = max(times[8], floor) / max(times[1], floor)
        assert ratio < 12, (style, times)


def test_bomb_damage_is_reported_and_nothing_is_delivered():
    events = bundle.decode_bundle(make_bomb(1 * MIB, "header"))
    damaged = [e for e in events if isinstance(e, bundle.Damaged)]
    assert damaged and damaged[0].code == "bundle_damaged"
    assert not [e for e in events if isinstance(e, bundle.PostRecord)]
    assert not events[-1].complete


def test_intact_frames_after_a_bomb_are_still_read(tmp_path):
    # The bound only stops checking where failed frames overlap; past their claimed ends an
    # intact record is found again.
    from .helpers import make_posts

    items = make_posts("labor", 3)
    good = bundle.encode_bundle([p.raw for p in items], bundle_id=bytes(16), created_at_ms=0)
    preamble_and_header = bundle.BundleEncoder(bundle_id=bytes(16), created_at_ms=0, post_count=3).start()
    junk = _head(b"P", limits.MAX_POST_BYTES) * 4000
    data = preamble_and_header + junk + good[len(preamble_and_header):]
    events = bundle.decode_bundle(data)
    assert {e.raw for e in events if isinstance(e, bundle.PostRecord)} == {p.raw for p in items}


def test_import_of_a_bomb_is_quick_and_names_the_damage(tmp_path):
    data = DataDir(tmp_path / "node")
    data.create()
    store_with(data.database, []).close()
    bomb = tmp_path / "bomb.dzb"
    bomb.write_bytes(make_bomb(2 * MIB, "header"))
    started = time.monotonic()
    proc = dazibao(data.root, "import", "--json", str(bomb), check=False, timeout=120)
    elapsed = time.monotonic() - started
    # The old reader needed about 29 s for this file (plus the process start).
    assert elapsed < 12, elapsed
    assert proc.returncode == 1, proc.stderr
    assert "import incomplete: damage in 1 file" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["added"] == 0
    assert report["files"][0]["damaged"][0]["code"] == "bundle_damaged"


def test_import_report_of_a_file_full_of_damage_stays_bounded(tmp_path):
    # One damaged frame every 27 bytes: 40,000 damage reports; the report keeps the first
    # max_import_problems by name and counts the rest.
    data = DataDir(tmp_path / "node")
    data.create()
    store_with(data.database, []).close()
    start = bundle.BundleEncoder(bundle_id=bytes(16), created_at_ms=0, post_count=0).start()
    bad = _head(b"T", 1) + b"x" + b"\0\0\0\0"  # a trailer frame whose checksum fails
    path = tmp_path / "damaged.dzb"
    path.write_bytes(start + (bad + _tiny_record()) * 40_000)
    proc = dazibao(data.root, "import", "--json", str(path), check=False, timeout=120)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    listed = report["files"][0]["damaged"]
    assert len(listed) == limits.MAX_IMPORT_PROBLEMS
    assert report["files"][0]["damaged_more"] >= 39_000 - limits.MAX_IMPORT_PROBLEMS
    assert len(report["invalid"]) == limits.MAX_IMPORT_PROBLEMS
    assert report["invalid_more"] > 30_000
