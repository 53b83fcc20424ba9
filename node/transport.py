"""How this node's bytes reach a peer: directly or through a proxy (Tor), over plain HTTP or TLS,
with a pinned key for a self-signed organizer node (docs/privacy.md; docs/protocol.md, "Peer
URLs").  node/sync.py's PeerClient makes every outbound request through a session made here;
the gossip listener's TLS context is made here too.

With a proxy, every connection goes through it and this node never resolves a peer's name
itself: the name is handed to the proxy (SOCKS5 with remote resolution, or HTTP CONNECT), so
that neither the local network nor its DNS resolver learns whom the node talks to.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import Fingerprint, ServerFingerprintMismatch
from aiohttp_socks import ProxyConnector, ProxyType
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dazibao.protocol import peers as peer_policy

__all__ = [
    "ProxyError", "Proxy", "parse_proxy", "SpkiPin", "PinMismatch", "open_session", "spki_digest",
    "pin_of_certificate", "server_ssl_context", "TlsFilesError",
]


class ProxyError(ValueError):
    """A proxy setting that is not a usable proxy URL."""


class TlsFilesError(ValueError):
    """The TLS certificate or key files cannot be used.  The message says which and why."""


_SCHEMES = {"socks5": ProxyType.SOCKS5, "socks5h": ProxyType.SOCKS5, "http": ProxyType.HTTP}


@dataclass(frozen=True, slots=True)
class Proxy:
    """A parsed ``proxy`` setting."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        # rdns=True whatever the scheme: with a proxy, a name is always resolved by the proxy
        # (socks5:// is read as socks5h://), never by this node (docs/privacy.md).
        return _PinnedProxyConnector(
            self.host, self.port, proxy_type=_SCHEMES[self.scheme], username=self.username,
            password=self.password, rdns=True, **kwargs)


def parse_proxy(value: str) -> Proxy:
    """A ``proxy`` setting: ``socks5h://host:port``, ``socks5://host:port`` or
    ``http://host:port``, optionally with ``user:password@`` (Tor isolates streams by it).
    Raises ProxyError."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise ProxyError(f"proxy {value!r} is not a URL: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ProxyError(f"proxy {value!r} must start with socks5h://, socks5:// or http://")
    if not parts.hostname or port is None:
        raise ProxyError(f"proxy {value!r} must name a host and a port, e.g. socks5h://127.0.0.1:9050")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyError(f"proxy {value!r} must be only scheme://[user:password@]host:port")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Proxy(parts.scheme, parts.hostname, port, username, password)


class PinMismatch(OSError):
    """A pinned peer's TLS key is not the pinned one (nothing was sent to it)."""


def spki_digest(der_certificate: bytes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a DER certificate (what a pin names)."""
    cert = x509.load_der_x509_certificate(der_certificate)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


class SpkiPin(Fingerprint):
    """aiohttp's ``ssl=`` value for a pinned peer: the chain and the name are not checked (a
    self-signed organizer node has neither), the server's public key must hash to the pin.

    It is a Fingerprint so that aiohttp uses an unverifying context and keeps pinned
    connections apart in its pool; the pin itself is checked by the connectors below before
    the request is written, through a proxy too.
    """

    def __init__(self, digest: bytes) -> None:
        super().__init__(digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpkiPin) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def verify(self, transport: asyncio.BaseTransport) -> None:
        """Raise PinMismatch unless the TLS peer's key hashes to the pin (fails closed: no TLS
        object, no certificate, or a certificate that does not parse is a mismatch)."""
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        try:
            got = spki_digest(der) if der else b""
        except ValueError:
            got = b""
        if got != self.fingerprint:
            raise PinMismatch("the server's TLS key is not the one pinned in the peer URL")

    def check(self, transport: asyncio.Transport) -> None:
        # aiohttp's own check after a direct connection: the same rule, its own error.
        try:
            self.verify(transport)
        except PinMismatch:
            raise ServerFingerprintMismatch(self.fingerprint, b"", "", 0) from None


class _PinCheck:
    """Checks a pinned request's TLS key as soon as the connection is made, before any byte of
    the request is written, and closes the connection if it does not match."""

    async def _wrap_create_connection(self, *args: Any, req: aiohttp.ClientRequest,
                                      **kwargs: Any) -> tuple[asyncio.Transport, Any]:
        transport, protocol = await super()._wrap_create_connection(  # type: ignore[misc]
            *args, req=req, **kwargs)
        if isinstance(req.ssl, SpkiPin):
            try:
                req.ssl.verify(transport)
            except PinMismatch as exc:
                transport.close()
                raise aiohttp.ClientConnectorError(req.connection_key, exc) from None
        return transport, protocol


class _PinnedConnector(_PinCheck, aiohttp.TCPConnector):
    pass


class _PinnedProxyConnector(_PinCheck, ProxyConnector):
    pass


def open_session(proxy: Proxy | None, *, resolver: aiohttp.abc.AbstractResolver | None = None
                 ) -> aiohttp.ClientSession:
    """A client session for peer traffic: through ``proxy`` when one is set (the resolver is
    then not used: the proxy resolves names), else direct with ``resolver``."""
    if proxy is not None:
        return aiohttp.ClientSession(connector=proxy.connector())
    return aiohttp.ClientSession(connector=_PinnedConnector(resolver=resolver) if resolver
                                 else _PinnedConnector())


def _read_pem_certificate(path: Path) -> x509.Certificate:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise TlsFilesError(f"tls_cert {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise TlsFilesError(f"tls_cert {path}: not a PEM certificate") from None
    return certs[0]


def pin_of_certificate(path: Path) -> str:
    """The pin (``spki=...``) of the first certificate in a PEM file.  Raises TlsFilesError."""
    cert = _read_pem_certificate(path)
    return peer_policy.encode_pin(spki_digest(cert.public_bytes(serialization.Encoding.DER)))


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The gossip listener's TLS context (TLS 1.2 at least).  Raises TlsFilesError."""
    _read_pem_certificate(cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:  # before OSError, of which it is a kind
        raise TlsFilesError(f"tls_cert {cert} and tls_key {key} do not make a key pair: {exc.reason}") from None
    except OSError as exc:
        raise TlsFilesError(f"tls_key {key}: {exc.strerror or exc}") from None
    return context
