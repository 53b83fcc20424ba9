"""Node settings: one table of (name, default, help), a TOML file in the data folder, and the
order in which they override each other: defaults < config.toml < DAZIBAO_* environment <
command-line flags.  docs/running.md lists the same settings; a test checks the two agree.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from dazibao.protocol import limits, peers
from dazibao.protocol.errors import BoardError
from dazibao.protocol.identity import DEFAULT_KDF, KdfParams
from dazibao.protocol.posts import check_board

__all__ = [
    "ConfigError",
    "Setting",
    "SETTINGS",
    "Config",
    "DataDir",
    "default_data_dir",
    "load_config",
    "parse_listen",
    "normalize_peer_url",
    "parse_public_key",
    "CONFIG_TEMPLATE",
]


class ConfigError(Exception):
    """A setting, flag or data folder is not usable.  The message says which and why."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("gossip_listen", "127.0.0.1:7470",
            "host:port of the gossip API. Use 0.0.0.0:7470 on an organizer node that peers reach."),
    Setting("ui_listen", "127.0.0.1:7471",
            "host:port of the member web UI. Keep it on 127.0.0.1: it is for this machine only."),
    Setting("ui_idle_lock_s", 900,
            "seconds without activity after which the web UI locks the pseudonyms unlocked in it (15 minutes)."),
    Setting("ui_language", "",
            "language of the web UI: en or zh-Hans; empty: the browser's preferred language."),
    Setting("publish_language", "en",
            "language of the static copies `dazibao publish` writes: en or zh (Simplified Chinese); "
            "`dazibao publish --lang` overrides it."),
    Setting("public_view_listen", "",
            "host:port of a read-only public web view of the posts (mirrors; e.g. 0.0.0.0:8080); empty: off."),
    Setting("public_view_hosts", [],
            "host names the public web view answers to (Host header), e.g. mirror.example.org; "
            "empty: only the public_view_listen address itself."),
    Setting("public_url", "",
            "URL at which other nodes reach this node's gossip API, shared by peer exchange; empty: not shared."),
    Setting("peers", [], "gossip URLs of peers to sync with, besides those added with `dazibao peers add`."),
    Setting("boards", [], "boards this node carries; empty means every board."),
    Setting("retention_days", {},
            "days to keep the posts of each board, as a table board = days (e.g. { labor = 90 }); "
            "0 or absent: keep everything. Older posts are purged and never accepted again."),
    Setting("moderators", {},
            "moderators this node follows, as a table board = list of public keys in hex (e.g. "
            "{ labor = [\"3b6a...\"] }); added at start, besides those added with `dazibao moderators add`."),
    Setting("stranger_posts_per_day", limits.STRANGER_POSTS_PER_DAY,
            "posts an author who is a stranger on a board (not a local pseudonym, not a followed moderator, "
            "not vouched for) may add to it per UTC day; further ones are refused with quota_posts."),
    Setting("stranger_bytes_per_day", limits.STRANGER_BYTES_PER_DAY,
            "encoded bytes of posts a stranger may add to one board per UTC day (1 MiB); further ones are "
            "refused with quota_bytes."),
    Setting("require_pow", {},
            "proof of work asked of strangers, as a table board = bits (8 to 40, e.g. { labor = 16 }); "
            "their posts without it are refused with pow_required. Absent: none."),
    Setting("sync_interval_s", 30, "mean seconds between two anti-entropy syncs with a random peer (jittered)."),
    Setting("push_fanout", 3, "how many peers a fresh post is announced to at once."),
    Setting("stem", True,
            "send this node's new posts (and those relayed on a stem) to one peer at a time before they are "
            "announced, so that the first peers to hear a post cannot tell which node wrote it (Dandelion++)."),
    Setting("origin_delay_s", 0,
            "most seconds of random delay before each stem hop this node makes, its own posts and relayed "
            "ones alike; 0: none. Less than stem_fluff_timeout_s."),
    Setting("stem_fluff_timeout_s", limits.STEM_FLUFF_TIMEOUT_S,
            "seconds (times 1 to 2) after which a post in stem state that was not heard fluffed is announced "
            "by this node itself, so that a stem peer that drops it loses nothing."),
    Setting("peer_exchange", True, "learn peers from peers (and tell peers about this node's peers)."),
    Setting("max_peers", 64, "most peers remembered; the least healthy are forgotten first."),
    Setting("max_store_bytes", 8_589_934_592,
            "most bytes the database file may take (8 GiB); beyond it new posts are refused with storage_full "
            "and the node keeps serving reads. 0: no cap but the disk."),
    Setting("allow_private_peers", False,
            "accept loopback and private-network addresses learned from other nodes (tests, LANs)."),
    Setting("proxy", "",
            "proxy for every connection to peers: socks5h://127.0.0.1:9050 for Tor, or any socks5h://, "
            "socks5:// or http:// proxy; peer names are then resolved by the proxy, never here. "
            "Needed for .onion peers. Empty: connect directly."),
    Setting("proxy_only", False,
            "refuse to start without a proxy: the node never connects to a peer directly."),
    Setting("tls_cert", "",
            "PEM certificate (chain) file: the gossip API is served over HTTPS with it (and tls_key). "
            "A relative path is read from the data folder. Empty: plain HTTP."),
    Setting("tls_key", "", "PEM private key file of tls_cert."),
    Setting("key_file_memory_mib", 64,
            "memory in MiB that Argon2id spends on the passphrase of each new key file (64, as RFC 9106 "
            "recommends). More makes guessing the passphrase of a stolen key file slower; less (at least 8) "
            "only on a machine short of memory. A key file keeps the cost it was made with."),
    Setting("key_file_passes", 3, "Argon2id passes over that memory for each new key file, 1 to 16 (RFC 9106: 3)."),
    Setting("log_level", "info", "one of debug, info, warning, error."),
)

