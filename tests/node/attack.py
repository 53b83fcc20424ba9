"""Tools for the attack tests (docs/security.md): a node process's memory, a probe of its
event loop, and a canary listener that proves no connection reached an address.

Every attack is bounded in count and time and aims only at 127.0.0.0/8.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` now, in KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The most resident memory process ``pid`` has had, in KiB (the high-water mark)."""
    return _status_kib(pid, "VmHWM")


def probe_s(url: str, timeout: float = 30.0) -> float:
    """Seconds one GET of ``url`` takes to answer in full: a probe of the node's event loop."""
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        resp.read()
    return time.monotonic() - start


class Canary:
    """A TCP listener on a loopback address that only counts the connections that reach it.

    Point a redirect (or anything else) at ``canary.url`` and assert ``canary.hits == 0``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self.hits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            conn.close()

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
