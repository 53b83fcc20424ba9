"""Bundle files between real SQLite stores: export, import, damage, split parts, retention.

In-process (no `dazibao` processes, see test_mirror_cli.py for those), but on real files.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.node.bundles import (
    BundleFileError,
    export_bundle,
    import_bundles,
    parse_since,
    parse_size,
    part_paths,
    store_ingest,
)
from dazibao.node.config import ConfigError, DataDir, load_config
from dazibao.node.retention import apply_retention
from dazibao.node.store import Store
from dazibao.protocol import bundle, limits, posts, wire

from .helpers import DAY_MS, ids_by_board, key, make_posts, now_ms, reply, retraction, store_with


@pytest.fixture
def source(tmp_path):
    items = make_posts("labor", 30) + make_posts("劳动法", 20, author=1) + make_posts("chat", 10, author=2)
    items.append(reply(items[0], "我同意\n\nsecond paragraph"))
    store = store_with(tmp_path / "source.db", items)
    yield store, items
    store.close()


def ingest_into(store: Store, boards=None):
    return store_ingest(store, now=time.time, boards=boards)


def assert_only_valid(store: Store, allowed: set[bytes]) -> None:
    """Everything stored is one of ``allowed`` and passes the full check."""
    for row in store.iter_rows():
        assert row.raw in allowed
        posts.check_post(row.raw, time.time())


async def test_export_then_import_gives_identical_ids_per_board(source, tmp_path):
    store, items = source
    out = tmp_path / "all.dzb"
    report = export_bundle(store, out, now_ms=now_ms())
    assert report.files == [out] and report.posts == len(items) and report.bytes == out.stat().st_size
    assert (out.stat().st_mode & 0o777) == 0o600
    with Store(tmp_path / "empty.db") as target:
        result = await import_bundles([out], ingest_into(target))
        assert result.ok and result.added == len(items) and result.duplicates == 0
        assert ids_by_board(target) == ids_by_board(store)
        assert result.files[0].complete and result.files[0].bundle_id == report.bundle_id
        # Importing twice changes nothing.
        again = await import_bundles([out], ingest_into(target))
        assert again.ok and again.added == 0 and again.duplicates == len(items)
        assert ids_by_board(target) == ids_by_board(store)


async def test_export_chosen_boards_since(source, tmp_path):
    store, items = source
    labor = [p for p in items if p.board == "labor"]
    cutoff = labor[10].created_at_ms
    out = tmp_path / "labor.dzb"
    report = export_bundle(store, out, boards=["labor"], since_ms=cutoff, now_ms=now_ms())
    events = bundle.decode_bundle(out.read_bytes())
    assert events[0].boards == ("labor",)
    got = [e.raw for e in events if isinstance(e, bundle.PostRecord)]
    expected = sorted((p for p in labor if p.created_at_ms >= cutoff), key=lambda p: p.key)
    assert got == [p.raw for p in expected] and report.posts == len(expected)


async def test_split_parts_in_any_order_and_missing_parts(source, tmp_path):
    store, items = source
    split = bundle.min_split_bytes([]) + 1000
    # Make the posts big enough that the bundle needs several parts.
    big = [posts.create_post(key(i % 3), kind="post", board="big", body="长" * 5000, created_at_ms=now_ms() - 10_000 + i)
           for i in range(9)]
    store.ingest(big, source="local", now_ms=now_ms())
    out = tmp_path / "big.dzb"
    report = export_bundle(store, out, boards=["big"], split_bytes=split, now_ms=now_ms())
    assert len(report.files) >= 3 and report.files == part_paths(out, len(report.files))
    assert not out.exists()
    assert all(f.stat().st_size <= split for f in report.files)
    parts = list(reversed(report.files))
    missing = parts.pop(1)  # the second-to-last part goes missing
    missing_number = len(report.files) - 1
    with Store(tmp_path / "t.db") as target:
        result = await import_bundles(parts, ingest_into(target))
        assert not result.ok
        assert result.missing_parts == {report.bundle_id: [missing_number]}
        assert any(f"missing part {missing_number} of {len(report.files)}" in line for line in result.problems())
        in_missing = {e.raw for e in bundle.decode_bundle(missing.read_bytes()) if isinstance(e, bundle.PostRecord)}
        assert {bytes.fromhex(i) for i in ids_by_board(target)["big"]} == {p.id for p in big if p.raw not in in_missing}
        # The missing part arrives later: the set is complete, nothing is duplicated.
        late = await import_bundles([missing, *parts], ingest_into(target))
        assert late.ok and late.added == len(in_missing)
        assert sorted(ids_by_board(target)["big"]) == sorted(p.id.hex() for p in big)


async def test_flipped_byte_in_one_post(source, tmp_path):
    store, items = source
    out = tmp_path / "x.dzb"
    export_bundle(store, out, boards=["labor"], now_ms=now_ms())
    data = bytearray(out.read_bytes())
    records = [e for e in bundle.decode_bundle(bytes(data)) if isinstance(e, bundle.PostRecord)]
    victim = records[7]
    data[victim.offset + bundle.FRAME_OVERHEAD + 60] ^= 0x04  # inside the post, not its framing
    out.write_bytes(bytes(data))
    labor = {p.raw for p in items if p.board == "labor"}
    with Store(tmp_path / "t.db") as target:
        result = await import_bundles([out], ingest_into(target))
        assert not result.ok
        problems = "\n".join(result.problems())
        assert f"at byte {victim.offset}: bundle_damaged" in problems
        assert result.added == len(labor) - 1
        assert_only_valid(target, labor - {victim.raw})
        assert result.invalid in ([], [(str(out), result.invalid[0][1], "bad_signature")])


async def test_truncated_file(source, tmp_path):
    store, items = source
    out = tmp_path / "x.dzb"
    report = export_bundle(store, out, boards=["chat"], now_ms=now_ms())
    data = out.read_bytes()
    out.write_bytes(data[: len(data) * 2 // 3])
    with Store(tmp_path / "t.db") as target:
        result = await import_bundles([out], ingest_into(target))
        assert not result.ok and 0 < result.added < report.posts
        assert any("bundle_truncated" in line for line in result.problems())
        assert any(f"of {report.posts} posts could not be read" in line for line in result.problems())
        assert_only_valid(target, {p.raw for p in items})


async def test_not_a_bundle_stops_everything_before_anything_is_stored(source, tmp_path):
    store, _ = source
    good = tmp_path / "good.dzb"
    export_bundle(store, good, now_ms=now_ms())
    for bad_bytes in (b"", b"PK\x03\x04 a zip file, not a bundle" + bytes(100), bundle.MAGIC + b"\x07" + bytes(100)):
        bad = tmp_path / "bad.dzb"
        bad.write_bytes(bad_bytes)
        with Store(tmp_path / "t.db") as target:
            with pytest.raises(BundleFileError, match="bad.dzb"):
                await import_bundles([good, bad], ingest_into(target))
            assert target.count() == 0
    with Store(tmp_path / "t.db") as target:
        with pytest.raises(BundleFileError, match="cannot read"):
            await import_bundles([good, tmp_path / "nowhere.dzb"], ingest_into(target))
        assert target.count() == 0


async def test_forged_post_is_refused_and_named(source, tmp_path):
    store, items = source
    out = tmp_path / "x.dzb"
    export_bundle(store, out, boards=["labor"], now_ms=now_ms())
    data = out.read_bytes()
    genuine = next(p for p in items if p.board == "labor")
    unsigned = wire.unpack(genuine.raw, max_bytes=limits.MAX_POST_BYTES)[0]
    unsigned[6] = "the organizers cancelled the strike (forged)"
    forged = wire.pack([unsigned, genuine.signature])
    forged_id = posts.decode_post(forged).id
    first = next(e for e in bundle.decode_bundle(data) if isinstance(e, bundle.PostRecord))
    out.write_bytes(data[: first.offset] + bundle._frame(bundle.FRAME_POST, forged) + data[first.offset:])
    with Store(tmp_path / "t.db") as target:
        result = await import_bundles([out], ingest_into(target))
        assert (str(out), forged_id, "bad_signature") in result.invalid
        assert any("bundle_mismatch" in line for line in result.problems())
        assert target.get(forged_id) is None
        assert_only_valid(target, {p.raw for p in items})
        assert result.added == sum(1 for p in items if p.board == "labor")


async def test_carried_boards_and_tombstones_are_respected(source, tmp_path):
    store, items = source
    out = tmp_path / "x.dzb"
    export_bundle(store, out, now_ms=now_ms())
    with Store(tmp_path / "t.db") as target:
        target.ingest([items[0]], source="local", now_ms=now_ms())
        target.delete([items[0].id], now_ms=now_ms())  # deleted here before: never comes back
        result = await import_bundles([out], ingest_into(target, boards=["labor"]))
        assert result.ok  # valid posts this node does not take are not problems
        assert result.refused["not_carried"] == sum(1 for p in items if p.board != "labor")
        assert result.refused["tombstoned"] == 1
        assert set(ids_by_board(target)) == {"labor"}
        assert items[0].id.hex() not in ids_by_board(target)["labor"]


async def test_retractions_travel_in_bundles(tmp_path):
    target_post, other = make_posts("labor", 2)
    with store_with(tmp_path / "a.db", [target_post, other]) as a, store_with(tmp_path / "b.db", [target_post]) as b:
        a.ingest([retraction(target_post)], source="local", now_ms=now_ms())
        out = tmp_path / "x.dzb"
        export_bundle(a, out, now_ms=now_ms())
        result = await import_bundles([out], ingest_into(b))
        assert result.ok
        assert b.get(target_post.id) is None and b.tombstoned([target_post.id])
        assert b.get(other.id) is not None


def test_export_refuses_bad_arguments_and_writes_nothing(source, tmp_path):
    store, _ = source
    out = tmp_path / "x.dzb"
    with pytest.raises(BundleFileError, match="at least"):
        export_bundle(store, out, split_bytes=1000, now_ms=now_ms())
    with pytest.raises(BundleFileError):
        export_bundle(store, tmp_path / "no" / "such" / "x.dzb", now_ms=now_ms())
    assert not [name for name in os.listdir(tmp_path) if not name.startswith("source.db")]


def test_parse_since_and_size():
    now = 1_700_000_000_000
    assert parse_since("7d", now) == now - 7 * DAY_MS
    assert parse_since("12h", now) == now - 12 * 3_600_000
    assert parse_since("2024-05-01", now) == 1_714_521_600_000
    assert parse_since("2024-05-01T12:00Z", now) == 1_714_521_600_000 + 12 * 3_600_000
    assert parse_since("2024-05-01T14:00+02:00", now) == 1_714_521_600_000 + 12 * 3_600_000
    for bad in ("yesterday", "", "7 days", "1969-01-01"):
        with pytest.raises(ValueError):
            parse_since(bad, now)
    assert parse_size("20000") == 20000 and parse_size("10M") == 10 << 20 and parse_size("512k") == 512 << 10
    assert parse_size("1GiB") == 1 << 30
    for bad in ("", "ten", "-5", "1.5M"):
        with pytest.raises(ValueError):
            parse_size(bad)


# --- retention ------------------------------------------------------------------------------


def test_apply_retention_purges_and_tombstones(tmp_path):
    now = now_ms()
    old = make_posts("labor", 5, start_ms=now - 10 * DAY_MS)
    fresh = make_posts("labor", 3)
    kept_board = make_posts("chat", 4, start_ms=now - 10 * DAY_MS)
    zero_days = make_posts("news", 2, start_ms=now - 400 * DAY_MS)
    with store_with(tmp_path / "m.db", old + fresh + kept_board + zero_days) as store:
        report = apply_retention(store, {"labor": 7, "news": 0}, now)
        assert report.purged == {"labor": 5}
        assert sorted(report.removed_keys) == sorted(p.key for p in old)
        assert sorted(bytes.fromhex(i) for i in ids_by_board(store)["labor"]) == sorted(p.id for p in fresh)
        assert len(ids_by_board(store)["chat"]) == 4 and len(ids_by_board(store)["news"]) == 2
        # Gossip or a bundle can never bring them back.
        again = store.ingest(old, source="http://peer:1", now_ms=now)
        assert not again.added and {code for _, code in again.rejected} == {"tombstoned"}
        # A second round finds nothing more.
        assert apply_retention(store, {"labor": 7}, now).purged == {}


def test_retention_setting(tmp_path):
    data = DataDir(tmp_path / "d")
    data.create()
    data.config.write_text('retention_days = { labor = 30, "劳动法" = 7, chat = 0 }\n', encoding="utf-8")
    assert dict(load_config(data, environ={}).retention_days) == {"labor": 30, "劳动法": 7, "chat": 0}
    cfg = load_config(data, environ={"DAZIBAO_RETENTION_DAYS": "labor=1, news=2"})
    assert dict(cfg.retention_days) == {"labor": 1, "news": 2}
    assert dict(load_config(data, environ={"DAZIBAO_RETENTION_DAYS": '{ "a,b" = 3 }'}).retention_days) == {"a,b": 3}
    for text in ('retention_days = { labor = -1 }\n', 'retention_days = { labor = "soon" }\n',
                 'retention_days = ["labor"]\n', 'retention_days = { "bad\u202eboard" = 3 }\n'):
        data.config.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match="retention_days"):
            load_config(data, environ={})
    data.config.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="retention_days"):
        load_config(data, environ={"DAZIBAO_RETENTION_DAYS": "labor"})



# --- whatever happens to the file, nothing invalid is stored ----------------------------------

_ITEMS = make_posts("labor", 6, start_ms=1_700_000_000_000) + make_posts("chat", 4, author=1,
                                                                         start_ms=1_700_000_000_000)
_ALLOWED = {p.raw for p in _ITEMS}


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=8), st.booleans()),
                min_size=1, max_size=5),
       st.integers(0, 4000))
def test_random_damage_never_stores_an_invalid_post(tmp_path, edits, cut):
    with Store(tmp_path / "src.db") as src:
        src.ingest(_ITEMS, source="local", now_ms=now_ms())
        path = tmp_path / "x.dzb"
        export_bundle(src, path, now_ms=now_ms())
    data = bytearray(path.read_bytes())
    for where, blob, insert in edits:
        where %= len(data)
        if insert:
            data[where:where] = blob
        else:
            # Shorter wins: near the end of the file, only the bytes that are there are flipped.
            flipped = zip(data[where : where + len(blob)], blob, strict=False)
            data[where : where + len(blob)] = bytes(a ^ b for a, b in flipped)
    damaged = tmp_path / "damaged.dzb"
    damaged.write_bytes(bytes(data[: max(cut, 1) if cut < len(data) else len(data)]))
    target = Store(tmp_path / "target.db")
    try:
        try:
            report = asyncio.run(import_bundles([damaged], ingest_into(target)))
        except BundleFileError:
            assert target.count() == 0
            return
        assert_only_valid(target, _ALLOWED)
        assert report.added == target.count()
        again = asyncio.run(import_bundles([damaged], ingest_into(target)))
        assert again.added == 0 and target.count() == report.added
    finally:
        target.close()
        for name in ("target.db", "target.db-wal", "target.db-shm", "src.db", "src.db-wal", "src.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
