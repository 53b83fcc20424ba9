"""`dazibao moderators ...` and `dazibao moderate ...` as a member runs them: real processes on
real data folders; one clear line on stderr and exit status 1 for every bad input, and nothing
written."""

from __future__ import annotations

import json
import time

import pytest

from dazibao.node.store import Store
from dazibao.protocol import moderation, posts
from tests.factories import key

from .procs import cli_env, dazibao, posts_json

BOARD = "labor"
OPENER = key(700)
MOD_A, MOD_B = key(701), key(702)
SPAMMER = key(703)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli") / "node"
    dazibao(data, "init", "--name", "organizer")
    return data


def me(data) -> str:
    return json.loads(dazibao(data, "id", "list", "--json").stdout)[0]["public_key"]


def error(data, *args: str) -> str:
    proc = dazibao(data, *args, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dazibao: error: "), proc.stderr
    return lines[0].removeprefix("dazibao: error: ")


def moderators(data, *args: str) -> list[dict]:
    return json.loads(dazibao(data, "moderators", "list", "--json", *args).stdout)


def test_help_says_what_each_command_does(folder):
    for args, words in ((["moderators", "--help"], ["list", "add", "remove", "charter", "block"]),
                        (["moderate", "--help"], ["hide", "block", "vouch", "undo", "public"]),
                        (["moderate", "block", "--help"], ["--post", "--author", "--reason", "--expires", "--as"]),
                        (["moderators", "charter", "--help"], ["--adopt", "opener", "backdate"])):
        out = dazibao(folder, *args).stdout
        for word in words:
            assert word in out, (args, word)


def test_moderators_add_list_remove(folder):
    a, b = MOD_A.public_key.hex(), MOD_B.public_key.hex()
    assert "following" in dazibao(folder, "moderators", "add", BOARD, a).stdout
    assert "already following" in dazibao(folder, "moderators", "add", BOARD, a.upper()).stdout
    dazibao(folder, "moderators", "add", "news", b)
    assert [(m["board"], m["key"], m["source"]) for m in moderators(folder)] == [(BOARD, a, "cli"), ("news", b, "cli")]
    assert [m["key"] for m in moderators(folder, "--board", "news")] == [b]
    text = dazibao(folder, "moderators", "list").stdout
    assert a in text and "[cli]" in text
    status = json.loads(dazibao(folder, "status", "--json").stdout)
    assert [m["key"] for m in status["moderators"][BOARD]] == [a]
    assert "moderators of labor:" in dazibao(folder, "status").stdout
    dazibao(folder, "moderators", "remove", "news", b)
    assert [m["board"] for m in moderators(folder)] == [BOARD]
    dazibao(folder, "moderators", "remove", BOARD, a)
    assert moderators(folder) == []


@pytest.mark.parametrize("args, message", [
    (["moderators", "add", BOARD, "xyz"], "KEY must be a public key: 64 hex digits"),
    (["moderators", "add", BOARD, "ab" * 31], "KEY must be a public key: 64 hex digits"),
    (["moderators", "add", " bad", "ab" * 32], "board ' bad'"),
    (["moderators", "remove", BOARD, "ab" * 32], "is not a moderator followed on 'labor'"),
    (["moderators", "charter", "nowhere"], "no posts on board 'nowhere' here: unknown board"),
    (["moderators", "list", "--board", ""], "board ''"),
    (["moderate", "block", BOARD, "--author", "zz", "--reason", "spam", "--as", "organizer"],
     "--author must be a public key"),
    (["moderate", "block", BOARD, "--post", "abcd", "--reason", "spam", "--as", "organizer"],
     "--post must be a full post id"),
    (["moderate", "block", BOARD, "--reason", "spam", "--as", "organizer"], "give exactly one of --post ID or --author"),
    (["moderate", "vouch", BOARD, "--post", "ab" * 32, "--reason", "trusted", "--as", "organizer"],
     "vouch is for authors only"),
    (["moderate", "hide", BOARD, "--author", "ab" * 32, "--reason", "Spam!", "--as", "organizer"], "--reason takes"),
    (["moderate", "hide", BOARD, "--author", "ab" * 32, "--reason", "spam", "--as", "nobody"],
     "no pseudonym called 'nobody'"),
    (["moderate", "undo", "ab" * 32, "--as", "organizer"], "no moderation statement"),
    (["moderate", "undo", "nothex", "--as", "organizer"], "STATEMENT_ID must be a full post id"),
])
def test_bad_input_is_one_line_and_writes_nothing(folder, args, message):
    before = posts_json(folder)
    assert message in error(folder, *args)
    assert posts_json(folder) == before
    assert moderators(folder) == []


def test_a_missing_option_is_a_usage_error(folder):
    proc = dazibao(folder, "moderate", "block", BOARD, "--author", "ab" * 32, "--as", "organizer", check=False)
    assert proc.returncode == 2 and "--reason" in proc.stderr


def test_moderate_and_undo(tmp_path):
    data = tmp_path / "n"
    dazibao(data, "init", "--name", "organizer")
    now = int(time.time() * 1000)
    spam = posts.create_post(SPAMMER, kind="post", board=BOARD, body="spam", created_at_ms=now - 5000)
    other = posts.create_post(SPAMMER, kind="post", board="news", body="news", created_at_ms=now - 5000)
    with Store(data / "dazibao.db") as store:
        store.ingest([spam, other], source="import", now_ms=now)
    # A post on another board than the one named.
    assert "that post is on board 'news'" in error(data, "moderate", "hide", BOARD, "--post", other.id.hex(),
                                                   "--reason", "spam", "--as", "organizer")
    hide = dazibao(data, "moderate", "hide", BOARD, "--post", spam.id.hex(), "--reason", "off_topic",
                   "--expires", "1.5", "--as", "organizer").stdout.strip()
    block = dazibao(data, "moderate", "block", BOARD, "--author", SPAMMER.public_key.hex(), "--reason", "spam",
                    "--as", "organizer").stdout.strip()
    rows = {p["id"]: p for p in posts_json(data)}
    assert rows[hide]["kind"] == rows[block]["kind"] == "moderation"
    body = rows[hide]["body"].split(" ")
    assert body[:3] == ["hide", "post", "off_topic"] and int(body[3]) > now + 86_400_000
    # The organizer's own block applies on this node at once.
    assert spam.id.hex() not in rows and other.id.hex() in rows
    assert json.loads(dazibao(data, "status", "--json").stdout)["refusals"] == {"blocked": 1}
    assert "refused by policy (remembered): blocked 1" in dazibao(data, "status").stdout
    # Only the pseudonym that signed it can undo it.
    dazibao(data, "id", "new", "second")
    assert "not signed by 'second'" in error(data, "moderate", "undo", block, "--as", "second")
    out = dazibao(data, "moderate", "undo", block, "--as", "organizer").stdout
    assert out.startswith(f"undone {block}")
    assert block not in {p["id"] for p in posts_json(data)}
    assert json.loads(dazibao(data, "status", "--json").stdout)["refusals"] == {}
    assert "no moderation statement" in error(data, "moderate", "undo", block, "--as", "organizer")


def test_the_charter_is_shown_and_adopted(tmp_path):
    data = tmp_path / "n"
    dazibao(data, "init", "--name", "member")
    now = int(time.time() * 1000)
    first = posts.create_post(OPENER, kind="post", board=BOARD, body="welcome", created_at_ms=now - 10_000)
    charter = moderation.create_charter(OPENER, board=BOARD, moderators=[MOD_A.public_key, MOD_B.public_key],
                                        description="No bosses' spies.", created_at_ms=now - 5000)
    with Store(data / "dazibao.db") as store:
        store.ingest([first], source="import", now_ms=now)
        assert "has no charter here" in error(data, "moderators", "charter", BOARD)
        store.ingest([charter], source="import", now_ms=now)
    shown = dazibao(data, "moderators", "charter", BOARD).stdout
    assert MOD_A.public_key.hex() in shown and "No bosses' spies." in shown and "--adopt" in shown
    assert moderators(data) == []
    adopted = json.loads(dazibao(data, "moderators", "charter", BOARD, "--adopt", "--json").stdout)
    assert adopted["adopted"] == [MOD_A.public_key.hex(), MOD_B.public_key.hex()]
    assert sorted((m["key"], m["source"]) for m in moderators(data)) == sorted([
        (MOD_A.public_key.hex(), "charter"), (MOD_B.public_key.hex(), "charter")])
    again = dazibao(data, "moderators", "charter", BOARD, "--adopt").stdout
    assert "now following 0 more moderators" in again


def test_the_moderation_settings(tmp_path):
    from dazibao.node.config import ConfigError, DataDir, load_config

    data = DataDir(tmp_path / "d")
    data.create()
    a, b = MOD_A.public_key.hex(), MOD_B.public_key.hex()
    data.config.write_text(f'moderators = {{ labor = ["{a}", "{b.upper()}"] }}\n'
                           'require_pow = { labor = 12 }\nstranger_posts_per_day = 5\n', encoding="utf-8")
    cfg = load_config(data, environ={})
    assert cfg.moderators == {"labor": (MOD_A.public_key, MOD_B.public_key)}
    assert cfg.require_pow == {"labor": 12} and cfg.stranger_posts_per_day == 5
    assert cfg.stranger_bytes_per_day == 1_048_576
    env = load_config(data, environ={"DAZIBAO_MODERATORS": f"news={a} {b},labor={b}",
                                     "DAZIBAO_REQUIRE_POW": "news=8"})
    assert env.moderators == {"news": (MOD_A.public_key, MOD_B.public_key), "labor": (MOD_B.public_key,)}
    assert env.require_pow == {"news": 8}
    for environ, message in (
        ({"DAZIBAO_MODERATORS": "labor=xyz"}, "is not a public key"),
        ({"DAZIBAO_MODERATORS": "nokey"}, "board=KEY"),
        ({"DAZIBAO_MODERATORS": '{ " bad" = [] }'}, "board ' bad'"),
        ({"DAZIBAO_REQUIRE_POW": "labor=41"}, "give 8 to 40"),
        ({"DAZIBAO_REQUIRE_POW": "labor=7"}, "give 8 to 40"),
        ({"DAZIBAO_STRANGER_POSTS_PER_DAY": "-1"}, "whole number"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(data, environ=environ)


def test_config_moderators_are_followed_when_the_node_opens(tmp_path):
    data = tmp_path / "n"
    dazibao(data, "init", "--name", "member")
    a = MOD_A.public_key.hex()
    env_args = {"DAZIBAO_MODERATORS": f"{BOARD}={a}"}
    dazibao(data, "sync", "http://127.0.0.1:9", check=False, env=cli_env(**env_args))  # opens the node's core
    assert [(m["key"], m["source"]) for m in moderators(data)] == [(a, "config")]
    # Dropped from the setting, dropped from the node; those added by hand stay.
    dazibao(data, "moderators", "add", BOARD, MOD_B.public_key.hex())
    dazibao(data, "sync", "http://127.0.0.1:9", check=False)
    assert [(m["key"], m["source"]) for m in moderators(data)] == [(MOD_B.public_key.hex(), "cli")]


def test_a_member_who_opened_a_board_publishes_its_charter(tmp_path):
    data = tmp_path / "n"
    dazibao(data, "init", "--name", "opener")
    dazibao(data, "post", "--board", BOARD, "--as", "opener", "welcome to the board")
    assert "at least one --moderator" in error(data, "moderate", "charter", BOARD, "--as", "opener")
    assert "--moderator must be a public key" in error(data, "moderate", "charter", BOARD, "--moderator", "zz",
                                                       "--as", "opener")
    made = dazibao(data, "moderate", "charter", BOARD, "--moderator", MOD_A.public_key.hex(),
                   "--description", "Overtime reports only.", "--as", "opener")
    assert made.stderr == ""
    shown = json.loads(dazibao(data, "moderators", "charter", BOARD, "--json").stdout)
    assert shown["id"] == made.stdout.strip()
    # A charter for a board someone else opened is published, but this node says it does not count.
    now = int(time.time() * 1000)
    first = posts.create_post(OPENER, kind="post", board="news", body="first", created_at_ms=now - 10_000)
    with Store(data / "dazibao.db") as store:
        store.ingest([first], source="import", now_ms=now)
    late = dazibao(data, "moderate", "charter", "news", "--description", "mine now", "--as", "opener")
    assert "did not write the oldest post" in late.stderr
