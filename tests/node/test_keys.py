"""The pseudonym key store: encrypted key files on disk, mode 0600, never a secret in sight."""

from __future__ import annotations

import pytest

from dazibao.node.keys import KeyStore, KeyStoreError
from dazibao.protocol import identity

FAST = identity.KdfParams(memory_kib=8192, iterations=1, lanes=1)


@pytest.fixture
def keys(tmp_path):
    return KeyStore(tmp_path / "keys", kdf=FAST)


def test_create_list_unlock(keys):
    p = keys.create("小明", "passphrase one", seed=bytes([3]) * 32)
    assert (p.path.stat().st_mode & 0o777) == 0o600
    assert (p.path.parent.stat().st_mode & 0o777) == 0o700
    assert [q.name for q in keys.list()] == ["小明"]
    assert keys.find(None) == p
    _, key = keys.unlock("小明", "passphrase one")
    assert key.public_key == p.public_key
    assert bytes([3]).hex() * 32 not in p.path.read_bytes().hex()


def test_wrong_passphrase_and_unknown_name(keys):
    keys.create("a", "passphrase one")
    with pytest.raises(KeyStoreError, match="passphrase") as info:
        keys.unlock("a", "passphrase two")
    assert info.value.code == "wrong_passphrase"
    with pytest.raises(KeyStoreError, match="no pseudonym called"):
        keys.find("b")


def test_duplicate_and_bad_names(keys):
    keys.create("a", "passphrase one")
    with pytest.raises(KeyStoreError, match="already exists"):
        keys.create("a", "passphrase one")
    for bad in ("", " a", "a\u202eb", "x" * 65):
        with pytest.raises(KeyStoreError):
            keys.create(bad, "passphrase one")


def test_several_pseudonyms_need_a_choice(keys):
    keys.create("a", "passphrase one")
    keys.create("b", "passphrase one")
    with pytest.raises(KeyStoreError, match="--as"):
        keys.find(None)


def test_export_writes_the_encrypted_file(keys, tmp_path):
    p = keys.create("a", "passphrase one")
    out = tmp_path / "a.dzbkey"
    keys.export("a", out)
    assert out.read_bytes() == p.path.read_bytes()
    assert (out.stat().st_mode & 0o777) == 0o600
    with pytest.raises(KeyStoreError, match="already exists"):
        keys.export("a", out)


def test_damaged_key_file_gives_a_clear_error(keys):
    p = keys.create("a", "passphrase one")
    data = bytearray(p.path.read_bytes())
    data[-1] ^= 1
    p.path.write_bytes(bytes(data))
    # A damaged file no longer lists (its header cannot be trusted), but it is reported.
    assert keys.list() == []
    assert [(path, "checksum" in reason) for path, reason in keys.damaged()] == [(p.path, True)]
