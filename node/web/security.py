"""The member UI's request checks: which Host and Origin it answers, and the headers of every response.

These are pure functions of header values, so that they can be tested without a server.
docs/web-ui.md ("Security model") explains what each one defends against.
"""

from __future__ import annotations

import hmac
import ipaddress

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "allowed_hosts",
    "public_allowed_hosts",
    "host_allowed",
    "origin_allowed",
    "fetch_site_allowed",
    "ALLOW",
    "NAVIGATION",
    "REFUSE",
    "CROSS_SITE_REFUSED",
    "resource_policy",
    "tokens_equal",
    "safe_next",
]

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])

#: Sent with every response of the UI listener, errors and static files included.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Other sites may not embed or read this UI's resources, nor share a window with it.
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _host_name(host: str) -> str | None:
    """The listen host as it appears in a Host header; None for a wildcard address."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or None
    if address.is_unspecified:  # 0.0.0.0 or :: is not a name a browser can use
        return None
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def allowed_hosts(listen_host: str, port: int) -> frozenset[str]:
    """Host header values the UI answers: the configured listen host and the loopback names,
    each with the bound port (and without it when the port is 80, as browsers send it).

    Any other Host, in particular a name an attacker's DNS points at 127.0.0.1 (DNS
    rebinding), is refused.
    """
    names = set(_LOOPBACK_NAMES)
    configured = _host_name(listen_host)
    if configured:
        names.add(configured)
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    return frozenset(hosts)


def public_allowed_hosts(listen_host: str, port: int, names: tuple[str, ...] = ()) -> frozenset[str]:
    """Host header values the read-only public view answers (docs/mirror.md).

    The configured listen host with the bound port (none for a wildcard address), and each of
    ``names`` (the ``public_view_hosts`` setting): a name given with a port is taken as it is;
    a name without one is accepted with the bound port and without a port (as browsers send it
    to a proxy in front of the view on port 80 or 443).  The loopback names are not added.
    """
    hosts: set[str] = set()
    configured = _host_name(listen_host)
    if configured:
        hosts.add(f"{configured}:{port}")
        if port == 80:
            hosts.add(configured)
    for name in names:
        name = name.strip().lower()
        if not name:
            continue
        if name.rpartition(":")[2].isdigit() and not name.endswith("]"):
            hosts.add(name)
        else:
            hosts |= {name, f"{name}:{port}"}
    return frozenset(hosts)


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's Host header is one of ``allowed`` (case-insensitive)."""
    if not host_header:
        return False
    return host_header.strip().lower() in allowed


def origin_allowed(origin: str | None, host_header: str, sec_fetch_site: str | None = None) -> bool:
    """Whether a request's Origin header (RFC 6454) is absent or this UI's own origin.

    The UI is served over plain HTTP on the (already checked) Host, so its origin is
    ``http://`` plus that Host.  ``null`` is accepted only together with ``Sec-Fetch-Site:
    same-origin``: the UI's pages have ``Referrer-Policy: no-referrer``, under which browsers
    send ``Origin: null`` for the page's own forms (Fetch standard, "append a request Origin
    header"), and the Fetch Metadata header, which no page can forge, says where the form
    really came from.  A ``null`` from anywhere else (a sandboxed frame, an opaque redirect)
    is refused, as is every other origin.
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if origin == "null":
        return (sec_fetch_site or "").strip().lower() == "same-origin"
    return origin == "http://" + host_header.strip().lower()


def fetch_site_allowed(sec_fetch_site: str | None) -> bool:
    """Whether a request's Sec-Fetch-Site header (Fetch Metadata) allows a state change.

    Browsers that send it say ``same-origin`` for this UI's own forms; ``same-site`` would
    be another port of 127.0.0.1, and ``cross-site`` any web page.
    """
    return sec_fetch_site is None or sec_fetch_site.strip().lower() in ("same-origin", "none")


#: :func:`resource_policy` verdicts.
ALLOW = "allow"
NAVIGATION = "navigation"
REFUSE = "refuse"

#: The whole body of the answer to a refused cross-site request: the same bytes whatever was
#: asked, so that neither its size nor its timing says anything about the node.
CROSS_SITE_REFUSED = b"403 Request refused: this node answers only its own pages.\n"


def resource_policy(method: str, site: str | None, mode: str | None, dest: str | None) -> str:
    """What the member UI does with a request, from its Fetch Metadata headers.

    ``site``, ``mode`` and ``dest`` are the values of ``Sec-Fetch-Site``, ``Sec-Fetch-Mode``
    and ``Sec-Fetch-Dest`` (None when absent).  The answer is :data:`ALLOW` for a request of
    the UI's own pages (``same-origin``), one the member made by typing an address or opening
    a bookmark (``none``), or one from a browser that sends no Fetch Metadata (the Host
    allowlist and the CSRF token guard those); :data:`NAVIGATION` for a top-level GET
    navigation from another site (a link the member followed), which gets a constant page
    and runs no query; and :data:`REFUSE` for every other request another site's page makes
    (a fetch, an image, a script, a frame, a form POST), which gets a constant 403.  Another
    port of 127.0.0.1 is ``same-site``, and is treated as another site; an unknown value is
    refused.
    """
    if site is None:
        return ALLOW
    site = site.strip().lower()
    if site in ("same-origin", "none"):
        return ALLOW
    if (method == "GET" and (mode or "").strip().lower() == "navigate"
            and (dest or "").strip().lower() == "document"):
        return NAVIGATION
    return REFUSE


def tokens_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to after a form, or ``default``: never another site.

    Only paths that start with a single ``/`` are kept (``//host`` and ``/\\host`` are
    addresses of other sites to a browser).
    """
    if not value or len(value) > 2_000:
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ch in value for ch in "\\\r\n\t") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return default
    return value
