"""Mirrors end to end, with real `dazibao` processes, real SQLite files and real HTTP on 127.0.0.1.

* a mirror that carries boards A and B, syncing with a node that has A, B and C, ends with
  exactly A and B; with retention, old posts are purged and no sync brings them back;
* `dazibao export` on one node and `dazibao import` on an empty one give identical ids per board;
* damaged, cut, forged or foreign files and bad arguments give one clear error line, store
  every intact valid post and nothing else, and importing twice changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dazibao.node.config import DataDir
from dazibao.node.store import Store
from dazibao.protocol import bundle

from ..node.procs import NodeProcess, dazibao, posts_json, wait_until
from .helpers import DAY_MS, make_posts, now_ms, reply, store_with

pytestmark = pytest.mark.slow


def bare_node(path: Path, items=(), config: str = "") -> Path:
    """A data folder with posts already stored (no pseudonym: none is needed to carry posts)."""
    data = DataDir(path)
    data.create()
    if config:
        data.config.write_text(config, encoding="utf-8")
    store_with(data.database, list(items)).close()
    return path


def ids_per_board(data: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in posts_json(data):
        out.setdefault(p["board"], []).append(p["id"])
    return {b: sorted(ids) for b, ids in out.items()}


def one_error_line(proc) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dazibao: error: "), proc.stderr
    return lines[0]


def test_mirror_of_two_boards_with_retention(tmp_path):
    now = now_ms()
    old_a = make_posts("A", 4, start_ms=now - 3 * DAY_MS)
    new_a = make_posts("A", 3)
    posts_b = make_posts("B", 3, author=1)
    posts_c = make_posts("C", 3, author=2)
    origin = bare_node(tmp_path / "origin", old_a + new_a + posts_b + posts_c + [reply(new_a[0], "ok")])
    mirror = bare_node(tmp_path / "mirror", config='boards = ["A", "B"]\nretention_days = { A = 1 }\n')
    with NodeProcess(origin) as origin_node:
        report = json.loads(dazibao(mirror, "sync", origin_node.url, "--json").stdout)
        assert set(report["boards"]) == {"A", "B"}
        origin_ids = ids_per_board(origin)
        old_ids = {p.id.hex() for p in old_a}
        # Posts already past A's retention are purged as they arrive (and tombstoned).
        assert ids_per_board(mirror) == {"A": sorted(set(origin_ids["A"]) - old_ids), "B": origin_ids["B"]}

        # The running mirror applies retention at start and hourly: nothing old stays on A.
        with NodeProcess(mirror, peers=(origin_node.url,)) as mirror_node:
            wait_until(lambda: not old_ids & set(ids_per_board(mirror)["A"]), "retention to purge the old posts")
            assert mirror_node.info()["boards"] == ["A", "B"]
            # Sync again (the origin still has them): they do not come back.
            again = json.loads(dazibao(mirror, "sync", origin_node.url, "--json").stdout)
            assert again["received"] == 0
            assert all(r["code"] == "tombstoned" for r in again["rejected"])
            kept = ids_per_board(mirror)
            assert set(kept) == {"A", "B"} and not old_ids & set(kept["A"])
            assert sorted(set(origin_ids["A"]) - old_ids) == kept["A"] and kept["B"] == origin_ids["B"]
            # Nor through a bundle: the origin's whole set, imported, adds nothing.
            dazibao(origin, "export", "-o", str(tmp_path / "all.dzb"))
            out = json.loads(dazibao(mirror, "import", str(tmp_path / "all.dzb"), "--json").stdout)
            assert out["ok"] and out["added"] == 0
            assert out["refused"] == {"not_carried": len(posts_c), "tombstoned": len(old_a)}
            assert ids_per_board(mirror) == kept
        assert len(posts_json(origin)) == len(old_a) + len(new_a) + len(posts_b) + len(posts_c) + 1


def test_export_import_between_nodes_and_split_parts(tmp_path):
    items = make_posts("labor", 40) + make_posts("劳动法", 25, author=1) + make_posts("chat", 5, author=2)
    items.append(reply(items[0], "回复\n\nsecond paragraph"))
    # Big posts, so that a small --split-bytes gives several parts.
    items += make_posts("big", 6, text="长" * 5000 + " ")
    src = bare_node(tmp_path / "src", items)
    dst = bare_node(tmp_path / "dst")
    out = tmp_path / "all.dzb"
    result = json.loads(dazibao(src, "export", "-o", str(out), "--json").stdout)
    assert result["posts"] == len(items) and result["files"] == [str(out)]
    proc = dazibao(dst, "import", str(out))
    assert proc.stdout.startswith(f"imported {len(items)} new posts") and proc.stderr == ""
    assert ids_per_board(dst) == ids_per_board(src)
    # Twice: nothing changes.
    again = json.loads(dazibao(dst, "import", str(out), "--json").stdout)
    assert again["ok"] and again["added"] == 0 and again["duplicates"] == len(items)
    assert ids_per_board(dst) == ids_per_board(src)

    # Split, then import the parts out of order into a fresh node, one part missing first.
    split = str(bundle.min_split_bytes(["big", "labor"]) + 4096)
    res = json.loads(dazibao(src, "export", "--board", "big", "--board", "labor", "--split-bytes", split,
                             "-o", str(tmp_path / "two.dzb"), "--json").stdout)
    parts = [Path(f) for f in res["files"]]
    assert len(parts) >= 3 and all(p.stat().st_size <= int(split) for p in parts)
    third = bare_node(tmp_path / "third")
    missing = parts[1]
    present = [parts[-1], *parts[2:-1], parts[0]]
    proc = dazibao(third, "import", *map(str, present), check=False)
    assert proc.returncode == 1
    assert f"warning: bundle {res['bundle_id']}: missing part 2 of {len(parts)}" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("dazibao: error: import incomplete: 1 missing part")
    in_missing = {e.raw for e in bundle.decode_bundle(missing.read_bytes()) if isinstance(e, bundle.PostRecord)}
    wanted = {b: ids for b, ids in ids_per_board(src).items() if b in ("big", "labor")}
    assert sum(map(len, ids_per_board(third).values())) == sum(map(len, wanted.values())) - len(in_missing)
    # The missing part arrives: importing the whole set again completes it, with no complaint.
    done = json.loads(dazibao(third, "import", *map(str, parts), "--json").stdout)
    assert done["ok"] and done["added"] == len(in_missing)
    assert ids_per_board(third) == wanted


def test_damaged_files_import_every_intact_post_and_name_the_damage(tmp_path):
    items = make_posts("labor", 12)
    src = bare_node(tmp_path / "src", items)
    dst = bare_node(tmp_path / "dst")
    good = tmp_path / "good.dzb"
    dazibao(src, "export", "-o", str(good))
    data = good.read_bytes()
    records = [e for e in bundle.decode_bundle(data) if isinstance(e, bundle.PostRecord)]

    flipped = bytearray(data)
    flipped[records[3].offset + 80] ^= 0x01
    (tmp_path / "flipped.dzb").write_bytes(bytes(flipped))
    proc = dazibao(dst, "import", str(tmp_path / "flipped.dzb"), check=False)
    assert proc.returncode == 1
    assert f"flipped.dzb: at byte {records[3].offset}: bundle_damaged" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("dazibao: error: import incomplete")
    stored = {p["id"] for p in posts_json(dst)}
    assert stored == {p.id.hex() for p in items} - {items[3].id.hex()}

    cut = tmp_path / "cut.dzb"
    cut.write_bytes(data[: records[9].offset + 30])
    proc = dazibao(dst, "import", str(cut), "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    # Records 0-8 survive the cut: 3 (damaged before) is new, the others are already here.
    assert not report["ok"] and report["added"] == 1 and report["duplicates"] == 8
    assert report["files"][0]["damaged"][0]["code"] == "bundle_truncated"
    assert report["files"][0]["records"] == 9 and report["files"][0]["expected"] == 12

    # The good file completes the set; importing it twice changes nothing.
    dazibao(dst, "import", str(good))
    assert {p["id"] for p in posts_json(dst)} == {p.id.hex() for p in items}
    assert json.loads(dazibao(dst, "import", str(good), "--json").stdout)["added"] == 0


def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path):
    items = make_posts("labor", 3)
    src = bare_node(tmp_path / "src", items)
    dst = bare_node(tmp_path / "dst")
    good = tmp_path / "good.dzb"
    dazibao(src, "export", "-o", str(good))
    not_bundle = tmp_path / "notes.txt"
    not_bundle.write_text("minutes of the meeting\n")
    newer = tmp_path / "newer.dzb"
    newer.write_bytes(bundle.MAGIC + b"\x09" + bytes(64))

    checks = [
        (dst, ["import", str(good), str(not_bundle)], "notes.txt: not a dazibao bundle"),
        (dst, ["import", str(newer)], "version 9 is not supported"),
        (dst, ["import", str(tmp_path / "nowhere.dzb")], "cannot read"),
        (dst, ["import", str(tmp_path)], "is a folder"),
        (src, ["export", "--split-bytes", "1000", "-o", str(tmp_path / "x.dzb")], "--split-bytes must be at least"),
        (src, ["export", "--split-bytes", "lots", "-o", str(tmp_path / "x.dzb")], "--split-bytes"),
        (src, ["export", "--since", "last tuesday", "-o", str(tmp_path / "x.dzb")], "--since"),
        (src, ["export", "--board", "bad\u202eboard", "-o", str(tmp_path / "x.dzb")], "--board"),
        (src, ["export", "-o", str(tmp_path / "missing" / "x.dzb")], "does not exist"),
        (src, ["publish", "--board", "labor", "--out", str(tmp_path)], "not empty"),
        (src, ["publish", "--board", "bad\u202eboard", "--out", str(tmp_path / "site")], "board"),
        (tmp_path / "uninitialized", ["import", str(good)], "dazibao init"),
    ]
    for data, args, needle in checks:
        line = one_error_line(dazibao(data, *args, check=False))
        assert needle in line, (args, line)
    assert posts_json(dst) == []
    assert not (tmp_path / "x.dzb").exists() and not (tmp_path / "site").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "good.dzb", "newer.dzb", "notes.txt", "src"]


def test_publish_command(tmp_path):
    items = make_posts("labor", 5)
    src = bare_node(tmp_path / "src", items + [reply(items[0], "yes")])
    site = tmp_path / "site"
    report = json.loads(dazibao(src, "publish", "--board", "labor", "--out", str(site), "--json").stdout)
    assert report["posts"] == 6 and report["threads"] == 5 and report["bundle_posts"] == 6
    assert (site / "index.html").is_file() and (site / "posts.dzb").is_file()
    # The copy's bundle imports into a reader's node: the check the index page describes.
    reader = bare_node(tmp_path / "reader")
    dazibao(reader, "import", str(site / "posts.dzb"))
    assert ids_per_board(reader) == ids_per_board(src)
    proc = dazibao(src, "publish", "--board", "labor", "--out", str(site))
    assert "published 6 posts in 5 threads of labor" in proc.stdout
    with Store(src / "dazibao.db") as store:
        assert store.count() == 6
