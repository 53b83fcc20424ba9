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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from dazibao.protocol import posts
from dazibao.protocol.identity import SigningKey

from .config import Config, ConfigError, DataDir, load_config
from .keys import KeyStore, Pseudonym
from .store import Store, StoreError

__all__ = [
    "MIN_PASSPHRASE_CHARS", "UserError", "fail", "Context", "pass_ctx", "read_passphrase", "new_passphrase",
    "when", "emit_json", "passphrase_option", "json_option", "warn", "warn_unknown_boards", "resolve_post_id",
    "READER_KINDS", "reader_board_counts", "add_data_dir_options", "PROMPT_ATTEMPTS", "unlock_with_retries",
]

T = TypeVar("T")

MIN_PASSPHRASE_CHARS = 8
#: How many times a passphrase prompt asks before it gives up.
PROMPT_ATTEMPTS = 3
#: The shortest post id prefix taken where a post id is asked for (`dazibao posts` shows 12).
MIN_ID_PREFIX = 8
#: What a reader calls a post: posts and replies, not retractions, profiles, moderation
#: statements, charters or kinds this version does not know.
READER_KINDS = (posts.KIND_POST, posts.KIND_REPLY)


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
        """The key folder; new key files get the Argon2id cost of the config's key_file_* settings."""
        return KeyStore(self.data.keys, self.config().key_file_kdf())


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
    if not confirm:
        secret: str = click.prompt("Passphrase", hide_input=True, default="", show_default=False)
        return secret
    return _prompt_new()


def _prompt_new() -> str:
    """A new passphrase typed twice, at most PROMPT_ATTEMPTS tries; then UserError."""
    for attempt in range(1, PROMPT_ATTEMPTS + 1):
        secret: str = click.prompt("Passphrase", hide_input=True, default="", show_default=False)
        if len(secret) < MIN_PASSPHRASE_CHARS:
            problem = f"the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"
        elif click.prompt("Repeat for confirmation", hide_input=True, default="", show_default=False) != secret:
            problem = "the two entries differ"
        else:
            return secret
        if attempt < PROMPT_ATTEMPTS:
            click.echo(f"{problem}; try again", err=True)
        else:
            raise fail(f"{problem}; gave up after {PROMPT_ATTEMPTS} tries")
    raise AssertionError("unreachable")


def new_passphrase(passphrase_file: str | None) -> str:
    """A passphrase for a new key file; raises UserError when it is too short."""
    secret = read_passphrase(passphrase_file, confirm=True)
    if len(secret) < MIN_PASSPHRASE_CHARS:
        raise fail(f"the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters")
    return secret


_WRONG_PASSPHRASE_CODES = ("wrong_passphrase",)


def unlock_with_retries(unlock: Callable[[str], T], passphrase_file: str | None) -> T:
    """``unlock(passphrase)``; on a terminal prompt, a wrong passphrase is asked again, at
    most PROMPT_ATTEMPTS times in all.  Raises UserError (or ``unlock``'s KeyStoreError when
    the passphrase did not come from a prompt)."""
    from .keys import KeyStoreError

    prompted = not os.environ.get("DAZIBAO_PASSPHRASE") and not passphrase_file
    for attempt in range(1, PROMPT_ATTEMPTS + 1):
        try:
            return unlock(read_passphrase(passphrase_file, confirm=False))
        except KeyStoreError as exc:
            if not prompted or exc.code not in _WRONG_PASSPHRASE_CODES:
                raise fail(str(exc)) from None
            if attempt == PROMPT_ATTEMPTS:
                raise fail(f"{exc}; gave up after {PROMPT_ATTEMPTS} tries") from None
            click.echo(f"{exc}; try again", err=True)
    raise AssertionError("unreachable")


def unlock_pseudonym(ctx: Context, name: str | None, passphrase_file: str | None) -> tuple[Pseudonym, SigningKey]:
    """The pseudonym ``name`` (the only one when None) and its unlocked key, asking for the
    passphrase as :func:`unlock_with_retries` does.  Raises UserError."""
    from .keys import KeyStoreError

    keys = ctx.keys()
    try:
        pseudonym = keys.find(name)
    except KeyStoreError as exc:
        raise fail(str(exc)) from None
    return unlock_with_retries(lambda secret: keys.unlock(pseudonym.name, secret), passphrase_file)


def when(ms: int) -> str:
    """A time in milliseconds as a UTC date and time, to the second."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (names and text as they are, not escaped)."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


passphrase_option = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False), default=None,
    help="Read the passphrase from this file (first line) instead of prompting. "
         "DAZIBAO_PASSPHRASE, when set, is used first. A prompt gives up after 3 failed tries.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")


def warn(message: str) -> None:
    """One warning line on stderr."""
    click.echo(f"dazibao: warning: {message}", err=True)


def warn_unknown_boards(store: Store, boards: Iterable[str]) -> list[str]:
    """Warn, one line each, about ``boards`` of which this node holds nothing; those boards.

    A name that is not a valid board name is left to the command, which refuses it."""
    from dazibao.protocol.errors import RemoteProtocolError

    def valid(board: str) -> bool:
        try:
            posts.check_board(board)
        except RemoteProtocolError:
            return False
        return True

    held = {b.board for b in store.boards()}
    unknown = [b for b in dict.fromkeys(boards) if b not in held and valid(b)]
    for board in unknown:
        warn(f"board {board!r} is not held here (no posts on it)")
    return unknown


def resolve_post_id(store: Store, text: str, what: str) -> bytes:
    """The id of the stored post that ``text`` names: a full id (64 hex digits), or a unique
    prefix of at least MIN_ID_PREFIX hex digits (as `dazibao posts` prints).  Raises UserError
    when it is not hex, too short, unknown or ambiguous."""
    text = text.strip().lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        raise fail(f"{what} takes a post id in hex")
    if len(text) == 2 * posts.ID_BYTES:
        return bytes.fromhex(text)
    if len(text) > 2 * posts.ID_BYTES:
        raise fail(f"{what}: a post id has 64 hex digits, not {len(text)}")
    if len(text) < MIN_ID_PREFIX:
        raise fail(f"{what}: give at least {MIN_ID_PREFIX} hex digits of the post id")
    rows = store.ids_with_prefix(text, 6)
    if not rows:
        raise fail(f"{what}: no post here whose id starts with {text}")
    if len(rows) > 1:
        shown = ", ".join(r.hex()[:16] for r in rows[:5])
        raise fail(f"{what}: {text} is ambiguous ({len(rows) if len(rows) < 6 else 'more than 5'} posts: "
                   f"{shown}{', ...' if len(rows) > 5 else ''}); give more digits")
    return rows[0]


def reader_board_counts(store: Store) -> list[tuple[str, int, int | None]]:
    """Every board with stored rows, by name: ``(board, posts and replies, newest of them)``."""
    return store.board_counts_of(READER_KINDS)


def _set_data_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        obj = ctx.find_object(Context)
        if obj is not None:
            obj.data = DataDir(value)


def add_data_dir_options(group: click.Group) -> None:
    """Let every command under ``group`` take ``--data-dir DIR`` after its name too (it wins
    over one given before the command)."""
    for command in group.commands.values():
        if not any(p.name == "data_dir" for p in command.params):
            command.params.append(click.Option(
                ["--data-dir"], type=click.Path(file_okay=False, path_type=Path), default=None,
                expose_value=False, callback=_set_data_dir, is_eager=True,
                help="Data folder of the node (as before the command)."))
        if isinstance(command, click.Group):
            add_data_dir_options(command)
