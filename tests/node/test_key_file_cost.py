"""The Argon2id cost of new key files: RFC 9106's 64 MiB and 3 passes unless the
key_file_memory_mib / key_file_passes settings say otherwise (docs/running.md), within the
bounds every key file reader enforces (docs/protocol.md, "Encrypted key files").  The other
command line tests run with the least cost, which only this file leaves unset."""

from __future__ import annotations

from pathlib import Path

from dazibao.node.config import DataDir, load_config
from dazibao.node.keys import KEY_SUFFIX
from dazibao.protocol import identity

from .procs import PASSPHRASE, cli_env, dazibao


def _kdf_of_only_key(data: Path) -> identity.KdfParams:
    (key_file,) = (data / "keys").glob("*" + KEY_SUFFIX)
    return identity.read_key_file_header(key_file.read_bytes()).kdf


def _env_without_cost(**extra: str) -> dict[str, str]:
    env = cli_env(**extra)
    for name in ("DAZIBAO_KEY_FILE_MEMORY_MIB", "DAZIBAO_KEY_FILE_PASSES"):
        if name not in extra:
            env.pop(name)
    return env


def test_a_new_key_file_takes_the_recommended_cost_by_default(tmp_path):
    dazibao(tmp_path / "d", "init", "--name", "mei", env=_env_without_cost())
    assert _kdf_of_only_key(tmp_path / "d") == identity.KdfParams(memory_kib=65_536, iterations=3, lanes=4)
    # ... and opens with the passphrase, as every key file does.
    key_file = next((tmp_path / "d" / "keys").glob("*" + KEY_SUFFIX))
    assert identity.open_key_file(key_file.read_bytes(), PASSPHRASE)[0].public_key


def test_the_settings_choose_the_cost_of_new_key_files(tmp_path):
    dazibao(tmp_path / "d", "init", "--name", "mei",
            env=_env_without_cost(DAZIBAO_KEY_FILE_MEMORY_MIB="256", DAZIBAO_KEY_FILE_PASSES="2"))
    assert _kdf_of_only_key(tmp_path / "d") == identity.KdfParams(memory_kib=256 * 1024, iterations=2, lanes=4)
    cfg = load_config(DataDir(tmp_path / "d"), environ={"DAZIBAO_KEY_FILE_MEMORY_MIB": "8"})
    assert cfg.key_file_kdf() == identity.KdfParams(memory_kib=8192, iterations=3, lanes=4)


def test_a_cost_out_of_bounds_is_one_clear_line_and_makes_no_key(tmp_path):
    for name, value, words in (("DAZIBAO_KEY_FILE_MEMORY_MIB", "4", "key_file_memory_mib must be 8 to 1024"),
                               ("DAZIBAO_KEY_FILE_MEMORY_MIB", "2048", "key_file_memory_mib must be 8 to 1024"),
                               ("DAZIBAO_KEY_FILE_PASSES", "0", "key_file_passes must be 1 to 16")):
        data = tmp_path / f"{name}-{value}"
        out = dazibao(data, "init", "--name", "mei", check=False, env=_env_without_cost(**{name: value}))
        assert out.returncode != 0
        assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not data.exists()  # checked before the data folder is made
