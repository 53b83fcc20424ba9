"""The `dazibao` command as a member runs it: real processes, real nodes on 127.0.0.1."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from .procs import NodeProcess, cli_env, dazibao, posts_json, wait_until

NAME = "小明"


def _no_env_passphrase() -> dict[str, str]:
    env = cli_env()
    env.pop("DAZIBAO_PASSPHRASE")
    return env


@pytest.mark.parametrize("command", [["init", "--name", "x"], ["id", "new", "y"], ["post", "--board", "b", "hi"]])
def test_a_passphrase_file_that_is_not_utf8_is_one_error_line(tmp_path, command):
    data = tmp_path / "a"
    if command[0] != "init":
        dazibao(data, "init", "--name", "a")
    secret = tmp_path / "passphrase"
    secret.write_bytes(b"\xff\xfe correct horse \xc3\x28 battery\n")
    proc = dazibao(data, *command, "--passphrase-file", str(secret), check=False, env=_no_env_passphrase())
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"dazibao: error: cannot read passphrase file {secret}: it is not UTF-8 text"]
    assert "Traceback" not in proc.stderr and "horse" not in proc.stderr


def test_a_passphrase_file_that_cannot_be_read_is_one_error_line(tmp_path):
    proc = dazibao(tmp_path / "a", "init", "--passphrase-file", str(tmp_path / "missing"), check=False,
                   env=_no_env_passphrase())
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"dazibao: error: cannot read passphrase file {tmp_path / 'missing'}: No such file or directory"]


def test_the_command_line_publishes_the_name_once_per_board(tmp_path):
    data = tmp_path / "a"
    dazibao(data, "init", "--name", NAME)
    first = dazibao(data, "post", "--board", "labor", "one").stdout.strip()
    dazibao(data, "post", "--board", "labor", "--reply-to", first, "two")
    dazibao(data, "post", "--board", "news", "three")
    rows = posts_json(data)
    profiles = sorted((p["board"], p["body"]) for p in rows if p["kind"] == "profile")
    assert profiles == [("labor", NAME), ("news", NAME)]
    # A profile can be retracted but not replied to.
    profile_id = next(p["id"] for p in rows if p["kind"] == "profile" and p["board"] == "news")
    proc = dazibao(data, "post", "--reply-to", profile_id, "to a profile?", check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == "dazibao: error: only posts and replies can be replied to"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode("utf-8")


@pytest.mark.slow
def test_a_pseudonym_made_and_used_on_the_command_line_shows_its_name_on_another_node(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    dazibao(a, "init", "--name", NAME)
    dazibao(b, "init", "--name", "reader")
    fingerprint = json.loads(dazibao(a, "id", "list", "--json").stdout)[0]["fingerprint"]
    # Anti-entropy is made rare, so that the post goes by the eager push of node a, which
    # picks up what `dazibao post` wrote to its store.
    env = cli_env(DAZIBAO_SYNC_INTERVAL_S="3600")
    with NodeProcess(b, env=env) as node_b, NodeProcess(a, peers=(node_b.url,), env=env):
        pid = dazibao(a, "post", "--board", "labor", "we meet at noon").stdout.strip()
        wait_until(lambda: pid in {p["id"] for p in posts_json(b)}, "the post to reach node b")
        ui = json.loads((b / "node.json").read_text())["ui_url"].rstrip("/")

        # What a reader on node b sees: the author line of the thread names the pseudonym.
        def author_line() -> str | None:
            page = _get(f"{ui}/p/{pid}")
            match = re.search(r'<span class="author[^"]*">.*?</span>', page, re.S)
            return match.group(0) if match and "class=\"name\"" in match.group(0) else None

        line = wait_until(author_line, "the author's name on node b's thread page")
        assert f'<bdi class="name">{NAME}</bdi>' in line and fingerprint in line
