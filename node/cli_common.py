"""What every `dazibao` command shares: the data folder context, one-line errors, passphrases,
times and JSON output.

The command modules (node/cli.py, node/cli_mirror.py) import this one and never each other's
helpers, so that the commands can be spread over modules without an import cycle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from .config import Config, ConfigError, DataDir, load_config
from .keys import KeyStore
from .store import Store, StoreError

__all__ = [
    "MIN_PASSPHRASE_CHARS", "UserError", "fail", "Context", "pass_ctx", "read_passphrase", "new_passphrase",
    "when", "emit_json", "passphrase_option",
]

MIN_PASSPHRASE_CHARS = 8


class UserError(click.ClickException):
    """One clear line on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"dazibao: error: {self.message}", err=True)


def fail(message: str) -> UserError:
    """The error to raise for ``message`` (``raise fail(...) from None``)."""
    return UserError(message)


class Context:
    """The data folder a command works on, and what it opens there."""

    def __init__(self, data_dir: Path) -> None:
        self.data = DataDir(data_dir)

    def config(self, **overrides: Any) -> Config:
        """The folder's settings with ``overrides``; raises UserError for a bad setting."""
        try:
            return load_config(self.data, overrides)
        except ConfigError as exc:
            raise fail(str(exc)) from None

    def require_init(self) -> None:
        """Raises UserError unless the data folder exists."""
        if not self.data.exists():
            raise fail(f"no dazibao data folder at {self.data.root}: run `dazibao init` first")

    def store(self) -> Store:
        """The folder's store, opened, with the node's moderation settings (the stranger quota,
        the work boards ask for) and its local pseudonyms known to it; raises UserError if
        there is none or it cannot be opened."""
        self.require_init()
        config = self.config()
        try:
            store = Store(str(self.data.database), max_bytes=config.max_store_bytes)
        except StoreError as exc:
            raise fail(str(exc)) from None
        store.configure_policy(stranger_posts_per_day=config.stranger_posts_per_day,
                               stranger_bytes_per_day=config.stranger_bytes_per_day,
                               require_pow=config.require_pow)
        # The local pseudonyms are followed on every board and never held to the stranger
        # quota: the store must know them before a command writes (a running node keeps them
        # current too).  Nothing is written when they are already known.
        try:
            store.sync_identities([(p.name, p.public_key) for p in self.keys().list()],
                                  now_ms=int(time.time() * 1000))
        except StoreError:  # a full or locked disk: reads still work
            pass
        return store

    def keys(self) -> KeyStore:
        return KeyStore(self.data.keys)


pass_ctx = click.make_pass_decorator(Context)


def read_passphrase(passphrase_file: str | None, *, confirm: bool) -> str:
    """DAZIBAO_PASSPHRASE, else --passphrase-file, else a hidden prompt on a terminal.

    Raises UserError when the file cannot be read or is not UTF-8 text, or when there is no
    terminal to ask on.
    """
    env = os.environ.get("DAZIBAO_PASSPHRASE")
    if env:
        return env
    if passphrase_file:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            # A UnicodeDecodeError has no strerror, and its text quotes the file's bytes, which
            # may be the passphrase itself: say only what is wrong.
            raise fail(f"cannot read passphrase file {passphrase_file}: it is not UTF-8 text") from None
        except OSError as exc:
            raise fail(f"cannot read passphrase file {passphrase_file}: {exc.strerror or exc}") from None
        return text.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise fail("a passphrase is needed: set DAZIBAO_PASSPHRASE or use --passphrase-file")
    secret: str = click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    return secret


def new_passphrase(passphrase_file: str | None) -> str:
    """A passphrase for a new key file; raises UserError when it is too short."""
    secret = read_passphrase(passphrase_file, confirm=True)
    if len(secret) < MIN_PASSPHRASE_CHARS:
        raise fail(f"the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters")
    return secret


def when(ms: int) -> str:
    """A time in milliseconds as a UTC date and time, to the second."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (names and text as they are, not escaped)."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


passphrase_option = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False), default=None,
    help="Read the passphrase from this file (first line) instead of prompting.",
)