_BY_NAME = {s.name: s for s in SETTINGS}

CONFIG_TEMPLATE = """\
# dazibao node settings.  Every setting is optional; the value shown is the default.
# Environment variables DAZIBAO_<NAME> and command-line flags override this file.
# See docs/running.md for what each one does.

{body}
"""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def config_template() -> str:
    """The commented config.toml written by `dazibao init`."""
    body = "\n".join(f"# {s.help}\n# {s.name} = {_toml_value(s.default)}\n" for s in SETTINGS)
    return CONFIG_TEMPLATE.format(body=body.rstrip() + "\n")


@dataclass(frozen=True, slots=True)
class Config:
    gossip_listen: str = "127.0.0.1:7470"
    ui_listen: str = "127.0.0.1:7471"
    ui_idle_lock_s: int = 900
    ui_language: str = ""
    publish_language: str = "en"
    public_view_listen: str = ""
    public_view_hosts: tuple[str, ...] = ()
    public_url: str = ""
    peers: tuple[str, ...] = ()
    boards: tuple[str, ...] = ()
    sync_interval_s: int = 30
    push_fanout: int = 3
    stem: bool = True
    origin_delay_s: int = 0
    stem_fluff_timeout_s: int = limits.STEM_FLUFF_TIMEOUT_S
    peer_exchange: bool = True
    max_peers: int = 64
    max_store_bytes: int = 8_589_934_592
    allow_private_peers: bool = False
    proxy: str = ""
    proxy_only: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    key_file_memory_mib: int = 64
    key_file_passes: int = 3
    log_level: str = "info"
    retention_days: Mapping[str, int] = field(default_factory=dict)
    #: board -> public keys (32 bytes each) of the moderators followed there.
    moderators: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    stranger_posts_per_day: int = limits.STRANGER_POSTS_PER_DAY
    stranger_bytes_per_day: int = limits.STRANGER_BYTES_PER_DAY
    require_pow: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def carries(self, board: str) -> bool:
        """Whether this node keeps posts of ``board``."""
        return not self.boards or board in self.boards

    def key_file_kdf(self) -> KdfParams:
        """The Argon2id cost of new key files (docs/protocol.md, "Encrypted key files")."""
        return replace(DEFAULT_KDF, memory_kib=self.key_file_memory_mib * 1024, iterations=self.key_file_passes)


def default_data_dir() -> Path:
    """The user's data folder for dazibao (e.g. ~/.local/share/dazibao on Linux)."""
    return Path(platformdirs.user_data_dir("dazibao", appauthor=False))


@dataclass(frozen=True, slots=True)
class DataDir:
    """The layout of a node's data folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def database(self) -> Path:
        return self.root / "dazibao.db"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def node_info(self) -> Path:
        """Written by a running node: its pid and listening URLs (removed when it stops)."""
        return self.root / "node.json"

    def exists(self) -> bool:
        return self.config.is_file()

    def running_node(self) -> dict[str, Any] | None:
        """node.json of a node that is running on this folder now, or None.

        A node.json left behind by a node that was killed names a dead process: ignored.
        """
        try:
            info = json.loads(self.node_info.read_text(encoding="utf-8"))
            pid = int(info["pid"])
            if pid != os.getpid():
                os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return info if pid != os.getpid() else None

    def create(self) -> bool:
        """Create the folder (mode 0700) and a commented config file.  True if it was new."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.keys.mkdir(mode=0o700, exist_ok=True)
        if self.config.exists():
            return False
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(config_template())
        return True


