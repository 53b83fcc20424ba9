"""Settings: the table, the file, the environment and flags, and what each refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dazibao.node.config import (
    SETTINGS,
    ConfigError,
    DataDir,
    _toml_value,
    config_template,
    load_config,
    normalize_peer_url,
    parse_listen,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "running.md"


def test_every_setting_is_documented_with_its_default():
    text = DOCS.read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| `([^`]*)` \|", text, re.M)}
    assert rows == {s.name: _toml_value(s.default) for s in SETTINGS}


def test_defaults_and_template(tmp_path):
    data = DataDir(tmp_path / "d")
    assert data.create() is True
    assert data.create() is False
    assert (data.config.stat().st_mode & 0o777) == 0o600
    assert (data.root.stat().st_mode & 0o777) == 0o700
    cfg = load_config(data, environ={})
    assert cfg.gossip_listen == "127.0.0.1:7470" and cfg.ui_listen == "127.0.0.1:7471"
    assert cfg.carries("anything")
    assert all(f"# {s.name} = " in config_template() for s in SETTINGS)


def test_precedence_file_env_flags(tmp_path):
    data = DataDir(tmp_path / "d")
    data.create()
    data.config.write_text('sync_interval_s = 10\nboards = ["劳动", "labor"]\npush_fanout = 5\n', encoding="utf-8")
    cfg = load_config(data, environ={"DAZIBAO_SYNC_INTERVAL_S": "20"}, overrides={"push_fanout": 1})
    assert cfg.sync_interval_s == 20 and cfg.push_fanout == 1 and cfg.boards == ("劳动", "labor")
    assert cfg.carries("劳动") and not cfg.carries("other")


@pytest.mark.parametrize("text,needle", [
    ("nonsense = 1\n", "unknown setting"),
    ("sync_interval_s = 'soon'\n", "sync_interval_s"),
    ("sync_interval_s = 0\n", "sync_interval_s"),
    ("boards = ['bad\u202ename']\n", "boards"),
    ("gossip_listen = 'nohost'\n", "gossip_listen"),
    ("peers = ['ftp://x']\n", "http"),
    ("= broken", "TOML"),
    ("log_level = 'loud'\n", "log_level"),
])
def test_bad_config_is_refused_by_name(tmp_path, text, needle):
    data = DataDir(tmp_path / "d")
    data.create()
    data.config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        load_config(data, environ={})


@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:7470", "http://127.0.0.1:7470"),
    ("http://Example.org", "http://example.org:80"),
    ("https://example.org/", "https://example.org:443"),
    ("http://[::1]:9", "http://[::1]:9"),
])
def test_peer_urls_normalized(url, expected):
    assert normalize_peer_url(url) == expected


@pytest.mark.parametrize("url", [
    "ftp://x", "http://", "http://u:p@host", "http://host/path", "http://host?q=1", "http://host:99999",
    "javascript:alert(1)", "x" * 600,
])
def test_bad_peer_urls(url):
    with pytest.raises(ConfigError):
        normalize_peer_url(url)


def test_parse_listen():
    assert parse_listen("[::1]:80", "x") == ("::1", 80)
    for bad in ("80", ":80", "host:http", "host:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad, "x")
