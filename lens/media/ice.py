"""The sidecar on real networks: which addresses and ports its ICE candidates use.

aioice binds every media socket to port 0 on every interface, offers the private address
of a host behind 1:1 NAT, and aiortc hands it only the first STUN and the first TURN
server. This module is the one place that changes that, per peer connection:

- `LENS_MEDIA_PORT_RANGE` ("40000-40199"): every UDP socket the sidecar uses for media,
  host candidates and TURN/UDP client sockets alike, is bound inside the range;
- `LENS_MEDIA_ANNOUNCED_IPV4` / `LENS_MEDIA_ANNOUNCED_IPV6`: the public address (1:1 NAT,
  a cloud VM's elastic IP) offered instead of the interface's own in host candidates; the
  private address then appears nowhere in the candidates (no srflx, no related address);
- `LENS_MEDIA_INTERFACES` ("eth0,ens5"): the interfaces gathered on (default: all but lo);
- every STUN and TURN URL of `LENS_ICE_SERVERS` (server-reflexive candidates from each
  STUN server, a relayed candidate from each TURN URL over UDP, TCP or TLS), with TURN
  credentials derived from `LENS_TURN_SECRET` (the TURN REST API scheme, lens.turn).

`peer_connection(network)` makes an RTCPeerConnection whose gatherers use these settings;
the sessions module calls it where it made a plain RTCPeerConnection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import ifaddr
from aioice import Candidate, ice, stun, turn
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.rtcicetransport import parse_stun_turn_uri

from lens.media.udp import UdpTransport
from lens.turn import turn_credentials

logger = logging.getLogger(__name__)

HIDDEN_ADDRESS = {4: ("0.0.0.0", 9), 6: ("::", 9)}  # RFC 8839 5.1: no address revealed
ALLOCATE_ATTEMPTS = 3
# coturn keeps a deleted allocation's 5-tuple for a while and answers a new Allocate from
# it with 437: a TURN/UDP client port rests this long before it is chosen again first
TURN_PORT_REST = 120.0


class NetworkSettingsError(ValueError):
    """A network setting that cannot be used, with the variable named in the message."""


@dataclass(frozen=True)
class IceServerUrl:
    """One STUN or TURN URL, parsed."""

    scheme: str  # stun, turn, turns
    host: str
    port: int
    transport: str = "udp"  # TURN only: udp or tcp (turns: tcp + TLS)
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.scheme in ("turn", "turns")


@dataclass(frozen=True)
class NetworkSettings:
    """How the sidecar gathers ICE candidates; the defaults are aioice's behaviour."""

    ice_servers: tuple[IceServerUrl, ...] = ()
    port_range: tuple[int, int] | None = None
    announced_ipv4: str | None = None
    announced_ipv6: str | None = None
    interfaces: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: int = 21600
    gather_timeout: float = 3.0
    use_ipv6: bool = True
    # the last sockets bound, for the tests: (address, port)
    bound: deque[tuple[str, int]] = field(
        default_factory=lambda: deque(maxlen=256), compare=False, repr=False
    )
    # TURN/UDP client ports by when they were last taken (see TURN_PORT_REST)
    recent_turn_ports: dict[int, float] = field(default_factory=dict, compare=False, repr=False)

    def announced(self, version: int) -> str | None:
        return self.announced_ipv4 if version == 4 else self.announced_ipv6


