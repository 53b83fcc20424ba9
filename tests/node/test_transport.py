"""Transport between real nodes: through a real SOCKS5 proxy (microsocks), over TLS with a
pinned self-signed key, onion services through a real Tor, and the refusal of .onion peers
without a proxy (docs/privacy.md; docs/protocol.md, "Peer URLs").  Every socket is on
127.0.0.0/8."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from dazibao.node.api import PEER_HEADER, make_gossip_app
from dazibao.node.cli_transport import set_settings
from dazibao.node.config import Config, ConfigError, DataDir, load_config
from dazibao.node.service import NodeCore
from dazibao.node.sync import PeerClient, PeerError
from dazibao.node.transport import open_session, parse_proxy, pin_of_certificate, server_ssl_context
from dazibao.protocol import identity, messages, peers, posts

from .procs import NodeProcess, cli_env, dazibao, post_ids, wait_until
from .transport_helpers import Microsocks, Relay, TorProcess, free_port, self_signed

ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"


def make_node(tmp_path, name: str, **env: str):
    data = tmp_path / name
    dazibao(data, "init", "--name", f"{name}-member", env=cli_env(**env))
    return data


# --- TLS with a pinned key (in process: a canary server that records every request) ----------


class Canary:
    """A gossip-shaped HTTPS server that records every request it receives."""

    def __init__(self, cert, key) -> None:
        self.requests: list[str] = []
        self.ssl = server_ssl_context(cert, key)

    async def start(self) -> str:
        async def info(request: web.Request) -> web.Response:
            self.requests.append(request.path)
            return web.json_response({"protocol": 1, "boards": ["labor"], "all_boards": False})

        app = web.Application()
        app.router.add_get("/v1/info", info)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        return f"https://127.0.0.1:{self.runner.addresses[0][1]}"

    async def close(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def canary(tmp_path):
    cert, key = self_signed(tmp_path / "tls")
    server = Canary(cert, key)
    url = await server.start()
    yield server, url, pin_of_certificate(cert)
    await server.close()


async def test_a_pinned_key_is_checked_before_a_byte_of_request(tmp_path, canary):
    server, url, pin = canary
    other = pin_of_certificate(self_signed(tmp_path / "other", "other")[0])
    async with open_session(None) as session:
        # The right pin: the self-signed server is reached (its chain is not checked).
        info = await PeerClient(session, f"{url}#{pin}").info()
        assert info["boards"] == ["labor"] and server.requests == ["/v1/info"]
        # A wrong pin: refused, and the server never saw a request.
        with pytest.raises(PeerError) as exc:
            await PeerClient(session, f"{url}#{other}").info()
        assert exc.value.code == "pin_mismatch"
        # No pin: the system's trust store, which does not know a self-signed certificate.
        with pytest.raises(PeerError) as exc:
            await PeerClient(session, url).info()
        assert exc.value.code == "tls_untrusted"
    assert server.requests == ["/v1/info"]


async def test_a_wrong_pin_is_refused_through_the_proxy_too(tmp_path, canary):
    server, url, pin = canary
    other = pin_of_certificate(self_signed(tmp_path / "other", "other")[0])
    proxy = Microsocks(tmp_path)
    try:
        async with open_session(parse_proxy(proxy.url)) as session:
            with pytest.raises(PeerError) as exc:
                await PeerClient(session, f"{url}#{other}", proxied=True).info()
            assert exc.value.code == "pin_mismatch"
            assert server.requests == []
            await PeerClient(session, f"{url}#{pin}", proxied=True).info()
            assert server.requests == ["/v1/info"]
    finally:
        proxy.close()


async def test_an_onion_peer_without_a_proxy_is_never_dialled():
    async with open_session(None) as session:
        with pytest.raises(PeerError) as exc:
            await PeerClient(session, f"http://{ONION}:7470").info()
    assert exc.value.code == "onion_needs_proxy"


async def test_a_proxy_that_is_down_is_named_and_nothing_goes_direct(canary):
    server, url, pin = canary
    down = parse_proxy(f"socks5h://127.0.0.1:{free_port()}")
    async with open_session(down) as session:
        with pytest.raises(PeerError) as exc:
            await PeerClient(session, f"{url}#{pin}", proxied=True).info()
    assert exc.value.code == "proxy_unreachable"
    assert server.requests == []


@pytest.mark.slow
def test_two_nodes_sync_over_https_with_a_pinned_self_signed_key(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    cert, key = self_signed(tmp_path / "tls")
    tls = cli_env(DAZIBAO_TLS_CERT=str(cert), DAZIBAO_TLS_KEY=str(key))
    assert dazibao(b, "tls", "pin", env=tls).stdout.strip() == pin_of_certificate(cert)
    with NodeProcess(b, env=tls) as node_b:
        assert node_b.url.startswith("https://")
        pinned = f"{node_b.url}#{pin_of_certificate(cert)}"
        pid = dazibao(b, "post", "--board", "labor", "over TLS").stdout.strip()
        report = json.loads(dazibao(a, "sync", pinned, "--json").stdout)
        assert report["received"] >= 1 and pid in post_ids(a)
        wrong = f"{node_b.url}#{peers.encode_pin(bytes(32))}"
        failed = dazibao(a, "sync", wrong, check=False)
        assert failed.returncode != 0 and "pin_mismatch" in failed.stderr


# --- through a real SOCKS5 proxy ----------------------------------------------------------------


@pytest.mark.slow
def test_sync_through_the_proxy_resolves_names_at_the_proxy(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    # The peer's name exists only in the proxy's own /etc/hosts: the sync can succeed only if
    # this node hands the name to the proxy and never resolves it itself.
    name = "peer-b.dazibao.test"
    proxy = Microsocks(tmp_path, hosts={name: "127.0.0.1"})
    try:
        with NodeProcess(b) as node_b:
            pid = dazibao(b, "post", "--board", "labor", "through the proxy").stdout.strip()
            url = node_b.url.replace("127.0.0.1", name)
            direct = dazibao(a, "sync", url, check=False)
            assert direct.returncode != 0 and "unreachable" in direct.stderr
            report = json.loads(dazibao(a, "sync", url, "--json", env=cli_env(DAZIBAO_PROXY=proxy.url)).stdout)
            assert report["received"] >= 1 and pid in post_ids(a)
    finally:
        proxy.close()


@pytest.mark.slow
def test_a_running_node_with_a_proxy_never_connects_directly(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    # microsocks makes its connections from 127.0.0.2; the relay in front of node b records
    # where each connection came from: any from 127.0.0.1 would be a direct one.
    proxy = Microsocks(tmp_path, bind="127.0.0.2")
    env = cli_env(DAZIBAO_PROXY=proxy.url, DAZIBAO_SYNC_INTERVAL_S="1", DAZIBAO_PROXY_ONLY="true")
    try:
        with NodeProcess(b) as node_b:
            relay = Relay(("127.0.0.1", int(node_b.url.rsplit(":", 1)[1])))
            try:
                with NodeProcess(a, peers=(f"http://127.0.0.1:{relay.port}",), env=env):
                    pid = dazibao(a, "post", "--board", "labor", "pushed through the proxy").stdout.strip()
                    wait_until(lambda: pid in post_ids(b), "the post to reach node b through the proxy")
                assert relay.sources and set(relay.sources) == {"127.0.0.2"}
            finally:
                relay.close()
    finally:
        proxy.close()


@pytest.mark.slow
def test_the_log_names_no_peer_at_info_level(tmp_path):
    a = make_node(tmp_path, "a")
    port = free_port()  # nothing listens there: every sync fails, and is logged
    peer = f"http://127.0.0.1:{port}"
    with NodeProcess(a, peers=(peer,), env=cli_env(DAZIBAO_SYNC_INTERVAL_S="1")) as node_a:
        wait_until(lambda: "sync failed: unreachable" in node_a.log.read_text(), "a failed sync in the log")
    assert f":{port}" not in node_a.log.read_text()


def test_onion_peers_need_a_proxy_in_the_cli_and_the_config(tmp_path):
    a = make_node(tmp_path, "a")
    refused = dazibao(a, "peers", "add", f"http://{ONION}:7470", check=False)
    assert refused.returncode != 0 and "onion_needs_proxy" in refused.stderr
    added = dazibao(a, "peers", "add", f"http://{ONION}:7470",
                    env=cli_env(DAZIBAO_PROXY="socks5h://127.0.0.1:9050"))
    assert ONION in added.stdout
    nowhere = DataDir(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="onion_needs_proxy"):
        load_config(nowhere, environ={"DAZIBAO_PEERS": f"http://{ONION}"})
    assert load_config(nowhere, environ={"DAZIBAO_PEERS": f"http://{ONION}", "DAZIBAO_PROXY": "socks5h://127.0.0.1:9050"})
    # This node's own onion address needs no proxy: peers call it.
    assert load_config(nowhere, environ={"DAZIBAO_PUBLIC_URL": f"http://{ONION}"}).public_url
    with pytest.raises(ConfigError, match="proxy_only"):
        load_config(nowhere, environ={"DAZIBAO_PROXY_ONLY": "1"})


# --- a pushed post's source: never the sender's address ------------------------------------------


async def test_a_pushed_post_records_no_peer_address(tmp_path, aiohttp_client):
    data = DataDir(tmp_path / "node")
    data.create()
    core = NodeCore(data, Config())
    await core.open()
    try:
        client = await aiohttp_client(make_gossip_app(core))
        key = identity.SigningKey(bytes([9]) * 32)
        now = int(time.time() * 1000) - 1000
        first = posts.create_post(key, kind="post", board="labor", body="one", created_at_ms=now)
        second = posts.create_post(key, kind="post", board="labor", body="two", created_at_ms=now + 1)
        resp = await client.post("/v1/posts", data=messages.encode_posts([first.raw]),
                                 headers={PEER_HEADER: "http://node.example.org:7470"})
        assert resp.status == 200, await resp.text()
        resp = await client.post("/v1/posts", data=messages.encode_posts([second.raw]))
        assert resp.status == 200, await resp.text()
    finally:
        await core.close()
    with sqlite3.connect(data.database) as db:
        sources = dict(db.execute("SELECT body, source FROM posts WHERE kind = 'post'").fetchall())
    # Neither the caller's IP address nor its declared URL: a seized database does not say which
    # node gave this one which post (docs/privacy.md).
    assert sources == {"one": "peer", "two": "peer"}


# --- an onion service through a real Tor's control port ---------------------------------------


@pytest.mark.slow
def test_onion_create_sets_public_url_and_peers_are_told(tmp_path):
    tor = TorProcess(tmp_path)
    try:
        a = make_node(tmp_path, "a")
        out = json.loads(dazibao(a, "onion", "create", "--control", f"127.0.0.1:{tor.control_port}", "--json").stdout)
        onion = out["onion"]
        assert peers.normalize_peer_url(out["public_url"]) == f"http://{onion}:80" == out["public_url"]
        # Asked again while it runs: the same service.
        again = json.loads(dazibao(a, "onion", "create", "--control", f"127.0.0.1:{tor.control_port}",
                                   "--json").stdout)
        assert again["onion"] == onion
        # A new Tor knows nothing of it; the key kept in the data folder gives the same address.
        tor.close()
        tor = TorProcess(tmp_path / "again")
        again = json.loads(dazibao(a, "onion", "create", "--control", f"127.0.0.1:{tor.control_port}",
                                   "--json").stdout)
        assert again["onion"] == onion
        assert (a / "onion" / "service_key").stat().st_mode & 0o077 == 0
        with NodeProcess(a) as node_a:
            with urllib.request.urlopen(node_a.url + "/v1/peers", timeout=10) as resp:
                advertised = json.loads(resp.read())["peers"]
        assert advertised[0] == f"http://{onion}:80"
    finally:
        tor.close()


def test_the_proxy_setting_is_checked():
    for good in ("socks5h://127.0.0.1:9050", "socks5://u:p@127.0.0.1:1080", "http://proxy.lan:3128"):
        assert parse_proxy(good).port
    assert parse_proxy("socks5h://a%40b:p@127.0.0.1:9050").username == "a@b"
    for bad in ("socks4://127.0.0.1:9050", "socks5h://127.0.0.1", "127.0.0.1:9050", "socks5h://h:1/x"):
        with pytest.raises(ValueError):
            parse_proxy(bad)
    with pytest.raises(ConfigError, match="proxy"):
        load_config(DataDir(Path("/nonexistent")), environ={"DAZIBAO_PROXY": "socks4://127.0.0.1:9050"})
    with pytest.raises(ConfigError, match="tls_key"):
        load_config(DataDir(Path("/nonexistent")), environ={"DAZIBAO_TLS_CERT": "cert.pem"})


@pytest.mark.slow
def test_tls_create_makes_a_key_pair_the_node_can_serve_and_prints_its_pin(tmp_path):
    a = make_node(tmp_path, "a")
    made = json.loads(dazibao(a, "tls", "create", "--name", "organizer.example", "--json").stdout)
    assert (a / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    config = load_config(DataDir(a), environ={})
    assert (config.tls_cert, config.tls_key) == ("tls/cert.pem", "tls/key.pem")
    server_ssl_context(a / config.tls_cert, a / config.tls_key)
    assert dazibao(a, "tls", "pin").stdout.strip() == made["pin"] == pin_of_certificate(a / "tls" / "cert.pem")
    # A second one would silently change the pin that peers hold: refused.
    again = dazibao(a, "tls", "create", check=False)
    assert again.returncode != 0 and "already" in again.stderr
    # A key that is not the certificate's stops the node with one line, before it listens.
    other_key = self_signed(tmp_path / "other")[1]
    bad = dazibao(a, "run", "--gossip-listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0", check=False,
                  env=cli_env(DAZIBAO_TLS_KEY=str(other_key)), timeout=60)
    assert bad.returncode == 1 and "do not make a key pair" in bad.stderr and "Traceback" not in bad.stderr


def test_set_settings_replaces_or_adds_a_line_outside_any_table(tmp_path):
    data = DataDir(tmp_path / "n")
    data.create()
    data.config.write_text(data.config.read_text() + 'public_url = "http://old.example.org"\n'
                           "[retention_days]\nlabor = 3\n")
    set_settings(data, {"public_url": f"http://{ONION}:80", "tls_cert": "c.pem", "tls_key": "k.pem"})
    config = load_config(data, environ={})
    assert config.public_url == f"http://{ONION}:80" and config.retention_days == {"labor": 3}
    assert (config.tls_cert, config.tls_key) == ("c.pem", "k.pem")
    # A value the settings refuse leaves the file as it was.
    before = data.config.read_text()
    with pytest.raises(ConfigError):
        set_settings(data, {"tls_key": ""})
    assert data.config.read_text() == before
