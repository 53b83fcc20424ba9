"""Real node processes for the benchmarks: `dazibao run` on 127.0.0.1, one data folder each.

Shared by bench/net.py and bench/flood.py (and any benchmark that needs whole nodes).  Not a
benchmark itself: it has no ``main``, so bench/run.py does not list it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NodeExited", "NodeProc", "free_port", "toml_value", "STOP_BOUND_S"]

#: How long a node is given to stop after SIGTERM before it is killed.
STOP_BOUND_S = 30.0


class NodeExited(RuntimeError):
    """A node process ended on its own (e.g. its port was taken)."""


def free_port() -> int:
    """A port of 127.0.0.1 that is free now.  The node binds it a moment later; another program
    could take it in between, and the node then exits at once (callers start it again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_value(value: Any) -> str:
    """``value`` written as TOML (the subset config.toml uses).  Raises TypeError for others."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


@dataclass
class NodeProc:
    """One `dazibao run` child process with its gossip listener on ``port`` of 127.0.0.1.

    Its output goes to ``<data>.log`` beside the data folder.  ``env`` adds variables to the
    environment the node starts with (every ``DAZIBAO_*`` variable of this process is dropped
    first, so that the caller's settings never leak into a benchmark); ``source`` puts a copy
    of the code ahead of the installed package.
    """

    name: str
    data: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    ui_url: str = ""
    _db: sqlite3.Connection | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data / "dazibao.db"

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.data.name}.log"

    def configure(self, settings: dict[str, Any]) -> None:
        """Write ``settings`` as the node's config.toml (creating the data folder)."""
        from dazibao.node.config import DataDir

        DataDir(self.data).create()
        text = "".join(f"{name} = {toml_value(value)}\n" for name, value in settings.items())
        (self.data / "config.toml").write_text(text, encoding="utf-8")

    def start(self, peers: Sequence[str] = ()) -> None:
        """Start the node, told the gossip URLs ``peers`` (a free port is chosen if none is set)."""
        if not self.port:
            self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAZIBAO_")}
        env.update(self.env)
        if self.source:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.source, env.get("PYTHONPATH")]))
        args = [sys.executable, "-m", "dazibao.node", "--data-dir", str(self.data), "run",
                "--gossip-listen", f"127.0.0.1:{self.port}", "--ui-listen", "127.0.0.1:0"]
        for peer in peers:
            args += ["--peer", peer]
        (self.data / "node.json").unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def started(self) -> bool:
        """Whether the node has written node.json.  Raises NodeExited if it has ended."""
        self.alive()
        try:
            info = json.loads((self.data / "node.json").read_text())
        except (OSError, ValueError):
            return False
        if info.get("gossip_url") != self.url:
            return False
        self.ui_url = str(info.get("ui_url") or "")
        return True

    def alive(self) -> None:
        """Raises NodeExited if the process is not running."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise NodeExited(f"node {self.name} exited with {code}: {self.tail()}")

    def tail(self, lines: int = 4) -> str:
        """The last lines of the node's log, on one line."""
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def db(self) -> sqlite3.Connection:
        """A read-only connection to the node's store: this process can never write to it, and
        the node's WAL mode lets it read while the node writes."""
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, isolation_level=None, timeout=5)
        return self._db

    def cpu_s(self) -> float:
        """User + system CPU seconds of the node process, all its threads."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        """The node process's peak resident memory, MiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def signal_stop(self) -> None:
        """Ask the node to stop (SIGTERM) without waiting; :meth:`reap` waits.  Stopping many
        nodes this way lets them shut down side by side."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> None:
        """Wait for the process until the monotonic ``deadline``, then kill it."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_BOUND_S)
        self.proc = None

    def stop(self) -> None:
        """Stop the node and wait for it (killed after STOP_BOUND_S)."""
        self.signal_stop()
        self.reap(time.monotonic() + STOP_BOUND_S)