def parse_ice_servers(servers: list[dict[str, Any]]) -> tuple[IceServerUrl, ...]:
    """Every URL of a JSON list of RTCIceServer objects, or a NetworkSettingsError."""
    urls = []
    for number, server in enumerate(servers, 1):
        if not isinstance(server, dict) or "urls" not in server:
            raise NetworkSettingsError(
                f"LENS_ICE_SERVERS entry {number} must be an object with 'urls'"
            )
        raw = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for uri in raw:
            try:
                parsed = parse_stun_turn_uri(str(uri))
            except ValueError as exc:
                raise NetworkSettingsError(f"LENS_ICE_SERVERS: {uri!r}: {exc}") from exc
            if parsed["scheme"] == "stuns":
                raise NetworkSettingsError(f"LENS_ICE_SERVERS: {uri!r}: stuns is not supported")
            transport = parsed.get("transport") or "udp"
            if transport not in ("udp", "tcp") or (
                parsed["scheme"] == "turns" and transport != "tcp"
            ):
                raise NetworkSettingsError(
                    f"LENS_ICE_SERVERS: {uri!r}: transport must be udp or tcp (turns: tcp)"
                )
            urls.append(
                IceServerUrl(
                    scheme=parsed["scheme"],
                    host=parsed["host"],
                    port=parsed["port"],
                    transport=transport,
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
    return tuple(urls)


def parse_port_range(raw: str) -> tuple[int, int]:
    """'40000-40199' → (40000, 40199), or a NetworkSettingsError."""
    try:
        low, high = (int(part) for part in raw.split("-"))
    except ValueError as exc:
        raise NetworkSettingsError(
            f"LENS_MEDIA_PORT_RANGE must look like 40000-40199, got {raw!r}"
        ) from exc
    if not 1024 <= low <= high <= 65535:
        raise NetworkSettingsError(
            f"LENS_MEDIA_PORT_RANGE must lie within 1024-65535, low first, got {raw!r}"
        )
    return low, high


def _address(name: str, env: Mapping[str, str], version: int) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw)
    except ValueError as exc:
        raise NetworkSettingsError(f"{name} is not an IP address: {raw!r}") from exc
    if address.version != version:
        raise NetworkSettingsError(f"{name} must be an IPv{version} address, got {raw!r}")
    return str(address)


def load_network_settings(
    env: Mapping[str, str], ice_servers: list[dict[str, Any]]
) -> NetworkSettings:
    """Read LENS_MEDIA_PORT_RANGE / _ANNOUNCED_IPV4 / _ANNOUNCED_IPV6 / _INTERFACES /
    _GATHER_TIMEOUT / _IPV6 and LENS_TURN_SECRET / LENS_TURN_TTL."""
    servers = parse_ice_servers(ice_servers)
    turn_secret = env.get("LENS_TURN_SECRET") or None
    if any(url.is_turn and not url.credential for url in servers) and not turn_secret:
        raise NetworkSettingsError(
            "LENS_ICE_SERVERS lists a TURN server without a credential: set LENS_TURN_SECRET "
            "(coturn's static-auth-secret) so short-lived credentials can be made"
        )
    interfaces = tuple(
        i.strip() for i in env.get("LENS_MEDIA_INTERFACES", "").split(",") if i.strip()
    )
    known = {adapter.name for adapter in ifaddr.get_adapters()}
    unknown = [name for name in interfaces if name not in known]
    if unknown:
        raise NetworkSettingsError(
            f"LENS_MEDIA_INTERFACES names unknown interfaces {', '.join(unknown)} "
            f"(this host has {', '.join(sorted(known))})"
        )
    try:
        gather_timeout = float(env.get("LENS_MEDIA_GATHER_TIMEOUT") or 3.0)
        turn_ttl = int(env.get("LENS_TURN_TTL") or 21600)
    except ValueError as exc:
        raise NetworkSettingsError(
            f"LENS_MEDIA_GATHER_TIMEOUT / LENS_TURN_TTL must be numbers: {exc}"
        ) from exc
    if turn_ttl < 60:
        raise NetworkSettingsError("LENS_TURN_TTL must be at least 60 seconds")
    raw_range = env.get("LENS_MEDIA_PORT_RANGE", "")
    return NetworkSettings(
        ice_servers=servers,
        port_range=parse_port_range(raw_range) if raw_range else None,
        announced_ipv4=_address("LENS_MEDIA_ANNOUNCED_IPV4", env, 4),
        announced_ipv6=_address("LENS_MEDIA_ANNOUNCED_IPV6", env, 6),
        interfaces=interfaces,
        turn_secret=turn_secret,
        turn_ttl=turn_ttl,
        gather_timeout=gather_timeout,
        use_ipv6=env.get("LENS_MEDIA_IPV6", "1") != "0",
    )


MAX_SITE_ICE_SERVERS = 16


def with_site_ice_servers(
    base: NetworkSettings | list[dict[str, Any]] | None, servers: Any
) -> NetworkSettings:
    """The sidecar's settings with the site's STUN/TURN servers (the Admin Center's setting,
    sent by the web with each leg) in place of LENS_ICE_SERVERS; a NetworkSettingsError for
    a list that cannot be used. Port range, announced addresses and the TURN secret stay."""
    if not isinstance(servers, list) or len(servers) > MAX_SITE_ICE_SERVERS:
        raise NetworkSettingsError(
            f"ice_servers must be a list of at most {MAX_SITE_ICE_SERVERS} RTCIceServer objects"
        )
    if not isinstance(base, NetworkSettings):
        base = NetworkSettings(ice_servers=parse_ice_servers(base or []))
    parsed = parse_ice_servers(servers)
    if any(url.is_turn and not url.credential for url in parsed) and not base.turn_secret:
        raise NetworkSettingsError(
            "ice_servers lists a TURN server without a credential and this sidecar has no "
            "LENS_TURN_SECRET"
        )
    return dataclasses.replace(base, ice_servers=parsed)


# ----- the hook ----------------------------------------------------------------------------


class LensPeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose ICE gatherers follow the sidecar's NetworkSettings."""

    def __init__(self, network: NetworkSettings, configuration: RTCConfiguration) -> None:
        super().__init__(configuration)
        self._network = network

    async def setLocalDescription(self, sessionDescription=None) -> None:  # noqa: N802, N803
        # aiortc gathers inside setLocalDescription; every gatherer exists by then
        for connection in _ice_connections(self):
            use_network_settings(connection, self._network)
        await super().setLocalDescription(sessionDescription)


def peer_connection(network: NetworkSettings | list[dict[str, Any]]) -> RTCPeerConnection:
    """A bundled peer connection that gathers as `network` (or, with defaults, a JSON list
    of ICE servers) says."""
    if not isinstance(network, NetworkSettings):
        network = NetworkSettings(ice_servers=parse_ice_servers(network))
    # aiortc's own ICE-server handling (first STUN, first TURN) is bypassed: an empty list
    # here, every server of `network` used by the gatherer below
    return LensPeerConnection(
        network, RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


def _ice_connections(pc: RTCPeerConnection) -> list[ice.Connection]:
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    seen: dict[int, ice.Connection] = {}
    for dtls in transports:
        if dtls is not None:
            connection = dtls.transport.iceGatherer._connection
            seen[id(connection)] = connection
    return list(seen.values())


def use_network_settings(connection: ice.Connection, network: NetworkSettings) -> None:
    """Make `connection` gather with `network` (once; before it has gathered)."""
    if getattr(connection, "_lens_network", None) is not None:
        return
    connection._lens_network = network
    connection.gather_candidates = partial(gather_candidates, connection, network)


# ----- gathering -----------------------------------------------------------------------------


def host_addresses(network: NetworkSettings) -> list[str]:
    """The addresses to gather on: the chosen interfaces' (default all), loopback left out."""
    addresses = []
    for adapter in ifaddr.get_adapters():
        if network.interfaces and adapter.name not in network.interfaces:
            continue
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                if not ipaddress.ip_address(ip.ip).is_loopback:
                    addresses.append(ip.ip)
            elif network.use_ipv6 and ip.ip[0] != "::1" and ip.ip[2] == 0:  # no link-local
                addresses.append(ip.ip[0])
    return addresses


async def gather_candidates(connection: ice.Connection, network: NetworkSettings) -> None:
    """aioice's Connection.gather_candidates, with the network settings applied."""
    if connection._local_candidates_start:
        return
    connection._local_candidates_start = True
    addresses = []
    if connection._transport_policy == ice.TransportPolicy.ALL:
        addresses = host_addresses(network)
    for component in sorted(connection._components):
        connection._local_candidates += await component_candidates(
            connection, network, component, addresses
        )
    connection._local_candidates_end = True


def bind_udp(
    address: str,
    network: NetworkSettings,
    avoid: frozenset[int] = frozenset(),
    last_resort: frozenset[int] = frozenset(),
) -> socket.socket:
    """A UDP socket bound to `address`, inside the port range if there is one: never on
    a port in `avoid`, on one in `last_resort` only when no other is free."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    if network.port_range is None:
        ports = [0]
    else:
        low, high = network.port_range
        start = random.randint(low, high)  # spread sessions over the range
        ports = [*range(start, high + 1), *range(low, start)]
        ports.sort(key=lambda port: port in last_resort)  # stable: keeps the rotation
    for port in ports:
        if port in avoid:
            continue
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
        network.bound.append((address, sock.getsockname()[1]))
        return sock
    raise OSError(
        f"no free UDP port on {address} in LENS_MEDIA_PORT_RANGE "
        f"{network.port_range[0]}-{network.port_range[1]}: widen the range"
    )


async def component_candidates(
    connection: ice.Connection, network: NetworkSettings, component: int, addresses: list[str]
) -> list[Candidate]:
    """Host candidates (announced address, port range), then srflx and relay from every
    STUN and TURN URL, waiting at most `gather_timeout` for the servers."""
    loop = asyncio.get_running_loop()
    candidates = []
    host_protocols = []
    for address in addresses:
        try:
            sock = bind_udp(address, network)
        except OSError as exc:
            logger.error("cannot gather on %s: %s", address, exc)
            continue
        # our transport, not asyncio's: batched reads, kernel arrival stamps (lens.media.udp)
        protocol = ice.StunProtocol(connection)
        UdpTransport(loop, sock, protocol)
        bound = protocol.transport.get_extra_info("sockname")
        version = ipaddress.ip_address(bound[0]).version
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", bound[0]),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=network.announced(version) or bound[0],
            port=bound[1],
            type="host",
        )
        host_protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    connection._protocols += host_protocols

    tasks = []
    for url in network.ice_servers:
        if url.scheme == "stun":
            for protocol in host_protocols:
                version = ipaddress.ip_address(protocol.local_candidate.host).version
                # srflx is IPv4 only in aioice; an announced address makes it pointless and
                # would reveal the private one as its related address
                if version == 4 and network.announced(4) is None:
                    tasks.append(loop.create_task(_srflx(protocol, (url.host, url.port))))
        elif url.is_turn:
            tasks.append(loop.create_task(_relayed(connection, network, component, url)))
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=network.gather_timeout)
        for task in pending:
            task.cancel()
        seen = {(c.host, c.port) for c in candidates}
        for task in done:
            if task.exception() is not None:
                logger.warning("ICE server unusable: %s", task.exception())
                continue
            candidate, relay_protocol = task.result()
            if (candidate.host, candidate.port) in seen:  # two STUN servers, one mapping
                continue
            seen.add((candidate.host, candidate.port))
            candidates.append(candidate)
            if relay_protocol is not None:
                connection._protocols.append(relay_protocol)
        if pending:
            logger.warning(
                "%d ICE server(s) did not answer within %.1f s (LENS_MEDIA_GATHER_TIMEOUT)",
                len(pending),
                network.gather_timeout,
            )
    return candidates


async def _srflx(protocol: ice.StunProtocol, server: tuple[str, int]) -> tuple[Candidate, None]:
    return await ice.server_reflexive_candidate(protocol, server)


async def _relayed(
    connection: ice.Connection, network: NetworkSettings, component: int, url: IceServerUrl
) -> tuple[Candidate, ice.StunProtocol]:
    """A relayed candidate from one TURN URL; TURN/UDP's client socket in the port range."""
    username, password = url.username, url.credential
    if not password:
        username, password = turn_credentials(
            network.turn_secret or "", "lens-media", network.turn_ttl
        )
    server = (url.host, url.port)

    def make_client(cls: type) -> Any:
        return cls(server, username=username, password=password, lifetime=600,
                   channel_refresh_time=turn.DEFAULT_CHANNEL_REFRESH_TIME)  # fmt: skip

    protocol = ice.StunProtocol(connection)
    tried: set[int] = set()
    for attempt in range(1, ALLOCATE_ATTEMPTS + 1):
        inner_transport, inner = await _turn_client(url, network, make_client, frozenset(tried))
        if url.transport == "udp":
            tried.add(inner_transport.get_extra_info("sockname")[1])
        try:
            await turn.TurnTransport(inner)._connect(protocol)
            break
        except stun.TransactionFailed as exc:
            inner_transport.close()
            code = exc.response.attributes.get("ERROR-CODE", (0, ""))[0]
            # 437: the server still holds an allocation for this 5-tuple (a leg closed a
            # moment ago on the same port of the range): another port, another try
            if code != 437 or url.transport != "udp" or attempt == ALLOCATE_ATTEMPTS:
                raise
        except BaseException:
            inner_transport.close()
            raise
    relayed = protocol.transport.get_extra_info("sockname")
    related = protocol.transport.get_extra_info("related_address")
    version = ipaddress.ip_address(relayed[0]).version
    if (
        network.announced(version) is not None
        or connection._transport_policy == ice.TransportPolicy.RELAY
    ):
        related = HIDDEN_ADDRESS[version]
    protocol.local_candidate = Candidate(
        foundation=candidate_foundation("relay", "udp", relayed[0]),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "relay"),
        host=relayed[0],
        port=relayed[1],
        type="relay",
        related_address=related[0],
        related_port=related[1],
    )
    return protocol.local_candidate, protocol


async def _turn_client(
    url: IceServerUrl, network: NetworkSettings, make_client: Any, avoid: frozenset[int]
) -> tuple[asyncio.BaseTransport, Any]:
    """The connection to a TURN server: TCP (TLS for turns:), or UDP from the port range."""
    loop = asyncio.get_running_loop()
    if url.transport == "tcp":
        tls = ssl.create_default_context() if url.scheme == "turns" else None
        return await loop.create_connection(
            lambda: make_client(turn.TurnClientTcpProtocol),
            host=url.host,
            port=url.port,
            ssl=tls,
            server_hostname=url.host if tls else None,
        )
    infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_DGRAM)
    family, *_, remote = infos[0]
    now = time.monotonic()
    recent = network.recent_turn_ports
    for port, used in list(recent.items()):
        if now - used > TURN_PORT_REST:
            del recent[port]
    local = "0.0.0.0" if family == socket.AF_INET else "::"
    sock = bind_udp(local, network, avoid, last_resort=frozenset(recent))
    recent[sock.getsockname()[1]] = now
    sock.connect(remote)
    return await loop.create_datagram_endpoint(
        lambda: make_client(turn.TurnClientUdpProtocol), sock=sock
    )


def udp_ports_in_use(pid: int | None = None) -> list[int]:
    """The local ports of the UDP sockets this process holds (Linux), for the tests."""
    pid = os.getpid() if pid is None else pid
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("udp", "udp6"):
        with open(f"/proc/{pid}/net/{table}") as file:
            next(file)
            for line in file:
                parts = line.split()
                if parts[9] in inodes:
                    ports.append(int(parts[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


__all__ = [
    "IceServerUrl",
    "NetworkSettings",
    "NetworkSettingsError",
    "load_network_settings",
    "peer_connection",
]
