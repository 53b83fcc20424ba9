"""Two and three real nodes: separate data folders, real ports on 127.0.0.1, real HTTP and
real SQLite, driven through the `dazibao` command as a member would."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .procs import NodeProcess, cli_env, dazibao, post_ids, posts_json, wait_until

pytestmark = pytest.mark.slow


def make_node(tmp_path, name: str):
    data = tmp_path / name
    dazibao(data, "init", "--name", f"{name}-member")
    return data


def test_posts_cross_both_ways_and_survive_restart(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    with NodeProcess(a), NodeProcess(b) as node_b:
        pid_a = dazibao(a, "post", "--board", "labor", "996 is illegal: 工作时间太长").stdout.strip()
        pid_b = dazibao(b, "post", "--board", "labor", "we meet at noon").stdout.strip()
        out = dazibao(a, "sync", node_b.url, "--json")
        report = json.loads(out.stdout)
        # Each author's first post on the board went with its profile (the name readers see).
        assert report["received"] == 2 and report["sent"] == 2
        assert post_ids(a) == post_ids(b)
        assert sorted(p["id"] for p in posts_json(b) if p["kind"] == "post") == sorted([pid_a, pid_b])
        # CJK text crosses the wire and SQLite exactly.
        bodies = {p["id"]: p["body"] for p in posts_json(b)}
        assert bodies[pid_a] == "996 is illegal: 工作时间太长"
        # A second sync moves nothing and settles in one round.
        again = json.loads(dazibao(a, "sync", node_b.url, "--json").stdout)
        assert again["received"] == again["sent"] == 0 and again["rounds"] == 1
        before = post_ids(b)
        node_b.stop()
        node_b.start()
        assert post_ids(b) == before
        assert node_b.info()["posts"] == 4


def test_retraction_propagates_and_cannot_come_back(tmp_path):
    a, b, c = (make_node(tmp_path, n) for n in "abc")
    with NodeProcess(a) as node_a, NodeProcess(b) as node_b, NodeProcess(c):
        target = dazibao(a, "post", "--board", "labor", "meet at the gate").stdout.strip()
        dazibao(b, "sync", node_a.url)
        dazibao(c, "sync", node_b.url)
        assert target in post_ids(c)
        dazibao(a, "retract", target)
        assert target not in post_ids(a)
        # B learns of the retraction from A; the post's content is gone from B.
        dazibao(b, "sync", node_a.url)
        assert target not in post_ids(b)
        # C still holds the post and offers it to B: B refuses it and C gets the retraction.
        report = json.loads(dazibao(c, "sync", node_b.url, "--json").stdout)
        assert target not in post_ids(b)
        assert target not in post_ids(c)
        assert all(r["code"] == "tombstoned" for r in report["peer_rejected"])
        # And again, with A: nobody brings it back.
        dazibao(c, "sync", node_a.url)
        assert target not in post_ids(a)


def test_post_while_running_reaches_peer_without_restart(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    # Anti-entropy is made rare, so that only the eager push can deliver in time.
    env = cli_env(DAZIBAO_SYNC_INTERVAL_S="3600")
    with NodeProcess(b, env=env) as node_b, NodeProcess(a, peers=(node_b.url,), env=env):
        pid = dazibao(a, "post", "--board", "news", "strike on friday").stdout.strip()
        wait_until(lambda: pid in post_ids(b), "the post to reach node b")


def test_restarted_node_database_is_intact(tmp_path):
    a = make_node(tmp_path, "a")
    with NodeProcess(a):
        for i in range(5):
            dazibao(a, "post", "--board", "b", f"post {i}")
    with sqlite3.connect(a / "dazibao.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(post_ids(a)) == 5 + 1  # and the profile that went with the first


def test_cli_errors_are_one_line(tmp_path):
    a = make_node(tmp_path, "a")
    for args in (["post", "--board", "bad\u202eboard", "x"], ["sync", "ftp://x"], ["peers", "add", "nope"],
                 ["post", "--board", "b", "   "], ["retract", "zz"]):
        proc = dazibao(a, *args, check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dazibao: error:"), proc.stderr
    env = cli_env(DAZIBAO_PASSPHRASE="wrong passphrase")
    proc = dazibao(a, "post", "--board", "b", "hello", check=False, env=env)
    assert proc.returncode == 1 and "passphrase" in proc.stderr
    assert post_ids(a) == []


def test_a_second_node_on_the_same_data_folder_is_refused(tmp_path):
    a = make_node(tmp_path, "a")
    with NodeProcess(a) as node:
        before = (a / "node.json").read_text()
        proc = dazibao(a, "run", "--gossip-listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0",
                       check=False, timeout=60)
        assert proc.returncode == 1 and "already running" in proc.stderr
        # The running node's own record is left alone, and it keeps serving.
        assert (a / "node.json").read_text() == before
        assert node.info()["protocol"] == 1
