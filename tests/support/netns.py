"""Worker "hosts" on this machine: one Linux network namespace each, with its own address,
reaching the machine's PostgreSQL, Redis and RabbitMQ through TCP forwarders.

Usage::

    with hosts_network(3) as network:           # skips the test when it cannot be made
        host = network.hosts[0]
        env = network.environment({"JOBLEDGER_DATABASE_URL": url, ...})  # URLs re-pointed
        worker = start_worker(..., wrapper=host.wrapper(), env=env)
        host.cut()                              # its link goes down: silence, no RST
        host.reconnect()
        host.kill_all()                         # SIGKILL every process of the host

Layout (names carry this process's pid and a random tag: parallel runs never collide,
and the leftovers of a run that was itself SIGKILLed are swept by the next one)::

    bridge jlb<tag> 10.A.B.1/24 ── veth jlv<tag><i> ── namespace jlh-<pid>-<tag>-<i>
                   │                                   eth0 10.A.B.(11+i)/24
                   └─ socat 10.A.B.1:<port> -> 127.0.0.1:<port> (5432, 6379, 5672)

Why forwarders, and why socat: the services listen on 127.0.0.1 only, which a namespace
cannot reach. The alternatives are iptables DNAT with ``route_localnet`` (iptables is
not installed on this kind of machine, and the NAT rules and sysctl would be global
state shared with the other test runs) or private servers bound to the bridge (a second
PostgreSQL/Redis/RabbitMQ per run, minutes of start-up for RabbitMQ). ``socat`` is a
small, long-kept C program (``apt-get install socat``, .ci/setup), one process per
forwarded connection, so it costs the benchmark little CPU; one listener per service on
the bridge serves every host. The services see every host's connections as coming from
127.0.0.1 (trust authentication works unchanged).

Cutting a host off takes its veth down on the bridge side: its packets go nowhere and
nothing answers, as when a cable is pulled or a switch port dies. Its TCP connections
are not reset; the forwarders keep their upstream ends open, so the broker and
PostgreSQL only notice through their own heartbeats and timeouts, as they would in
production. Reconnecting brings the link back and the same connections resume.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: The services a host reaches through the bridge: PostgreSQL, Redis, RabbitMQ.
FORWARDED_PORTS = (5432, 6379, 5672)
NAMESPACE_PREFIX = "jlh-"
LOOPBACK = "127.0.0.1"


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``/``socat``, a container
    without ``CAP_NET_ADMIN``): the message says which."""


