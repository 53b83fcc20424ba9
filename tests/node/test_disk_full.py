"""A node whose storage is full: pushes are refused with a typed answer, reads go on.

Against real `dazibao run` processes on 127.0.0.1.  A peer pushes valid posts until the node has
no room: the gossip API must answer JSON 507 ``storage_full`` (the old node answered a plain
500 with a traceback, every time), store nothing of the refused batch, keep answering info,
fetch, reconcile and the web UI, log the condition once, keep its write-ahead log within its
bound, and start again on the same folder.  Two ways to fill it: the operator's cap
``max_store_bytes`` (runs everywhere), and a real full disk, a small tmpfs (needs root and
mount; skipped with the reason otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dazibao.node.config import SETTINGS, DataDir
from dazibao.node.store import StorageFullError, Store
from dazibao.protocol import identity, limits, messages, posts, reconcile
from dazibao.protocol.keyindex import KeyIndex

from .procs import NO_QUOTA, NodeProcess, cli_env

MIB = 1 << 20
KEY = identity.SigningKey(hashlib.sha256(b"disk full test key").digest())
BODY = "工资 overtime " * 150  # about 2.4 KB


def make_posts(count: int, start: int = 0) -> list[bytes]:
    now = int(time.time() * 1000) - 3_600_000
    return [posts.create_post(KEY, kind="post", board="labor", body=f"{i} {BODY}", created_at_ms=now + i).raw
            for i in range(start, start + count)]


def http(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes, str]:
    headers = {"Content-Type": "application/x-msgpack"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def push(node: NodeProcess, raws: list[bytes]) -> tuple[int, bytes, str]:
    return http(node.url + "/v1/posts", messages.encode_posts(raws))


def push_until_full(node: NodeProcess, most: int = 80, batch: int = 100) -> tuple[int, dict, list[bytes]]:
    """Push batches of new posts until one is refused; the status, its JSON and what was accepted."""
    accepted: list[bytes] = []
    for n in range(most):
        raws = make_posts(batch, start=n * batch)
        status, body, ctype = push(node, raws)
        if status != 200:
            assert ctype.startswith("application/json"), (status, body[:300])
            return status, json.loads(body), accepted
        result = messages.decode_push_result(body)
        assert result.accepted == batch, result
        accepted.extend(raws)
    raise AssertionError(f"the node took {most * batch} posts and never said it was full")


def wal_bytes(data: Path) -> int:
    try:
        return os.path.getsize(data / "dazibao.db-wal")
    except OSError:
        return 0


def assert_reads_work(node: NodeProcess, stored: list[bytes]) -> None:
    info = node.info()
    assert info["posts"] >= len(stored)
    wanted = [posts.decode_post(raw).id for raw in stored[:50]]
    status, body, _ = http(node.url + "/v1/fetch", messages.encode_ids(wanted))
    assert status == 200
    assert len(messages.decode_posts(body, "fetch").posts) == len(wanted)
    # A whole reconciliation from an empty peer: it learns of every stored post.
    initiator = reconcile.Initiator(KeyIndex(), ["labor"])
    msg = initiator.initiate()
    while msg is not None:
        status, body, _ = http(node.url + "/v1/reconcile", msg)
        assert status == 200
        msg = initiator.reconcile(body)
    assert len(initiator.need) >= len(stored)
    ui = json.loads((node.data / "node.json").read_text())["ui_url"]
    with urllib.request.urlopen(ui, timeout=30) as resp:
        assert resp.status == 200


def assert_quiet_log(node: NodeProcess) -> None:
    log = node.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert 1 <= log.count("storage full") <= 3, log[-3000:]


def new_folder(path: Path) -> Path:
    DataDir(path).create()
    Store(str(path / "dazibao.db")).close()
    return path


def test_cap_setting_matches_its_limit():
    (setting,) = [s for s in SETTINGS if s.name == "max_store_bytes"]
    assert setting.default == limits.MAX_STORE_BYTES


@pytest.mark.slow
def test_store_cap_refuses_with_507_and_keeps_serving(tmp_path):
    data = new_folder(tmp_path / "node")
    cap = 3 * MIB
    env = cli_env(DAZIBAO_MAX_STORE_BYTES=str(cap), **NO_QUOTA)
    with NodeProcess(data, env=env) as node:
        status, answer, stored = push_until_full(node)
        assert status == 507, answer
        assert answer["error"]["code"] == "storage_full"
        assert stored, "nothing fitted under the cap"
        before = node.info()["posts"]
        # A refused batch leaves nothing behind, and so does the next one (refused at once).
        status, body, _ = push(node, make_posts(20, start=900_000))
        assert status == 507 and json.loads(body)["error"]["code"] == "storage_full"
        assert node.info()["posts"] == before
        assert_reads_work(node, stored)
        assert os.path.getsize(data / "dazibao.db") <= cap
        assert wal_bytes(data) <= max(cap // 4, MIB)
    assert_quiet_log(node)
    # The same folder starts again, and serves what it has.
    with NodeProcess(data, env=env) as node:
        assert node.info()["posts"] == before
        assert_reads_work(node, stored)
    # With a larger cap, writes resume.
    with NodeProcess(data, env=cli_env(DAZIBAO_MAX_STORE_BYTES=str(8 * cap), **NO_QUOTA)) as node:
        status, body, _ = push(node, make_posts(20, start=800_000))
        assert status == 200 and messages.decode_push_result(body).accepted == 20


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root and mount): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> None:
    """Take every byte left on the file system of ``path``."""
    with open(path, "wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 512)


@pytest.mark.slow
def test_full_disk_refuses_with_507_and_starts_read_only(tmp_path):
    with small_disk(tmp_path / "disk", "8m") as disk:
        data = new_folder(disk)  # NodeProcess logs beside the folder: outside the small disk
        with NodeProcess(data, env=cli_env(**NO_QUOTA)) as node:
            status, answer, stored = push_until_full(node)
            assert status == 507, answer
            assert answer["error"]["code"] == "storage_full"
            before = node.info()["posts"]
            status, _, _ = push(node, make_posts(20, start=900_000))
            assert status == 507
            assert node.info()["posts"] == before
            assert_reads_work(node, stored)
            assert wal_bytes(data) <= limits.MAX_WAL_BYTES
        assert_quiet_log(node)
        # Start again on a disk with no byte left but the few a node needs to say where it
        # listens: the node starts, says it is read-only, serves reads, refuses writes.
        ballast = disk / "ballast"
        fill(ballast)
        os.truncate(ballast, max(os.path.getsize(ballast) - 16384, 0))
        node.log.write_text("")
        with NodeProcess(data, env=cli_env(**NO_QUOTA)) as node:
            assert node.info()["posts"] == before
            assert_reads_work(node, stored)
            status, body, _ = push(node, make_posts(5, start=700_000))
            assert status == 507 and json.loads(body)["error"]["code"] == "storage_full"
        log = node.log.read_text()
        assert "storage full" in log and "read-only" in log and "Traceback" not in log, log[-3000:]


def test_store_opens_read_only_on_a_disk_with_no_byte_left(tmp_path):
    # Even the shared-memory file beside the database cannot be created: the store opens for
    # reading, with an exclusive lock, and refuses writes with the typed error.
    with small_disk(tmp_path / "disk", "2m") as disk:
        path = disk / "dazibao.db"
        with Store(str(path)) as store:
            store.ingest([posts.decode_post(r) for r in make_posts(30)], source="peer",
                         now_ms=int(time.time() * 1000))
        fill(disk / "ballast")
        with pytest.raises(StorageFullError):
            Store(str(path))
        with Store(str(path), read_only_fallback=True) as store:
            assert store.full and store.exclusive
            assert store.count() == 30
            with pytest.raises(StorageFullError):
                store.ingest([posts.decode_post(r) for r in make_posts(1, start=100)], source="peer",
                             now_ms=int(time.time() * 1000))


# --- durability: what a power loss can cost -----------------------------------------------------


def _traced_ingest(store: Store, source: str, raws: list[bytes]) -> list[str]:
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        store.ingest([posts.decode_post(r) for r in raws], source=source, now_ms=int(time.time() * 1000))
    finally:
        store._conn.set_trace_callback(None)
    return statements


def test_own_posts_are_synced_to_disk_and_gossip_is_not(tmp_path):
    # The member's own posts (source "local": `dazibao post`, the web UI) exist nowhere else
    # yet, so their commit is synced (synchronous=FULL); posts from peers are committed with
    # NORMAL, which a power loss can undo but a peer offers again at the next sync.
    with Store(str(tmp_path / "dazibao.db")) as store:
        own = _traced_ingest(store, "local", make_posts(1))
        assert own.index("PRAGMA synchronous = FULL") < own.index("COMMIT") < own.index("PRAGMA synchronous = NORMAL")
        gossip = _traced_ingest(store, "http://peer.example:7470", make_posts(1, start=1))
        assert "COMMIT" in gossip and not any("synchronous = FULL" in s for s in gossip)
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again


def test_the_node_stores_the_members_posts_as_local(tmp_path):
    # The path of the web UI and of posts picked up by the node: NodeCore.ingest_checked.
    import asyncio

    from dazibao.node.config import Config
    from dazibao.node.service import NodeCore

    data = DataDir(new_folder(tmp_path / "node"))
    seen: list[str] = []

    async def run() -> None:
        core = NodeCore(data, Config())
        await core.open()
        try:
            await core.db.call(lambda store: store._conn.set_trace_callback(seen.append))
            await core.ingest_checked([posts.decode_post(r) for r in make_posts(1)], "local")
            await core.db.call(lambda store: store._conn.set_trace_callback(None))
        finally:
            await core.close()

    asyncio.run(run())
    assert "PRAGMA synchronous = FULL" in seen
