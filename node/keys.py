"""The pseudonym key store: encrypted key files in ``DATA/keys``, one per pseudonym.

A key file (docs/protocol.md, "Encrypted key files") holds the pseudonym's name and public key
in its authenticated header and the secret seed encrypted under the member's passphrase.  Files
are written atomically with mode 0600 inside a 0700 folder; nothing here ever logs or prints a
secret.
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass
from pathlib import Path

from dazibao.protocol import identity
from dazibao.protocol.errors import BodyError, KeyFileError

__all__ = ["KeyStoreError", "Pseudonym", "KeyStore", "write_private_file"]

KEY_SUFFIX = ".dzbkey"


class KeyStoreError(Exception):
    """A pseudonym could not be created, found or opened.  The message says why.

    ``code`` is the key file's stable error code (e.g. ``wrong_passphrase``,
    ``keyfile_corrupt``) when opening the file failed, else None.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Pseudonym:
    name: str
    public_key: bytes
    path: Path

    @property
    def fingerprint(self) -> str:
        return identity.fingerprint(self.public_key)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (mode 0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class KeyStore:
    """Pseudonyms of one data folder."""

    def __init__(self, folder: Path, kdf: identity.KdfParams = identity.DEFAULT_KDF) -> None:
        self.folder = folder
        self.kdf = kdf

    def list(self) -> list[Pseudonym]:
        """Every readable pseudonym, sorted by name.  Unreadable files are skipped."""
        out: list[Pseudonym] = []
        if not self.folder.is_dir():
            return out
        for path in sorted(self.folder.glob("*" + KEY_SUFFIX)):
            try:
                header = identity.read_key_file_header(path.read_bytes())
            except (KeyFileError, OSError):
                continue
            out.append(Pseudonym(header.name, header.public_key, path))
        return sorted(out, key=lambda p: p.name)

    def damaged(self) -> builtins.list[tuple[Path, str]]:
        """Key files that cannot be read, with the reason: shown to the member, never hidden."""
        out: builtins.list[tuple[Path, str]] = []
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*" + KEY_SUFFIX)):
                try:
                    identity.read_key_file_header(path.read_bytes())
                except KeyFileError as exc:
                    out.append((path, exc.message))
                except OSError as exc:
                    out.append((path, exc.strerror or str(exc)))
        return out

    def find(self, name: str | None) -> Pseudonym:
        """The pseudonym called ``name`` (or the only one, when ``name`` is None)."""
        pseudonyms = self.list()
        if name is None:
            if len(pseudonyms) == 1:
                return pseudonyms[0]
            if not pseudonyms:
                raise KeyStoreError("no pseudonym yet: create one with `dazibao id new NAME`")
            names = ", ".join(p.name for p in pseudonyms)
            raise KeyStoreError(f"several pseudonyms ({names}): choose one with --as NAME")
        for p in pseudonyms:
            if p.name == name:
                return p
        raise KeyStoreError(f"no pseudonym called {name!r} (see `dazibao id list`)")

    def create(self, name: str, passphrase: str, seed: bytes | None = None) -> Pseudonym:
        """Make a new pseudonym with a fresh key and write its key file."""
        try:
            identity.check_display_name(name, "pseudonym name")
        except BodyError as exc:
            raise KeyStoreError(exc.message) from None
        if any(p.name == name for p in self.list()):
            raise KeyStoreError(f"a pseudonym called {name!r} already exists")
        if not passphrase:
            raise KeyStoreError("the passphrase must not be empty")
        key = identity.SigningKey(seed if seed is not None else os.urandom(identity.SEED_BYTES))
        data = identity.seal_key_file(key, name, passphrase, os.urandom, self.kdf)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / (identity.fingerprint(key.public_key) + KEY_SUFFIX)
        write_private_file(path, data)
        return Pseudonym(name, key.public_key, path)

    def unlock(self, name: str | None, passphrase: str) -> tuple[Pseudonym, identity.SigningKey]:
        """Open a pseudonym's key.  Raises KeyStoreError with the key file's error."""
        pseudonym = self.find(name)
        try:
            key, _ = identity.open_key_file(pseudonym.path.read_bytes(), passphrase)
        except KeyFileError as exc:
            raise KeyStoreError(f"{pseudonym.name}: {exc.message}", exc.code) from None
        return pseudonym, key

    def export(self, name: str, out: Path) -> Pseudonym:
        """Copy a pseudonym's (still encrypted) key file to ``out`` with mode 0600."""
        pseudonym = self.find(name)
        if out.exists():
            raise KeyStoreError(f"{out} already exists; not overwriting it")
        write_private_file(out, pseudonym.path.read_bytes())
        return pseudonym
