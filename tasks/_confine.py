"""Where a source may be: the folders file sources are read from, the addresses URL
sources may reach, and the error that refuses the rest.

Usage::

    path = confined_path(Path("var/data/bank.csv"))     # its real path, or SourceRefused
    with guarded_client() as client:                    # an httpx.Client
        client.get("https://bank.example/export.csv")   # or SourceRefused

Files: ``JOBLEDGER_SOURCE_ROOTS`` names the folders (``:`` separated; relative ones from
the worker's working directory; default ``var/data``). A path is resolved the way the
kernel will open it (``..``, symlinks) and refused unless the result lies inside a root;
after opening, the file actually opened is checked again through ``/proc/self/fd``, so a
folder swapped for a symlink between the check and the open is refused too.

URLs: a host is resolved once, every address it resolves to is checked, and the
connection goes to one of those checked addresses (never to a second lookup, which a
DNS rebinding could answer differently). Loopback, link-local, private, shared, reserved,
multicast and unspecified addresses (``ipaddress``'s ``is_global`` false) are refused,
and so is an IPv6 address that carries one of those IPv4 addresses (NAT64, 6to4, Teredo,
IPv4-mapped, -translated or -compatible: a translator would deliver it there), and the
local-use NAT64 prefix ``64:ff9b:1::/48``; all unless a network in
``JOBLEDGER_SOURCE_ALLOWED_NETWORKS`` holds them. The check sits in the httpcore network
backend, where every connection is made, so each redirect's new host is checked the same
way; proxies from the environment are not used (they would connect instead of us).

Why written here and not taken from a library: the maintained SSRF guards wrap
``requests`` (advocate, last released 2020); httpx exposes exactly the hook needed, the
network backend's ``connect_tcp``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpcore
import httpx

from app.config import settings
from tasks._settings import Sources

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

#: The settings, as error messages name them.
ROOTS_SETTING = "JOBLEDGER_SOURCE_ROOTS"
NETWORKS_SETTING = "JOBLEDGER_SOURCE_ALLOWED_NETWORKS"
#: Redirects an http(s) source may follow (each one checked like the first request).
MAX_REDIRECTS = 5


class SourceRefused(ValueError):
    """A source the configuration does not allow; ``str()`` is a user-safe reason that
    says which setting decides."""


# -- files -----------------------------------------------------------------------------------


def source_roots(setting: str | None = None) -> tuple[Path, ...]:
    """The configured roots as real absolute paths (``setting``: the raw value, default
    ``JOBLEDGER_SOURCE_ROOTS``)."""
    text = settings.of(Sources).source_roots if setting is None else setting
    return tuple(Path(os.path.realpath(part)) for part in text.split(":") if part.strip())


def confined_path(path: Path, roots: Iterable[Path] | None = None) -> Path:
    """The real path of ``path`` (symlinks and ``..`` resolved) if it lies inside a root.

    Refused before the file is touched, so a path outside the roots says nothing about
    whether it exists.

    Raises:
        SourceRefused: it resolves outside every root (or no root is configured).
    """
    real = Path(os.path.realpath(path))
    if not _inside(real, source_roots() if roots is None else tuple(roots)):
        raise SourceRefused(
            f"source file {path} is outside the folders sources may be read from "
            f"({ROOTS_SETTING}); put it in one of them"
        )
    return real


def check_opened(descriptor: int, path: Path, roots: Iterable[Path] | None = None) -> None:
    """Check the file a descriptor actually opened: a regular file inside a root.

    Raises:
        SourceRefused: not a regular file, or (where ``/proc`` tells) outside the roots.
    """
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        raise SourceRefused(f"source is not a regular file: {path}")
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        return  # no /proc (not Linux): the resolved-path check before the open stands
    if not _inside(opened, source_roots() if roots is None else tuple(roots)):
        raise SourceRefused(
            f"source file {path} changed while it was opened and now lies outside the "
            f"folders sources may be read from ({ROOTS_SETTING})"
        )


def _inside(real: Path, roots: tuple[Path, ...]) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots)


# -- networks --------------------------------------------------------------------------------


def allowed_networks(setting: str | None = None) -> tuple[Network, ...]:
    """The networks of ``JOBLEDGER_SOURCE_ALLOWED_NETWORKS`` (``setting``: the raw value)."""
    text = settings.of(Sources).source_allowed_networks if setting is None else setting
    return tuple(
        ipaddress.ip_network(entry, strict=False) for entry in text.replace(",", " ").split()
    )


#: IPv6 prefixes that only spell an IPv4 address in their last 32 bits: IPv4-mapped,
#: IPv4-translated (RFC 2765), IPv4-compatible (deprecated) and the NAT64 well-known
#: prefix (RFC 6052). A translator (or the kernel) delivers them to that IPv4 address,
#: so the IPv4 address alone decides.
_SPELLS_IPV4 = tuple(
    ipaddress.IPv6Network(prefix)
    for prefix in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96")
)
#: NAT64 local-use prefix (RFC 8215): the IPv4 address sits where the operator's prefix
#: length puts it, so it cannot be read; refused unless an allowed network holds it.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded(ip: Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (the ones a translator or tunnel
    reaches): the last 32 bits of :data:`_SPELLS_IPV4`, 6to4's (``2002::/16``), Teredo's
    server and client (``2001::/32``). ``ipaddress`` calls most of these global whatever
    they carry, so ``64:ff9b::7f00:1`` would pass as public and reach 127.0.0.1."""
    if not isinstance(ip, ipaddress.IPv6Address) or ip.is_loopback or ip.is_unspecified:
        return ()  # ``::1`` and ``::`` are themselves, not IPv4-compatible addresses
    if any(ip in prefix for prefix in _SPELLS_IPV4):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    return ()