@dataclass
class Host:
    """One worker host: a network namespace, its address, and its link on the bridge."""

    index: int
    namespace: str
    address: str
    #: The veth end on the bridge (in the root namespace): down = host cut off.
    link: str

    def wrapper(self) -> tuple[str, ...]:
        """The command prefix that runs a program on this host."""
        return ("ip", "netns", "exec", self.namespace)

    def pids(self) -> list[int]:
        """Every process running in this host's namespace."""
        out = _ip("netns", "pids", self.namespace, check=False)
        return [int(pid) for pid in out.split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process of the host at once (the machine dies); their pids."""
        killed = self.pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return killed

    def cut(self) -> None:
        """Take the host's link down: it can reach nothing, and nothing reaches it."""
        _ip("link", "set", "dev", self.link, "down")

    def reconnect(self) -> None:
        _ip("link", "set", "dev", self.link, "up")


@dataclass
class Network:
    """The bridge, the forwarders and the hosts of one run."""

    tag: str
    bridge: str
    gateway: str
    hosts: list[Host] = field(default_factory=list)
    forwarders: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, url: str) -> str:
        """``url`` with its host 127.0.0.1 (or localhost) replaced by the bridge address, as
        a process on one of the hosts must use it."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in (LOOPBACK, "localhost"):
            return url
        netloc = re.sub(rf"(^|@)({re.escape(host)})(?=:|$)", rf"\g<1>{self.gateway}", parts.netloc)
        return urlunsplit(parts._replace(netloc=netloc))

    def environment(self, env: Mapping[str, str], *names: str) -> dict[str, str]:
        """``env`` with the URLs in ``names`` (default: the ledger and the broker) pointed
        at the bridge."""
        result = dict(env)
        for name in names or ("JOBLEDGER_DATABASE_URL", "JOBLEDGER_BROKER_URL"):
            if name in result:
                result[name] = self.url(result[name])
        return result


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool in ("ip", "socat"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/setup installs it with apt-get)"
    probe = f"{NAMESPACE_PREFIX}{os.getpid()}-probe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as error:
        return f"cannot make a network namespace here: {error.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


@contextlib.contextmanager
def hosts_network(count: int, log_dir: Path | None = None) -> Iterator[Network]:
    """``count`` hosts on one bridge with forwarders to the local services; everything is
    removed at the end of the block, whether it raised or not. Raises
    :class:`NamespacesUnavailable` when namespaces cannot be made here."""
    reason = available()
    if reason is not None:
        raise NamespacesUnavailable(reason)
    sweep_leftovers()
    network = _make(count, log_dir)
    try:
        yield network
    finally:
        teardown(network)


def _make(count: int, log_dir: Path | None) -> Network:
    tag = uuid.uuid4().hex[:6]
    subnet = _free_subnet()
    hosts_addresses = list(subnet.hosts())
    network = Network(tag=tag, bridge=f"jlb{tag}", gateway=str(hosts_addresses[0]))
    try:
        _ip("link", "add", network.bridge, "type", "bridge")
        # who made it, for the sweep of a run that could not clean up after itself
        _ip("link", "set", "dev", network.bridge, "alias", f"jobledger-hosts pid={os.getpid()}")
        _ip("addr", "add", f"{network.gateway}/{subnet.prefixlen}", "dev", network.bridge)
        _ip("link", "set", "dev", network.bridge, "up")
        for index in range(count):
            network.hosts.append(_add_host(network, index, str(hosts_addresses[10 + index])))
        for port in FORWARDED_PORTS:
            network.forwarders.append(_forward(network.gateway, port, log_dir))
        _wait_listening(network.gateway, FORWARDED_PORTS)
    except BaseException:
        teardown(network)
        raise
    return network


def _add_host(network: Network, index: int, address: str) -> Host:
    namespace = f"{NAMESPACE_PREFIX}{os.getpid()}-{network.tag}-{index}"
    link, peer = f"jlv{network.tag}{index}", f"jlp{network.tag}{index}"
    _ip("netns", "add", namespace)
    host = Host(index=index, namespace=namespace, address=address, link=link)
    _ip("link", "add", link, "type", "veth", "peer", "name", peer)
    _ip("link", "set", "dev", peer, "netns", namespace)
    _ip("link", "set", "dev", link, "master", network.bridge)
    _ip("link", "set", "dev", link, "up")
    inside = ("-n", namespace)
    _ip(*inside, "link", "set", "dev", "lo", "up")
    _ip(*inside, "link", "set", "dev", peer, "name", "eth0")
    _ip(*inside, "addr", "add", f"{address}/24", "dev", "eth0")
    _ip(*inside, "link", "set", "dev", "eth0", "up")
    _ip(*inside, "route", "add", "default", "via", network.gateway)
    return host


def _forward(address: str, port: int, log_dir: Path | None) -> subprocess.Popen[bytes]:
    """A socat listener on the bridge forwarding each connection to the local service.
    ``keepalive`` on both sides: a forwarded connection whose host vanished for good is
    closed eventually instead of holding a server session forever."""
    log: Any = subprocess.DEVNULL
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = (log_dir / f"socat-{port}.log").open("wb")
    return subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{port},bind={address},fork,reuseaddr,keepalive,backlog=512",
            f"TCP:{LOOPBACK}:{port},keepalive",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,  # its forked children go with it (killpg at teardown)
    )


def _wait_listening(address: str, ports: tuple[int, ...], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    wanted = {f"{address}:{port}" for port in ports}
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
        listening = {line.split()[3] for line in out.splitlines() if len(line.split()) > 3}
        if wanted <= listening:
            return
        time.sleep(0.05)  # polling interval of the check
    raise RuntimeError(f"forwarders not listening on {sorted(wanted)} after {timeout}s")


def teardown(network: Network) -> None:
    """Kill the hosts' processes and the forwarders, delete the namespaces and the bridge.
    Safe to call twice and on a half-made network."""
    for host in network.hosts:
        host.kill_all()
    for forwarder in network.forwarders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(forwarder.pid, signal.SIGKILL)
        forwarder.wait(10)
    network.forwarders.clear()
    for host in network.hosts:
        _delete_namespace(host.namespace)
    _ip("link", "delete", network.bridge, check=False)


def sweep_leftovers() -> None:
    """Remove the namespaces and bridges of runs whose process is gone (a run killed
    before its clean-up): never those of a live run."""
    for namespace in _ip("netns", "list", check=False).split():
        match = re.fullmatch(rf"{NAMESPACE_PREFIX}(\d+)-.*", namespace)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            _delete_namespace(namespace)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).splitlines():
        match = re.search(r"^\d+: (jlb\w+):.*alias jobledger-hosts pid=(\d+)", line)
        if match and not Path(f"/proc/{match.group(2)}").exists():
            _ip("link", "delete", match.group(1), check=False)
    addresses = _ip("-4", "-o", "addr", "show", check=False)
    for pid, listening in _forwarders():
        if f"inet {listening}/" not in addresses:  # its bridge is gone: so is its run
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _forwarders() -> list[tuple[int, str]]:
    """``(pid, address)`` of the forwarders this module starts (a ``socat`` leading its own
    session, listening on a bridge address of :func:`_free_subnet`'s range), whichever
    run started them."""
    pattern = re.compile(r"TCP-LISTEN:\d+,bind=(10\.20[0-7]\.\d+\.1),fork,.*")
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = entry.read_bytes().split(b"\0")
            pid = int(entry.parent.name)
            leader = os.getsid(pid) == pid
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile
        match = pattern.fullmatch(words[1].decode(errors="replace")) if len(words) > 1 else None
        if words[0] == b"socat" and match and leader:
            found.append((pid, match.group(1)))
    return found


def _delete_namespace(namespace: str) -> None:
    for pid in _ip("netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "delete", namespace, check=False)  # its veth end goes with it


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no interface or route of the machine uses."""
    used = _ip("-4", "-o", "addr", "show", check=False) + _ip("-4", "route", check=False)
    taken = [
        ipaddress.ip_network(found, strict=False)
        for found in re.findall(r"\d+\.\d+\.\d+\.\d+/\d+", used)
    ]
    for _ in range(100):
        second, third = random.randint(200, 207), random.randint(0, 255)
        candidate = ipaddress.ip_network(f"10.{second}.{third}.0/24")
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise RuntimeError("no free 10.200.0.0/13 subnet for the hosts' bridge")


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, ["ip", *args], done.stdout, done.stderr
        )
    return done.stdout
