"""The stem phase between real nodes (separate processes, real HTTP on 127.0.0.1, real SQLite):
a new post goes first to one peer, marked as stem and alone; while it is in stem state its
author neither offers it in reconciliation nor hands it out by id; it then reaches everyone.
With ``stem = false`` it is announced to several peers at once, and a stem that stalls is
fluffed by the author's timer (docs/gossip.md, "Stem, then fluff")."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dazibao.protocol import messages, posts

from .procs import NodeProcess, cli_env, dazibao, post_ids, wait_until

pytestmark = pytest.mark.slow

#: Anti-entropy made rare where the test is about pushes; the relays fluff soon if a stem stalls.
QUIET = {"DAZIBAO_ALLOW_PRIVATE_PEERS": "true", "DAZIBAO_SYNC_INTERVAL_S": "3600"}


class Recorder:
    """A peer played by the test: it records every request and forwards it to a real node.

    With ``hold_stem`` set, a stem push waits (unanswered, so the sender still holds the post
    in stem state) until the event is set, then goes on."""

    def __init__(self, target: str, hold_stem: threading.Event | None = None) -> None:
        self.target = urlsplit(target)
        self.hold_stem = hold_stem
        self.seen: list[tuple[str, str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.seen.append((self.command, self.path, body))
                if "stem=1" in self.path and recorder.hold_stem is not None:
                    recorder.hold_stem.wait(30)
                conn = http.client.HTTPConnection(recorder.target.hostname, recorder.target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.hold_stem is not None:
            self.hold_stem.set()
        self.server.shutdown()
        self.server.server_close()

    def carrying(self, pid: bytes) -> list[tuple[str, list[bytes]]]:
        """The requests that carried ``pid`` (a push or an announcement), with the ids of each."""
        out = []
        for method, path, body in list(self.seen):
            if method != "POST":
                continue
            if path.startswith("/v1/posts"):
                ids = [posts.decode_post(raw).id for raw in messages.decode_posts(body).posts]
            elif path.startswith("/v1/announce"):
                ids = [i for _, group in messages.decode_announcement(body).groups for i in group]
            else:
                continue
            if pid in ids:
                out.append((path, ids))
        return out


class Tarpit:
    """A peer that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def make_node(tmp_path: Path, name: str) -> Path:
    data = tmp_path / name
    dazibao(data, "init", "--name", f"{name}-member")
    return data


