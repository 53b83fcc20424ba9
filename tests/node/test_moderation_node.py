"""Moderation between real nodes on 127.0.0.1: `dazibao run`, `dazibao sync`, the moderation
commands, real HTTP and real SQLite (docs/moderation.md)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from dazibao.node.authoring import NotStoredError, StoreAuthor
from dazibao.node.store import Store
from dazibao.protocol import messages, moderation, posts
from tests.factories import key, signed

from .procs import NO_QUOTA, NodeProcess, cli_env, dazibao, posts_json

pytestmark = pytest.mark.slow

BOARD = "labor"
SPAMMER = key(400)


def init(tmp_path: Path, name: str) -> Path:
    data = tmp_path / name
    dazibao(data, "init", "--name", name)
    return data


def public_key(data: Path) -> str:
    return json.loads(dazibao(data, "id", "list", "--json").stdout)[0]["public_key"]


def sync(data: Path, url: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(dazibao(data, "sync", url, "--json", env=env).stdout)


def ids(data: Path, board: str = BOARD) -> set[str]:
    return {p["id"] for p in posts_json(data, board)}


def push(url: str, raws: list[bytes]) -> messages.PushResult:
    req = urllib.request.Request(url + "/v1/posts?index=1", data=messages.encode_posts(raws), method="POST",
                                 headers={"Content-Type": "application/x-msgpack"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return messages.decode_push_result(resp.read())


def made(author, board: str, n: int, text: str = "post") -> list[posts.Post]:
    now = int(time.time() * 1000) - 60_000
    return [posts.create_post(author, kind="post", board=board, body=f"{text} {i}", created_at_ms=now + i)
            for i in range(n)]


def refusals(data: Path) -> dict[str, int]:
    return json.loads(dazibao(data, "status", "--json").stdout)["refusals"]


def test_a_block_reaches_followers_only_and_undo_or_unfollow_restores(tmp_path):
    m, f, n = init(tmp_path, "mod"), init(tmp_path, "follower"), init(tmp_path, "other")
    mod = public_key(m)
    spam = made(SPAMMER, BOARD, 3, "spam")
    spam_ids = {p.id.hex() for p in spam}
    with NodeProcess(m) as node_m, NodeProcess(n) as node_n:
        assert push(node_n.url, [p.raw for p in spam]).accepted == 3
        dazibao(f, "moderators", "add", BOARD, mod)
        assert sync(f, node_n.url)["received"] == 3
        assert spam_ids <= ids(f)

        # The moderator blocks the author; its statement reaches the follower and the other node.
        statement = dazibao(m, "moderate", "block", BOARD, "--author", SPAMMER.public_key.hex(),
                            "--reason", "spam", "--as", "mod").stdout.strip()
        assert sync(f, node_m.url)["received"] == 1
        assert not spam_ids & ids(f)
        assert refusals(f) == {"blocked": 3}
        assert sync(n, node_m.url)["received"] == 1
        assert spam_ids <= ids(n)  # it does not follow the moderator: it keeps them
        # The other node still offers them: the follower does not take them back.
        again = sync(f, node_n.url)
        assert again["received"] == 0 and again["skipped_refused"] == 3 and again["carried"] == 3
        assert not spam_ids & ids(f)

        # Undo: the moderator retracts its statement; after a sync the posts come back.
        dazibao(m, "moderate", "undo", statement, "--as", "mod")
        sync(f, node_m.url)
        assert refusals(f) == {}
        assert sync(f, node_n.url)["received"] == 3
        assert spam_ids <= ids(f)

        # Blocked again, then the follower stops following the moderator: back again.
        dazibao(m, "moderate", "block", BOARD, "--author", SPAMMER.public_key.hex(), "--reason", "flood",
                "--as", "mod")
        sync(f, node_m.url)
        assert not spam_ids & ids(f)
        dazibao(f, "moderators", "remove", BOARD, mod)
        assert sync(f, node_n.url)["received"] == 3
        assert spam_ids <= ids(f)


def test_a_running_follower_applies_a_block_pushed_to_it(tmp_path):
    m, f = init(tmp_path, "mod"), init(tmp_path, "follower")
    mod = public_key(m)
    spam = made(SPAMMER, BOARD, 2, "spam")
    env = cli_env(DAZIBAO_MODERATORS=f"{BOARD}={mod}")
    with NodeProcess(f, env=env) as node_f:
        push(node_f.url, [p.raw for p in spam])
        assert {p.id.hex() for p in spam} <= ids(f)
        status = json.loads(dazibao(f, "status", "--json", env=env).stdout)
        assert [r["source"] for r in status["moderators"][BOARD]] == ["config"]
        with NodeProcess(m, peers=(node_f.url,)):
            statement = dazibao(m, "moderate", "block", BOARD, "--author", SPAMMER.public_key.hex(),
                                "--reason", "spam", "--as", "mod").stdout.strip()
            # The moderator's node announces its statement; the follower takes it and drops the posts.
            deadline = time.monotonic() + 30
            while statement not in {p["id"] for p in posts_json(f, BOARD)} and time.monotonic() < deadline:
                time.sleep(0.2)
            assert statement in ids(f)
            assert not {p.id.hex() for p in spam} & ids(f)
            # The running follower's set no longer holds them: it answers as a node without them.
            assert node_f.info()["posts"] == 1
            # Pushed again, they are refused as blocked.
            answer = push(node_f.url, [p.raw for p in spam])
            assert answer.accepted == 0 and {c for _, c in answer.rejected} == {"blocked"}


def test_the_stranger_quota_holds_on_every_ingress_path(tmp_path):
    quota = "3"
    env = cli_env(DAZIBAO_STRANGER_POSTS_PER_DAY=quota, DAZIBAO_REQUIRE_POW="p-pow=8")
    q, p = init(tmp_path, "q"), init(tmp_path, "p")
    strangers = {path: key(500 + i) for i, path in enumerate(("push", "sync", "bundle", "local", "vouch"))}
    with NodeProcess(q, env=env) as node_q:
        # Push: the fourth post of a stranger on a board in a day is refused.
        batch = made(strangers["push"], "p-push", 4)
        answer = push(node_q.url, [x.raw for x in batch])
        assert answer.accepted == 3 and list(answer.rejected) == [(batch[3].id, "quota_posts")]

        # Fetch, by a sync with a node that took them all.
        with Store(p / "dazibao.db") as store:
            store.configure_policy(stranger_posts_per_day=10**9)
            store.ingest(made(strangers["sync"], "p-sync", 4), source="import", now_ms=int(time.time() * 1000))
        with NodeProcess(p, env=cli_env(**NO_QUOTA)) as node_p:
            report = sync(q, node_p.url, env=env)
        assert report["received"] == 3 and [r["code"] for r in report["rejected"]] == ["quota_posts"]

        # A bundle file.
        with Store(p / "dazibao.db") as store:
            store.configure_policy(stranger_posts_per_day=10**9)
            store.ingest(made(strangers["bundle"], "p-bundle", 4), source="import", now_ms=int(time.time() * 1000))
        bundle = tmp_path / "p.dzb"
        dazibao(p, "export", "--board", "p-bundle", "-o", str(bundle))
        imported = json.loads(dazibao(q, "import", "--json", str(bundle), env=env).stdout)
        assert imported["added"] == 3 and imported["refused"] == {"quota_posts": 1}

        # The local write path (the command line's and the web UI's), for a key that is not one
        # of this node's pseudonyms.
        with Store(q / "dazibao.db") as store:
            store.configure_policy(stranger_posts_per_day=3)
            author = StoreAuthor(store)
            # The first post goes with the author's profile: three posts in two calls.
            for i in range(2):
                author.post(strangers["local"], "visitor", board="p-local", body=f"local {i}",
                            now_ms=int(time.time() * 1000) + i)
            with pytest.raises(NotStoredError) as refused:
                author.post(strangers["local"], "visitor", board="p-local", body="one more",
                            now_ms=int(time.time() * 1000) + 10)
            assert refused.value.code == "quota_posts"

        # The node's own pseudonym is never held to it...
        for i in range(5):
            dazibao(q, "post", "--board", "p-mine", f"my post {i}", env=env)
        assert len([x for x in posts_json(q, "p-mine") if x["kind"] == "post"]) == 5
        # ... nor an author one of its pseudonyms vouched for.
        dazibao(q, "moderate", "vouch", "p-vouch", "--author", strangers["vouch"].public_key.hex(),
                "--reason", "trusted", "--as", "q", env=env)
        assert push(node_q.url, [x.raw for x in made(strangers["vouch"], "p-vouch", 5)]).accepted == 5

        # Proof of work: a stranger's post without it is refused; with it, taken.
        plain = made(strangers["push"], "p-pow", 1)[0]
        worked = posts.create_post(strangers["push"], kind="post", board="p-pow", body="worked",
                                   created_at_ms=int(time.time() * 1000) - 1000, work_bits=8)
        answer = push(node_q.url, [plain.raw, worked.raw])
        assert answer.accepted == 1 and list(answer.rejected) == [(plain.id, "pow_required")]
        assert worked.id.hex() in ids(q, "p-pow")
    # Remembered: the sync's, the bundle's and the local write's; the push's was refused before
    # its signature was checked, and a pushed post is never remembered unverified.
    assert refusals(q) == {"pow_required": 1, "quota_posts": 3}


def test_an_object_of_unknown_kind_is_stored_and_forwarded_but_never_listed(tmp_path):
    a, b = init(tmp_path, "a"), init(tmp_path, "b")
    writer = key(600)
    raw = signed([1, "poll", BOARD, writer.public_key, int(time.time() * 1000) - 1000, None, "lunch or dinner?"],
                 writer)
    obj_id = posts.claimed_id(raw)
    with NodeProcess(a) as node_a:
        answer = push(node_a.url, [raw])
        assert answer.accepted == 1, answer
        assert node_a.info()["posts"] == 1
        report = sync(b, node_a.url)
        assert report["received"] == 1
    with Store(b / "dazibao.db") as store:
        assert store.get_raw([obj_id]) == [raw]
        assert store.threads(BOARD) == [] and store.search("lunch") == []
    assert posts_json(b) == [] and posts_json(a) == []


def test_a_running_node_follows_a_moderator_added_by_the_command_line(tmp_path):
    node_dir = init(tmp_path, "node")
    moderator = key(401)
    spam = made(SPAMMER, BOARD, 4, "spam")
    block = moderation.create_statement(moderator, board=BOARD, action="block", subject="author",
                                        target=SPAMMER.public_key, reason="spam",
                                        created_at_ms=int(time.time() * 1000) - 1000)
    with NodeProcess(node_dir) as node:
        # The block is stored, but its moderator is not followed yet: the posts stay.
        assert push(node.url, [p.raw for p in spam] + [block.raw]).accepted == 5
        assert node.info()["posts"] == 5
        # Another process (the command line) follows the moderator: the posts leave the store,
        # and the running node's reconciliation set follows within a moment.
        dazibao(node_dir, "moderators", "add", BOARD, moderator.public_key.hex())
        assert ids(node_dir) == {block.id.hex()}
        deadline = time.monotonic() + 30
        while node.info()["posts"] != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert node.info()["posts"] == 1
        dazibao(node_dir, "moderators", "remove", BOARD, moderator.public_key.hex())
        assert refusals(node_dir) == {}
        assert push(node.url, [p.raw for p in spam]).accepted == 4


async def test_refused_posts_are_not_verified(tmp_path):
    """The cheap path: a remembered id, or a post whose author a followed moderator blocks, is
    refused without its signature being checked (node/service.py, NodeCore.verify)."""
    from dazibao.node import service
    from dazibao.node.config import Config, DataDir
    from dazibao.node.service import NodeCore

    data = DataDir(tmp_path / "core")
    data.create()
    core = NodeCore(data, Config(stranger_posts_per_day=1))
    await core.open()
    checked: list[int] = []
    real = service.verify_decoded

    def counting(batch, now):
        checked.append(len(batch))
        return real(batch, now)

    try:
        moderator = key(402)
        await core.db.call(Store.add_moderator, BOARD, moderator.public_key, source="cli", now_ms=core.now_ms())
        block = moderation.create_statement(moderator, board=BOARD, action="block", subject="author",
                                            target=SPAMMER.public_key, reason="spam", created_at_ms=core.now_ms())
        other = key(403)
        first, second = made(other, BOARD, 2)
        report = await core.ingest_raw([block.raw, first.raw, second.raw], "http://peer.example")
        assert report.rejected == [(second.id, "quota_posts")]
        service.verify_decoded = counting
        forged_blocked = [p.raw[:-64] + bytes(64) for p in made(SPAMMER, BOARD, 3)]
        forged_refused = second.raw[:-64] + bytes(64)
        good, bad = await core.verify([*forged_blocked, forged_refused])
        assert good == [] and [c for _, c in bad] == ["blocked"] * 3 + ["quota_posts"]
        assert checked == []
        # In batch order, with the posts that are checked in between.
        fresh = made(key(404), BOARD, 1)[0]
        # The last signature byte flipped: set to zero, it was no change whenever that byte (the
        # top of S, below 0x10) already was, about one run in sixteen.
        good, bad = await core.verify([forged_blocked[0], fresh.raw, forged_refused,
                                       fresh.raw[:-1] + bytes([fresh.raw[-1] ^ 1])])
        assert [p.id for p in good] == [fresh.id]
        assert [c for _, c in bad] == ["blocked", "quota_posts", "bad_signature"]
        assert checked == [2]
    finally:
        service.verify_decoded = real
        await core.close()