def _public(ip: Address) -> bool:
    return ip.is_global and not ip.is_multicast


def address_allowed(address: str, allowed: Iterable[Network]) -> bool:
    """Whether a URL source may connect to ``address`` (an IP literal).

    An IPv6 address that carries an IPv4 address (NAT64, 6to4, Teredo, IPv4-mapped or
    -compatible) is allowed only if every IPv4 address it carries is public too, or an
    allowed network holds it (in either spelling).
    """
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone
    carried = _embedded(ip)
    networks = tuple(allowed)
    if any(form in network for form in (ip, *carried) for network in networks):
        return True
    if ip in _LOCAL_NAT64 or not all(_public(inner) for inner in carried):
        return False
    if carried and any(ip in prefix for prefix in _SPELLS_IPV4):
        return True  # only a spelling of a public IPv4 address
    return _public(ip)


def _kind(address: str) -> str:
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    refused = [inner for inner in _embedded(ip) if not _public(inner)]
    if refused:
        ip = refused[0]
    elif ip in _LOCAL_NAT64:
        return "a local-use NAT64 address"
    for name, test in (
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("an unspecified address", ip.is_unspecified),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
    ):
        if test:
            return name
    return "not a public address"


def checked_addresses(
    host: str, port: int, allowed: Iterable[Network], resolve: Resolver = socket.getaddrinfo
) -> list[str]:
    """Every address ``host`` resolves to, once; all must be allowed.

    Raises:
        SourceRefused: one of them is not allowed (a name that also resolves to a
            private address is refused: an attacker's DNS can put one in any answer).
        httpcore.ConnectError: the name does not resolve.
    """
    networks = tuple(allowed)
    try:
        answers = resolve(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from None
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    refused = [address for address in addresses if not address_allowed(address, networks)]
    if refused:
        where = refused[0] if refused[0] == host else f"{host} ({refused[0]})"
        raise SourceRefused(
            f"source address {where} is {_kind(refused[0])}, which URL sources may not "
            f"reach unless {NETWORKS_SETTING} allows its network"
        )
    if not addresses:
        raise httpcore.ConnectError(f"cannot resolve {host}: no address")
    return addresses


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to checked addresses."""

    def __init__(self, allowed: Iterable[Network], resolve: Resolver = socket.getaddrinfo):
        self.allowed = tuple(allowed)
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in checked_addresses(host, port, self.allowed, self.resolve):
            try:
                # An IP literal: no second lookup. TLS still verifies ``host`` (httpcore
                # passes the URL's host as the server name to start_tls).
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as failed:
                error = failed
        assert error is not None
        raise error


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a pool whose connections go through :class:`GuardedBackend`."""

    def __init__(self, backend: GuardedBackend, verify: ssl.SSLContext | None) -> None:
        super().__init__(trust_env=False)
        # httpx builds its pool without a backend argument; this is its pool with one.
        self._pool = httpcore.ConnectionPool(
            ssl_context=verify or httpx.create_ssl_context(trust_env=False),
            network_backend=backend,
        )


def guarded_client(
    timeout: float,
    allowed: Iterable[Network] | None = None,
    resolve: Resolver = socket.getaddrinfo,
    verify: ssl.SSLContext | None = None,
) -> httpx.Client:
    """An httpx client that reaches only allowed addresses, on every redirect too
    (``verify``: the TLS context, default the system's trusted authorities)."""
    backend = GuardedBackend(allowed_networks() if allowed is None else allowed, resolve)
    return httpx.Client(
        transport=_GuardedTransport(backend, verify),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )
