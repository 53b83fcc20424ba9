"""`dazibao tls` and `dazibao onion`: an organizer node reachable over TLS with a pinned key, or
as a Tor onion service (docs/privacy.md, docs/running.md)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dazibao.protocol import limits
from dazibao.protocol import peers as peer_policy

from .cli_common import Context, json_option, pass_ctx
from .cli_common import emit_json as _emit_json
from .cli_common import fail as _fail
from .config import ConfigError, DataDir, _toml_value, load_config, parse_listen

__all__ = ["TRANSPORT_COMMANDS", "set_settings"]

_T = TypeVar("_T")


def set_settings(data: DataDir, values: dict[str, Any]) -> None:
    """Set settings in config.toml: each one's line is replaced, or added at the end; the file
    is then read back as a whole, and left as it was if that fails.  Raises ConfigError."""
    path = data.config
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = old
    for name, value in values.items():
        new = _with_line(new, name, f"{name} = {_toml_value(value)}")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.replace(tmp, path)
    try:
        load_config(data, environ={})
    except ConfigError:
        path.write_text(old, encoding="utf-8")
        raise


def _with_line(text: str, name: str, line: str) -> str:
    """``text`` with the line that sets ``name`` replaced by ``line``, or ``line`` added."""
    pattern = re.compile(rf"^{re.escape(name)}\s*=.*$", re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    # Before the first [table] header, if any: a line after it would belong to that table.
    table = re.search(r"^[ \t]*\[", text, re.M)
    if table:
        return text[: table.start()] + line + "\n" + text[table.start():]
    return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"


def _private_file(path: Path, data: bytes) -> None:
    """Write a secret (a key) readable by its owner only, refusing to replace an existing one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@click.group("tls")
def tls_group() -> None:
    """Serve the gossip API over HTTPS, with a key that peers pin."""


@tls_group.command("create")
@click.option("--name", "names", multiple=True, metavar="HOST",
              help="A host name or address the certificate names (repeatable); peers that pin the key "
                   "do not check it.")
@click.option("--days", default=3650, show_default=True, type=click.IntRange(1, 36500),
              help="Days the certificate is valid.")
@json_option
@pass_ctx
def tls_create(ctx: Context, names: tuple[str, ...], days: int, as_json: bool) -> None:
    """Make a self-signed certificate and key in the data folder, set tls_cert and tls_key,
    and print the pin that peers add to this node's URL."""
    ctx.require_init()
    cert_path, key_path = ctx.data.root / "tls" / "cert.pem", ctx.data.root / "tls" / "key.pem"
    if cert_path.exists() or key_path.exists():
        raise _fail(f"{cert_path.parent} already holds a certificate: remove it first to make a new key "
                    "(peers that pinned the old one will refuse the new one)")
    # Imported here: the X.509 machinery is needed by this command only.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ("dazibao",))[0][:64])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    _private_file(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    _private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    try:
        set_settings(ctx.data, {"tls_cert": "tls/cert.pem", "tls_key": "tls/key.pem"})
    except ConfigError as exc:
        raise _fail(f"made {cert_path}, but cannot set it in config.toml: {exc}") from None
    from .transport import pin_of_certificate  # loads aiohttp: only when needed

    pin = pin_of_certificate(cert_path)
    if as_json:
        _emit_json({"cert": str(cert_path), "key": str(key_path), "pin": pin})
        return
    click.echo(f"made {cert_path} and {key_path}; tls_cert and tls_key are set (restart the node)")
    click.echo(f"pin: {pin}")
    click.echo(f"peers add this node as https://HOST:PORT#{pin}")


@tls_group.command("pin")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path),
              help="A PEM certificate file [default: the tls_cert setting].")
@json_option
@pass_ctx
def tls_pin(ctx: Context, cert: Path | None, as_json: bool) -> None:
    """Print the pin of this node's TLS certificate (the SHA-256 of its public key), to hand to
    peers as https://HOST:PORT#spki=PIN."""
    if cert is None:
        config = ctx.config()
        if not config.tls_cert:
            raise _fail("tls_cert is not set: give --cert, or run `dazibao tls create`")
        cert = ctx.data.root / Path(config.tls_cert).expanduser()
    from .transport import TlsFilesError, pin_of_certificate  # loads aiohttp: only when needed

    try:
        pin = pin_of_certificate(cert)
    except TlsFilesError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _emit_json({"cert": str(cert), "pin": pin})
    else:
        click.echo(pin)


@click.group("onion")
def onion_group() -> None:
    """Make this node reachable as a Tor onion service."""


def _gossip_target(ctx: Context) -> tuple[str, bool]:
    """Where Tor forwards the onion service to (host:port of the gossip listener), and
    whether the listener speaks TLS."""
    config = ctx.config()
    host, port = parse_listen(config.gossip_listen, "gossip_listen")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}", bool(config.tls_cert)


def _virtual_port(tls: bool) -> int:
    return 443 if tls else 80