def parse_listen(value: str, what: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6).  Raises ConfigError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what}: expected HOST:PORT, got {value!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{what}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{what}: port {number} is out of range")
    return host, number


def normalize_peer_url(url: str, *, proxy: str | None = None) -> str:
    """Check and normalize a peer's gossip URL to ``scheme://host:port`` (``#spki=PIN`` kept).
    With ``proxy`` given (the node's proxy setting, "" for none), a ``.onion`` URL is refused
    unless there is a proxy.  Raises ConfigError."""
    try:
        if proxy is None:
            return peers.normalize_peer_url(url)
        return peers.check_transport(url, proxy=bool(proxy))
    except peers.PeerAddressError as exc:
        raise ConfigError(f"{exc.message} [{exc.code}]") from None


def _coerce(name: str, value: Any, source: str) -> Any:
    default = _BY_NAME[name].default
    where = f"{name} (from {source})"
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(default, int):
        try:
            number = int(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or number < 0:
            raise ConfigError(f"{where}: expected a whole number >= 0")
        return number
    if name == "moderators":
        return _coerce_moderators(value, where)
    if isinstance(default, dict):
        table = _coerce_table(value, where)
        if name == "require_pow":
            for board, bits in table.items():
                if not limits.MIN_POW_BITS <= bits <= limits.MAX_POW_BITS:
                    raise ConfigError(f"{where}: board {board!r}: work of {bits} bits; "
                                      f"give {limits.MIN_POW_BITS} to {limits.MAX_POW_BITS}")
        return table
    if isinstance(default, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string")
    return value


def _board_pairs(text: str, where: str, form: str) -> dict[str, Any] | list[tuple[str, str]]:
    """An environment variable's table by board: an inline TOML table (``{ "a,b" = 7 }``, for
    names with , or =), parsed; else ``board=value`` items separated by commas, split (the last
    ``=`` separates).  Raises ConfigError for text of neither form."""
    text = text.strip()
    try:
        if text.startswith("{"):
            table = tomllib.loads(f"v = {text}")["v"]
            if not isinstance(table, dict):
                raise ValueError(text)
            return table
        pairs = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            board, sep, rest = item.rpartition("=")
            if not sep:
                raise ValueError(item)
            pairs.append((board.strip(), rest))
        return pairs
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{where}: expected {form} pairs separated by commas") from None


def _coerce_table(value: Any, where: str) -> dict[str, int]:
    """A table of whole numbers >= 0 by board: a TOML table, or in an environment variable
    ``board=days,board=days`` or an inline TOML table (``{ "a,b" = 7 }``) for names with , or =."""
    if isinstance(value, str):
        try:
            pairs = _board_pairs(value, where, "board=days")
            value = pairs if isinstance(pairs, dict) else {board: int(number) for board, number in pairs}
        except ValueError:
            raise ConfigError(f"{where}: expected board=days pairs separated by commas") from None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in value.items()
    ):
        raise ConfigError(f"{where}: expected a table of board = whole number of days >= 0")
    for board in value:
        try:
            check_board(board)
        except BoardError as exc:
            raise ConfigError(f"{where}: board {board!r}: {exc.message}") from None
    return dict(value)


_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def parse_public_key(text: str) -> bytes:
    """A public key given as 64 hex digits.  Raises ConfigError."""
    text = text.strip()
    if not _HEX_KEY.fullmatch(text):
        raise ConfigError(f"{text[:80]!r} is not a public key: give its 64 hex digits")
    return bytes.fromhex(text)


def _coerce_moderators(value: Any, where: str) -> dict[str, tuple[bytes, ...]]:
    """Moderators by board: a TOML table of lists of hex keys, or in an environment variable
    ``board=KEY KEY,board=KEY`` or an inline TOML table."""
    if isinstance(value, str):
        pairs = _board_pairs(value, where, "board=KEY")
        if isinstance(pairs, dict):
            value = pairs
        else:
            value = {}
            for board, keys in pairs:
                value.setdefault(board, []).extend(keys.split())
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in value.items()
    ):
        raise ConfigError(f"{where}: expected a table of board = list of public keys in hex")
    out: dict[str, tuple[bytes, ...]] = {}
    for board, keys in value.items():
        try:
            check_board(board)
        except BoardError as exc:
            raise ConfigError(f"{where}: board {board!r}: {exc.message}") from None
        try:
            parsed = tuple(dict.fromkeys(parse_public_key(k) for k in keys))
        except ConfigError as exc:
            raise ConfigError(f"{where}: board {board!r}: {exc}") from None
        if len(parsed) > limits.MAX_MODERATORS_PER_BOARD:
            raise ConfigError(f"{where}: board {board!r}: at most {limits.MAX_MODERATORS_PER_BOARD} moderators")
        out[board] = parsed
    return out


def _validate(cfg: Config) -> Config:
    parse_listen(cfg.gossip_listen, "gossip_listen")
    parse_listen(cfg.ui_listen, "ui_listen")
    if cfg.public_view_listen:
        _, view_port = parse_listen(cfg.public_view_listen, "public_view_listen")
        if view_port and cfg.public_view_listen in (cfg.ui_listen, cfg.gossip_listen):
            raise ConfigError("public_view_listen must be a listener of its own, not ui_listen or gossip_listen")
    public_view_hosts = tuple(_view_host(h) for h in cfg.public_view_hosts)
    if cfg.proxy:
        # Imported here: node/transport.py loads aiohttp, which most commands never need.
        from .transport import ProxyError, parse_proxy

        try:
            parse_proxy(cfg.proxy)
        except ProxyError as exc:
            raise ConfigError(f"proxy: {exc}") from None
    elif cfg.proxy_only:
        raise ConfigError("proxy_only is set but proxy is empty: set proxy (socks5h://127.0.0.1:9050 for Tor), "
                          "or unset proxy_only to allow direct connections")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("tls_cert and tls_key go together: set both to serve HTTPS, or neither")
    peers = tuple(normalize_peer_url(p, proxy=cfg.proxy) for p in cfg.peers)
    # This node's own address may be an onion service without a proxy: peers call it, not it.
    public_url = normalize_peer_url(cfg.public_url) if cfg.public_url else ""
    for board in cfg.boards:
        try:
            check_board(board)
        except BoardError as exc:
            raise ConfigError(f"boards: {exc.message}") from None
    if cfg.sync_interval_s < 1:
        raise ConfigError("sync_interval_s must be at least 1")
    if cfg.ui_idle_lock_s < 1:
        raise ConfigError("ui_idle_lock_s must be at least 1")
    low, high = limits.KDF_MIN_MEMORY_KIB // 1024, limits.KDF_MAX_MEMORY_KIB // 1024
    if not low <= cfg.key_file_memory_mib <= high:
        raise ConfigError(f"key_file_memory_mib must be {low} to {high} (MiB)")
    if not limits.KDF_MIN_ITERATIONS <= cfg.key_file_passes <= limits.KDF_MAX_ITERATIONS:
        raise ConfigError(f"key_file_passes must be {limits.KDF_MIN_ITERATIONS} to {limits.KDF_MAX_ITERATIONS}")
    if cfg.ui_language not in ("", "en", "zh-Hans"):
        raise ConfigError("ui_language must be en, zh-Hans or empty (the browser's language)")
    if cfg.publish_language not in ("en", "zh"):
        raise ConfigError("publish_language must be en or zh")
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level must be one of debug, info, warning, error")
    if cfg.max_peers < 1:
        raise ConfigError("max_peers must be at least 1")
    if cfg.stem_fluff_timeout_s < 1:
        raise ConfigError("stem_fluff_timeout_s must be at least 1")
    if cfg.origin_delay_s >= cfg.stem_fluff_timeout_s:
        raise ConfigError("origin_delay_s must be less than stem_fluff_timeout_s, or every stem would be "
                          "fluffed by the timer")
    return replace(cfg, peers=peers, public_url=public_url, public_view_hosts=public_view_hosts)


_VIEW_HOST = re.compile(r"^(?:(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                        r"|\[[0-9a-f:.]+\]"  # an IPv6 address
                        r")(?::[0-9]{1,5})?$")


def _view_host(value: str) -> str:
    """A ``public_view_hosts`` entry, lower-cased: a host name or address, optionally with :port."""
    host = value.strip().lower()
    if not _VIEW_HOST.match(host) or len(host) > 260:
        raise ConfigError(f"public_view_hosts: {value!r} is not a host name (such as mirror.example.org)")
    return host


def load_config(data: DataDir, overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read config.toml (if any), then DAZIBAO_* variables, then ``overrides`` (flags).

    Raises ConfigError naming the setting and where it came from.
    """
    values: dict[str, Any] = {}
    if data.config.is_file():
        try:
            raw = tomllib.loads(data.config.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{data.config}: not valid TOML: {exc}") from None
        for name, value in raw.items():
            if name not in _BY_NAME:
                raise ConfigError(f"{data.config}: unknown setting {name!r}")
            values[name] = _coerce(name, value, "config.toml")
    env = os.environ if environ is None else environ
    for setting in SETTINGS:
        key = "DAZIBAO_" + setting.name.upper()
        if key in env:
            values[setting.name] = _coerce(setting.name, env[key], key)
    for name, value in (overrides or {}).items():
        if value is None or value == ():
            continue
        values[name] = _coerce(name, value, "command line")
    known = {f.name for f in fields(Config)}
    return _validate(Config(**{k: v for k, v in values.items() if k in known}))
