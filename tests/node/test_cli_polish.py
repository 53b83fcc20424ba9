"""The command line's finish, each point through the real `dazibao` command: short ids, removing
a peer, what counts as a post, unknown boards, a taken port, --data-dir anywhere, key import,
prompts that give up, --json on the commands that change something, retention on import."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from dazibao.node.config import DataDir

from ..mirror.helpers import DAY_MS, make_posts, now_ms, store_with
from .procs import PASSPHRASE, NodeProcess, cli_env, dazibao, wait_until

NAME = "小明"


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`dazibao ARGS` with no --data-dir of its own before the command."""
    proc = subprocess.run([sys.executable, "-m", "dazibao.node", *args], capture_output=True, text=True,
                          env=env or cli_env(), timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"dazibao {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dazibao: error: "), proc.stderr
    return lines[0].removeprefix("dazibao: error: ")


def listing(data, *args: str) -> list[dict]:
    return json.loads(dazibao(data, "posts", "--json", *args).stdout)


# --- short ids ------------------------------------------------------------------------------


def test_the_short_ids_that_posts_prints_are_taken_by_retract_and_reply_to(tmp_path):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    first = dazibao(data, "post", "--board", "labor", "one").stdout.strip()
    shown = dazibao(data, "posts").stdout
    short = first[:12]
    assert short in shown
    reply = dazibao(data, "post", "--reply-to", short, "two").stdout.strip()
    assert {p["id"]: p["parent"] for p in listing(data)}[reply] == first
    assert "at least 8 hex digits" in error_line(dazibao(data, "retract", first[:7], check=False))
    assert "no post here whose id starts with" in error_line(
        dazibao(data, "retract", "0123456789ab" if not first.startswith("0123") else "fedcba98", check=False))
    assert "in hex" in error_line(dazibao(data, "post", "--reply-to", "nothex!!", "x", check=False))
    out = json.loads(dazibao(data, "retract", reply[:8], "--json").stdout)
    assert out["retracted"] == reply
    assert reply not in {p["id"] for p in listing(data)}


def test_an_ambiguous_prefix_is_refused_with_the_candidates(tmp_path):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    first = dazibao(data, "post", "--board", "labor", "one").stdout.strip()
    # Two real ids sharing 8 hex digits would take billions of posts: a second row with the
    # same first 12 digits is made in the table itself.
    twin = first[:12] + ("0" if first[12] != "0" else "1") + first[13:]
    with sqlite3.connect(DataDir(data).database) as conn:
        conn.execute("CREATE TEMP TABLE twin AS SELECT * FROM posts WHERE id = ?", (bytes.fromhex(first),))
        conn.execute("UPDATE twin SET id = ?, seq = (SELECT max(seq) + 1 FROM posts)", (bytes.fromhex(twin),))
        conn.execute("INSERT INTO posts SELECT * FROM twin")
    message = error_line(dazibao(data, "retract", first[:10], check=False))
    assert "ambiguous" in message and first[:16] in message and twin[:16] in message
    message = error_line(dazibao(data, "post", "--reply-to", first[:12], "x", check=False))
    assert "ambiguous" in message


# --- peers remove ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_peers_remove_normalizes_and_refuses_an_unknown_peer(tmp_path):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    added = json.loads(dazibao(data, "peers", "add", "HTTP://Example.org:7470/", "--json").stdout)
    assert added == {"url": "http://example.org:7470", "added": True}
    removed = json.loads(dazibao(data, "peers", "remove", "http://EXAMPLE.org:7470/", "--json").stdout)
    assert removed == {"url": "http://example.org:7470", "removed": True}
    assert json.loads(dazibao(data, "peers", "list", "--json").stdout) == []
    assert "is not a known peer" in error_line(dazibao(data, "peers", "remove", "http://example.org:7470", check=False))
    assert error_line(dazibao(data, "peers", "remove", "ftp://x", check=False))
    DataDir(data).config.write_text('peers = ["http://example.net:7470"]\n', encoding="utf-8")
    assert "config file" in error_line(dazibao(data, "peers", "remove", "http://example.net:7470", check=False))