@onion_group.command("torrc")
@click.option("--dir", "hs_dir", default="/var/lib/tor/dazibao", show_default=True,
              help="Tor's folder for the service's key and hostname.")
@pass_ctx
def onion_torrc(ctx: Context, hs_dir: str) -> None:
    """Print the torrc lines of an onion service that leads to the gossip API."""
    target, tls = _gossip_target(ctx)
    click.echo(f"HiddenServiceDir {hs_dir}")
    click.echo(f"HiddenServicePort {_virtual_port(tls)} {target}")
    click.echo(f"# then reload Tor, read {hs_dir}/hostname and set public_url = "
               f"\"{'https' if tls else 'http'}://HOSTNAME:{_virtual_port(tls)}{'#spki=PIN' if tls else ''}\"")


def _with_deadline(fn: Callable[[], _T], seconds: float) -> _T:
    """Run ``fn`` on a thread of its own and give up after ``seconds`` (stem's calls block and
    have no deadline of their own).  Raises TimeoutError or what ``fn`` raised."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # carried back to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="dazibao-tor-control", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"Tor's control port did not answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


@onion_group.command("create")
@click.option("--control", default="127.0.0.1:9051", show_default=True, metavar="HOST:PORT",
              help="Tor's control port.")
@click.option("--password-file", type=click.File("r"),
              help="File holding the control port's password (HashedControlPassword); without it, "
                   "Tor's cookie authentication is used.")
@click.option("--set-public-url/--no-set-public-url", default=True, show_default=True,
              help="Set public_url in config.toml to the onion address, so that peer exchange spreads it.")
@json_option
@pass_ctx
def onion_create(ctx: Context, control: str, password_file: Any, set_public_url: bool, as_json: bool) -> None:
    """Create this node's onion service through Tor's control port and print its address.

    The service's key is kept in the data folder (onion/service_key), so that running this
    again, after Tor restarts, gives the same address.  The service lasts until Tor stops."""
    from stem import SocketError
    from stem.connection import AuthenticationFailure
    from stem.control import Controller

    ctx.require_init()
    try:
        host, port = parse_listen(control, "--control")
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    target, tls = _gossip_target(ctx)
    password = password_file.read().strip() if password_file else None
    # The key, and the address it gives, are kept in the data folder (owner only).
    key_file, id_file = ctx.data.root / "onion" / "service_key", ctx.data.root / "onion" / "service_id"
    key_type, key_content, known_id = "NEW", "ED25519-V3", ""
    if key_file.exists():
        key_type, _, key_content = key_file.read_text(encoding="ascii").strip().partition(":")
        known_id = id_file.read_text(encoding="ascii").strip() if id_file.exists() else ""

    def create() -> tuple[str, str]:
        """The service id, and the new key (type:content) if Tor made one."""
        with Controller.from_port(address=host, port=port) as controller:
            controller.authenticate(password=password)
            if known_id and known_id in controller.list_ephemeral_hidden_services(detached=True):
                return known_id, ""  # already running in this Tor: nothing to do
            answer = controller.create_ephemeral_hidden_service(
                {_virtual_port(tls): target}, key_type=key_type, key_content=key_content,
                await_publication=False, detached=True)
            new_key = f"{answer.private_key_type}:{answer.private_key}" if answer.private_key else ""
            return str(answer.service_id), new_key

    try:
        service_id, new_key = _with_deadline(create, limits.TOR_CONTROL_TIMEOUT_S)
    except (SocketError, AuthenticationFailure, TimeoutError) as exc:
        raise _fail(f"Tor's control port at {control}: {exc}") from None
    except Exception as exc:  # stem's ProtocolError, OperationFailed: what Tor answered
        raise _fail(f"Tor refused to create the onion service: {exc}") from None
    if new_key:
        _private_file(key_file, f"{new_key}\n".encode("ascii"))
        id_file.write_text(service_id + "\n", encoding="ascii")
    scheme = "https" if tls else "http"
    url = f"{scheme}://{service_id}.onion:{_virtual_port(tls)}"
    if tls:
        from .transport import pin_of_certificate  # loads aiohttp: only when needed

        config = ctx.config()
        url += "#" + pin_of_certificate(ctx.data.root / Path(config.tls_cert).expanduser())
    url = peer_policy.normalize_peer_url(url)
    if set_public_url:
        try:
            set_settings(ctx.data, {"public_url": url})
        except ConfigError as exc:
            raise _fail(f"cannot set public_url: {exc}") from None
    if as_json:
        _emit_json({"onion": f"{service_id}.onion", "public_url": url, "set": set_public_url,
                    "key_file": str(key_file)})
        return
    click.echo(f"onion service {service_id}.onion leads to {target}")
    click.echo(f"public_url = \"{url}\"" + ("  (set in config.toml; restart the node)" if set_public_url else ""))
    click.echo(f"its key is in {key_file}: keep it to keep the address")


TRANSPORT_COMMANDS = (tls_group, onion_group)
