"""Real transport pieces for tests: a microsocks SOCKS5 proxy process, a TCP relay that records
who connects to it, a self-signed certificate, and a Tor process with its control port.  Every
socket is on 127.0.0.0/8; every wait is bounded."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MICROSOCKS = shutil.which("microsocks")
TOR = shutil.which("tor") or (Path("/usr/sbin/tor") if Path("/usr/sbin/tor").exists() else None)
UNSHARE = shutil.which("unshare")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.1)


class Microsocks:
    """microsocks on 127.0.0.1, its outgoing connections bound to ``bind`` (so that a server can
    tell a connection through the proxy from a direct one), optionally with its own /etc/hosts
    (a mount namespace: names that only the proxy can resolve)."""

    def __init__(self, tmp: Path, *, bind: str = "127.0.0.2", hosts: dict[str, str] | None = None) -> None:
        if MICROSOCKS is None:
            pytest.skip("microsocks is not installed (apt-get install -y microsocks)")
        self.port = free_port()
        args = [MICROSOCKS, "-i", "127.0.0.1", "-p", str(self.port), "-b", bind]
        if hosts is not None:
            if UNSHARE is None:
                pytest.skip("unshare (util-linux) is not installed")
            table = tmp / "proxy-hosts"
            table.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in hosts.items()))
            probe = subprocess.run([UNSHARE, "-m", "sh", "-c", f"mount --bind {table} /etc/hosts && true"],
                                   capture_output=True, timeout=10)
            if probe.returncode != 0:
                pytest.skip(f"cannot give the proxy its own /etc/hosts (unshare -m): {probe.stderr.decode()[:200]}")
            args = [UNSHARE, "-m", "sh", "-c", f"mount --bind {table} /etc/hosts && exec " + " ".join(args)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"socks5h://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Relay:
    """A TCP relay on 127.0.0.1 to ``target``, recording the source address of every
    connection it accepts."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.sources: list[str] = []
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay.sources.append(self.client_address[0])
                with socket.create_connection(target, timeout=10) as upstream:
                    _pump(self.request, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            if not data:
                return
            key.data.sendall(data)


def self_signed(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate and its key (PEM files in ``folder``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TorProcess:
    """A Tor process with the network off (no bootstrap, nothing leaves the machine) and a
    control port on 127.0.0.1 with cookie authentication: enough to create onion services."""

    def __init__(self, tmp: Path) -> None:
        if TOR is None:
            pytest.skip("tor is not installed (apt-get install -y tor)")
        folder = tmp / "tor"
        folder.mkdir(mode=0o700, parents=True)
        self.control_port = free_port()
        (folder / "no-torrc").touch()
        self.proc = subprocess.Popen(
            [str(TOR), "--DataDirectory", str(folder / "data"), "--ControlPort", f"127.0.0.1:{self.control_port}",
             "--CookieAuthentication", "1", "--SocksPort", "0", "--DisableNetwork", "1",
             "--Log", f"notice file {folder / 'log'}", "-f", str(folder / "no-torrc")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", self.control_port, timeout=30)
        except AssertionError:
            self.close()
            pytest.skip("tor did not open its control port")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