@pytest.mark.slow
def test_a_running_node_stops_trying_a_removed_peer(tmp_path):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    dead = f"http://127.0.0.1:{_free_port()}"
    # At info level the log names no peer (docs/privacy.md); at debug level each failed sync
    # is followed by a line naming the peer.
    env = cli_env(DAZIBAO_SYNC_INTERVAL_S="1", DAZIBAO_LOG_LEVEL="debug")
    with NodeProcess(data, env=env) as node:
        dazibao(data, "peers", "add", dead)

        def tries() -> int:
            return node.log.read_text(errors="replace").count(f"with peer {dead}: ")

        wait_until(lambda: tries() >= 1, "the node to try the dead peer", timeout=60)
        dazibao(data, "peers", "remove", dead)
        time.sleep(7)  # the node looks at the store's peers every 5 s
        before = tries()
        # Backing off, it would try again within 5 s x 2^(failures-1) x 1.25: 25 s covers the
        # first three failures.
        time.sleep(25)
        assert tries() == before
        assert dead not in {p["url"] for p in json.loads(dazibao(data, "peers", "list", "--json").stdout)}


# --- what a reader calls a post -------------------------------------------------------------


def test_posts_boards_and_status_count_posts_and_replies_only(tmp_path):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    gone = dazibao(data, "post", "--board", "labor", "soon gone").stdout.strip()
    first = dazibao(data, "post", "--board", "labor", "one").stdout.strip()
    reply = dazibao(data, "post", "--reply-to", first, "two").stdout.strip()
    dazibao(data, "retract", gone)
    key = json.loads(dazibao(data, "id", "list", "--json").stdout)[0]["public_key"]
    dazibao(data, "moderate", "vouch", "labor", "--author", key, "--reason", "known", "--as", NAME)
    dazibao(data, "moderate", "charter", "labor", "--description", "rules", "--as", NAME)

    rows = listing(data)
    assert sorted((p["id"], p["kind"]) for p in rows) == sorted([(first, "post"), (reply, "reply")])
    every = {p["kind"] for p in listing(data, "--all-kinds")}
    assert {"profile", "retract", "moderation", "charter"} <= every
    text = dazibao(data, "posts").stdout.splitlines()
    assert len(text) == 2
    assert [line for line in text if reply[:12] in line][0].count(f"reply to {first[:12]}") == 1
    assert json.loads(dazibao(data, "boards", "--json").stdout)[0]["posts"] == 2
    assert dazibao(data, "boards").stdout.split()[0] == "2"
    status = json.loads(dazibao(data, "status", "--json").stdout)
    assert status["posts"] == 2 and status["boards"] == 1
    assert "2 posts on 1 boards" in dazibao(data, "status").stdout


# --- unknown boards -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["posts", "--board", "nowhere"],
    ["export", "--board", "nowhere", "-o", "{tmp}/x.dzb"],
    ["publish", "--board", "nowhere", "--out", "{tmp}/site"],
    ["sync", "http://127.0.0.1:{port}", "--board", "nowhere"],
])
def test_an_unknown_board_gives_one_warning_line(tmp_path, command):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    dazibao(data, "post", "--board", "labor", "one")
    args = [a.format(tmp=tmp_path, port=_free_port()) for a in command]
    proc = dazibao(data, *args, check=False)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings == ["dazibao: warning: board 'nowhere' is not held here (no posts on it)"]
    if command[0] != "sync":  # sync then fails: nobody answers there
        assert proc.returncode == 0, proc.stderr
    assert not dazibao(data, "posts", "--board", "labor", check=False).stderr


# --- a taken port ---------------------------------------------------------------------------