def fetch(url: str, pid: bytes) -> list[bytes]:
    """The posts a node hands out for ``pid`` (POST /v1/fetch)."""
    req = urllib.request.Request(url + "/v1/fetch", data=messages.encode_ids([pid]), method="POST",
                                 headers={"Content-Type": "application/msgpack"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(messages.decode_posts(resp.read()).posts)


def test_a_new_post_goes_along_a_stem_and_stays_out_of_reconciliation_until_fluffed(tmp_path):
    a, b, c, d, fresh = (make_node(tmp_path, n) for n in ("a", "b", "c", "d", "fresh"))
    # The relays reconcile often: a fluff is announced only by the node that fluffs, to its own
    # peers, and in this small star anti-entropy carries it the rest of the way.
    relays = cli_env(DAZIBAO_ALLOW_PRIVATE_PEERS="true", DAZIBAO_SYNC_INTERVAL_S="2", DAZIBAO_STEM_FLUFF_TIMEOUT_S="3")
    hold = threading.Event()
    with NodeProcess(c, env=relays) as node_c, NodeProcess(d, env=relays) as node_d, \
            NodeProcess(b, peers=(node_c.url, node_d.url), env=relays) as node_b:
        recorder = Recorder(node_b.url, hold_stem=hold)
        try:
            # A's one peer is the recorder in front of B; A's own fail-safe is far off, so the
            # post stays in stem state at A as long as the recorder holds the stem push.
            env = cli_env(**QUIET, DAZIBAO_STEM_FLUFF_TIMEOUT_S="60", DAZIBAO_PEER_EXCHANGE="false")
            with NodeProcess(a, peers=(recorder.url,), env=env) as node_a:
                pid_hex = dazibao(a, "post", "--board", "labor", "strike at dawn").stdout.strip()
                pid = bytes.fromhex(pid_hex)
                wait_until(lambda: recorder.carrying(pid), "A's stem push")
                # A's first push of the post is a stem push to one peer, with no other post
                # than its own (and its author's profile), and nothing announces it.
                (path, ids), = recorder.carrying(pid)
                assert "stem=1" in path and path.startswith("/v1/posts")
                assert set(ids) <= {pid, *[bytes.fromhex(i) for i in post_ids(a) if i != pid_hex]}
                # While it is in stem state, a node that is not its stem peer reconciles with
                # A and does not find it, nor gets it by id.
                report = json.loads(dazibao(fresh, "sync", node_a.url, "--json").stdout)
                assert report["received"] == 0
                assert pid_hex not in post_ids(fresh)
                assert fetch(node_a.url, pid) == []
                # The stem goes on: the post reaches every node, and A offers it once fluffed.
                hold.set()
                for data in (b, c, d):
                    wait_until(lambda data=data: pid_hex in post_ids(data), f"the post to reach {data.name}")
                wait_until(lambda: fetch(node_a.url, pid), "A to hand the post out once fluffed")
                dazibao(fresh, "sync", node_a.url)
                assert pid_hex in post_ids(fresh)
        finally:
            recorder.close()


def test_without_stem_a_new_post_is_announced_to_several_peers_at_once(tmp_path):
    a, b, c, d = (make_node(tmp_path, n) for n in "abcd")
    env = cli_env(**QUIET)
    with NodeProcess(d, env=env) as node_d, NodeProcess(c, env=env) as node_c, \
            NodeProcess(b, peers=(node_d.url,), env=env) as node_b:
        one, two = Recorder(node_b.url), Recorder(node_c.url)
        try:
            with NodeProcess(a, peers=(one.url, two.url), env=cli_env(**QUIET, DAZIBAO_STEM="false")) as node_a:
                pid_hex = dazibao(a, "post", "--board", "labor", "strike at dawn").stdout.strip()
                pid = bytes.fromhex(pid_hex)
                wait_until(lambda: one.carrying(pid) and two.carrying(pid), "both peers to be told")
                for recorder in (one, two):
                    assert recorder.carrying(pid)[0][0].startswith("/v1/announce")
                    assert not any("stem=1" in path for path, _ in recorder.carrying(pid))
                for data in (b, c, d):
                    wait_until(lambda data=data: pid_hex in post_ids(data), f"the post to reach {data.name}")
                assert fetch(node_a.url, pid)
        finally:
            one.close()
            two.close()


def test_a_stalled_stem_is_fluffed_by_the_timer_and_the_post_reaches_everyone(tmp_path):
    a, b, c, d = (make_node(tmp_path, n) for n in "abcd")
    tarpit = Tarpit()
    try:
        # A's one peer never answers: the stem push to it hangs, and A's fail-safe fluffs the
        # post after two to four seconds.
        env = cli_env(DAZIBAO_ALLOW_PRIVATE_PEERS="true", DAZIBAO_STEM_FLUFF_TIMEOUT_S="2")
        with NodeProcess(a, peers=(tarpit.url,), env=env) as node_a:
            pid_hex = dazibao(a, "post", "--board", "labor", "strike at dawn").stdout.strip()
            pid = bytes.fromhex(pid_hex)
            others = cli_env(DAZIBAO_ALLOW_PRIVATE_PEERS="true", DAZIBAO_SYNC_INTERVAL_S="1")
            with NodeProcess(b, peers=(node_a.url,), env=others) as node_b, \
                    NodeProcess(c, peers=(node_b.url,), env=others), NodeProcess(d, peers=(node_b.url,), env=others):
                for data in (b, c, d):
                    wait_until(lambda data=data: pid_hex in post_ids(data), f"the post to reach {data.name}")
                assert fetch(node_a.url, pid)
    finally:
        tarpit.close()
