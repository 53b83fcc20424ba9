"""Real dazibao processes for integration tests: separate data folders, real ports on
127.0.0.1, real HTTP, real SQLite.  Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PASSPHRASE = "correct horse battery staple"
WAIT_S = 30.0
#: Settings that lift the stranger quota, for tests that flood a node from one key to test
#: something else (storage, sync of a large store); the quota's own tests leave it on.
NO_QUOTA = {"DAZIBAO_STRANGER_POSTS_PER_DAY": str(10**9), "DAZIBAO_STRANGER_BYTES_PER_DAY": str(10**12)}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAZIBAO_")}
    env["DAZIBAO_PASSPHRASE"] = PASSPHRASE
    # Key files made by the tests' commands take the least Argon2id cost the format allows (8 MiB,
    # one pass): unlocking one then costs milliseconds instead of 0.4 s of CPU, hundreds of times
    # over.  tests/node/test_key_file_cost.py checks the default cost with the setting unset.
    env.setdefault("DAZIBAO_KEY_FILE_MEMORY_MIB", "8")
    env.setdefault("DAZIBAO_KEY_FILE_PASSES", "1")
    env.update(extra)
    return env


def dazibao(data: Path, *args: str, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one `dazibao` command against ``data``; raise with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "dazibao.node", "--data-dir", str(data), *args],
        capture_output=True, text=True, input=input, env=env or cli_env(), timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dazibao {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def posts_json(data: Path, board: str | None = None) -> list[dict]:
    # Every kind: the tests look at profiles, retractions and statements too.
    args = ["posts", "--json", "--all-kinds", "--limit", "10000"] + (["--board", board] if board else [])
    return json.loads(dazibao(data, *args).stdout)


def post_ids(data: Path) -> list[str]:
    return sorted(p["id"] for p in posts_json(data))


def wait_until(predicate, what: str, timeout: float = WAIT_S, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class NodeProcess:
    """`dazibao run` in a child process, on OS-chosen ports of 127.0.0.1 unless told others."""

    def __init__(self, data: Path, *, peers: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 gossip_listen: str = "127.0.0.1:0", ui_listen: str = "127.0.0.1:0") -> None:
        self.data = data
        self.gossip_listen = gossip_listen
        self.ui_listen = ui_listen
        self.peers = peers
        self.env = env or cli_env()
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = data.parent / f"{data.name}.log"

    def start(self) -> NodeProcess:
        info = self.data / "node.json"
        info.unlink(missing_ok=True)
        args = [sys.executable, "-m", "dazibao.node", "--data-dir", str(self.data), "run",
                "--gossip-listen", self.gossip_listen, "--ui-listen", self.ui_listen]
        for peer in self.peers:
            args += ["--peer", peer]
        self._log_fh = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log_fh, stderr=subprocess.STDOUT, env=self.env)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                return json.loads(info.read_text())
            except (OSError, ValueError):
                return None

        self.url = wait_until(ready, f"node in {self.data} to start")["gossip_url"]
        return self

    def info(self) -> dict:
        with urllib.request.urlopen(self.url + "/v1/info", timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT_S)
        self._log_fh.close()
        self.proc = None

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