def test_a_taken_ui_port_is_one_error_line(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    dazibao(a, "init", "--name", "a")
    dazibao(b, "init", "--name", "b")
    with NodeProcess(a):
        ui = json.loads((a / "node.json").read_text())["ui_url"]
        taken = ui.removeprefix("http://").rstrip("/")
        proc = dazibao(b, "run", "--gossip-listen", "127.0.0.1:0", "--ui-listen", taken, check=False, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "athrow" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dazibao: error: ")]
    assert errors == [f"dazibao: error: cannot start the node: error while attempting to bind on address "
                      f"('127.0.0.1', {taken.rsplit(':', 1)[1]}): address already in use"]
    assert not (b / "node.json").exists()


# --- --data-dir after the command -----------------------------------------------------------


def test_data_dir_is_taken_after_the_command_too(tmp_path):
    data, other = str(tmp_path / "a"), str(tmp_path / "other")
    run("init", "--name", NAME, "--data-dir", data)
    pid = run("post", "--board", "labor", "hi", "--data-dir", data).stdout.strip()
    assert [p["id"] for p in json.loads(run("posts", "--json", "--data-dir", data).stdout)] == [pid]
    run("peers", "add", "http://example.org:7470", "--data-dir", data)
    assert json.loads(run("peers", "list", "--data-dir", data, "--json").stdout)[0]["url"] == "http://example.org:7470"
    assert json.loads(run("id", "list", "--json", "--data-dir", data).stdout)[0]["name"] == NAME
    assert run("moderators", "list", "--data-dir", data).returncode == 0
    # After the command, it wins over the one before it.
    assert json.loads(run("--data-dir", other, "boards", "--json", "--data-dir", data).stdout)[0]["board"] == "labor"
    # Every command and group lists it in its --help.
    from dazibao.node.cli import cli

    def walk(group, path):
        for name, command in group.commands.items():
            yield [*path, name], command
            if hasattr(command, "commands"):
                yield from walk(command, [*path, name])

    missing = [" ".join(path) for path, command in walk(cli, []) if "data_dir" not in {p.name for p in command.params}]
    assert missing == []
    assert "--data-dir" in run("export", "--help").stdout


# --- keys and passphrases -------------------------------------------------------------------


def test_id_import_takes_what_id_export_wrote(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    dazibao(a, "init", "--name", NAME)
    dazibao(b, "init", "--name", "reader")
    made = json.loads(dazibao(a, "id", "list", "--json").stdout)[0]
    dazibao(a, "id", "export", NAME, "-o", str(tmp_path / "key"))
    wrong = cli_env(DAZIBAO_PASSPHRASE="not the passphrase")
    assert "passphrase" in error_line(dazibao(b, "id", "import", str(tmp_path / "key"), check=False, env=wrong))
    out = json.loads(dazibao(b, "id", "import", str(tmp_path / "key"), "--json").stdout)
    assert out == made
    assert {p["fingerprint"] for p in json.loads(dazibao(b, "id", "list", "--json").stdout)} >= {made["fingerprint"]}
    assert "already here" in error_line(dazibao(b, "id", "import", str(tmp_path / "key"), check=False))
    (tmp_path / "junk").write_bytes(b"not a key file at all")
    assert str(tmp_path / "junk") in error_line(dazibao(b, "id", "import", str(tmp_path / "junk"), check=False))
    # The imported pseudonym signs.
    pid = dazibao(b, "post", "--board", "labor", "--as", NAME, "hi").stdout.strip()
    assert [p["fingerprint"] for p in listing(b) if p["id"] == pid] == [made["fingerprint"]]


def on_terminal(data, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run `dazibao` with a terminal for its prompts, answering each one; (exit status, stderr)."""
    env = cli_env()
    env.pop("DAZIBAO_PASSPHRASE")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dazibao.node", "--data-dir", str(data), *args], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    os.close(slave)
    err, answered = b"", 0
    deadline = time.monotonic() + 120
    try:
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            err += chunk
            asked = err.count(b"Passphrase: ") + err.count(b"Repeat for confirmation: ")
            while answered < asked:
                answer = answers[answered] if answered < len(answers) else ""
                os.write(master, answer.encode() + b"\n")
                answered += 1
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, err.decode("utf-8", "replace")


def test_passphrase_prompts_give_up_after_three_tries(tmp_path):
    data = tmp_path / "a"
    code, err = on_terminal(data, ["init", "--name", NAME],
                            ["one passphrase", "another one", "short", "again one", "and again"])
    assert code == 1
    assert err.count("try again") == 2
    assert err.strip().splitlines()[-1] == "dazibao: error: the two entries differ; gave up after 3 tries"
    assert json.loads(dazibao(data, "id", "list", "--json").stdout) == []

    dazibao(data, "id", "new", NAME)
    code, err = on_terminal(data, ["post", "--board", "labor", "hi"], ["wrong 1", "wrong 2", "wrong 3", PASSPHRASE])
    assert code == 1 and err.count("Passphrase: ") == 3
    assert err.strip().splitlines()[-1].endswith("gave up after 3 tries")
    # A right answer at the second try goes through.
    code, err = on_terminal(data, ["post", "--board", "labor", "hi"], ["wrong 1", PASSPHRASE])
    assert code == 0, err
    assert len(listing(data)) == 1


def test_help_names_the_passphrase_variable_wherever_a_passphrase_is_read(tmp_path):
    for args in (["init"], ["id", "new"], ["id", "import"], ["post"], ["retract"], ["moderate", "hide"],
                 ["moderate", "undo"], ["moderate", "charter"]):
        assert "DAZIBAO_PASSPHRASE" in run(*args, "--help").stdout, args


def test_commands_that_change_something_print_it_as_json(tmp_path):
    data = tmp_path / "a"
    init = json.loads(dazibao(data, "init", "--name", NAME, "--json").stdout)
    assert init["created"] is True and init["pseudonym"]["name"] == NAME
    made = json.loads(dazibao(data, "id", "new", "second", "--json").stdout)
    assert made["name"] == "second" and len(made["public_key"]) == 64
    post = json.loads(dazibao(data, "post", "--board", "labor", "--as", NAME, "hi", "--json").stdout)
    assert post["kind"] == "post" and post["board"] == "labor" and len(post["published"]) == 2  # with the profile
    key = init["pseudonym"]["public_key"]
    follow = json.loads(dazibao(data, "moderators", "add", "labor", made["public_key"], "--json").stdout)
    assert follow["added"] is True
    assert json.loads(dazibao(data, "moderators", "remove", "labor", made["public_key"], "--json").stdout)["removed"]
    hide = json.loads(dazibao(data, "moderate", "hide", "labor", "--post", post["id"], "--reason", "spam",
                              "--as", NAME, "--json").stdout)
    assert hide["action"] == "hide" and hide["target"] == post["id"]
    undo = json.loads(dazibao(data, "moderate", "undo", hide["id"], "--as", NAME, "--json").stdout)
    assert undo["undone"] == hide["id"]
    charter = json.loads(dazibao(data, "moderate", "charter", "labor", "--moderator", key, "--as", NAME,
                                 "--json").stdout)
    assert charter["moderators"] == [key]
    exported = json.loads(dazibao(data, "id", "export", "second", "-o", str(tmp_path / "k"), "--json").stdout)
    assert exported["file"] == str(tmp_path / "k")


# --- retention on import --------------------------------------------------------------------


def test_import_says_how_many_posts_retention_dropped(tmp_path):
    now = now_ms()
    old = make_posts("labor", 4, start_ms=now - 5 * DAY_MS)
    new = make_posts("labor", 3)
    origin = DataDir(tmp_path / "origin")
    origin.create()
    store_with(origin.database, old + new).close()
    dazibao(origin.root, "export", "-o", str(tmp_path / "all.dzb"))
    mirror = DataDir(tmp_path / "mirror")
    mirror.create()
    mirror.config.write_text("retention_days = { labor = 2 }\n", encoding="utf-8")
    out = json.loads(dazibao(mirror.root, "import", str(tmp_path / "all.dzb"), "--json").stdout)
    assert (out["added"], out["expired"], out["duplicates"]) == (3, 4, 0)
    again = dazibao(mirror.root, "import", str(tmp_path / "all.dzb"))
    assert "dropped" not in again.stdout  # now tombstoned: refused, said so on its own line
    fresh = DataDir(tmp_path / "fresh")
    fresh.create()
    fresh.config.write_text("retention_days = { labor = 2 }\n", encoding="utf-8")
    text = dazibao(fresh.root, "import", str(tmp_path / "all.dzb")).stdout
    assert "imported 3 new posts" in text
    assert "dropped 4 posts older than this node's retention for their board" in text
    plain = DataDir(tmp_path / "plain")
    plain.create()
    assert json.loads(dazibao(plain.root, "import", str(tmp_path / "all.dzb"), "--json").stdout)["expired"] == 0
