"""The sidecar's network settings (lens.media.ice), in one process: no namespaces needed."""

from __future__ import annotations

import asyncio
import socket

import ifaddr
import pytest
from aioice import stun
from aiortc import sdp

from lens.media import ice
from lens.media.ice import NetworkSettings, NetworkSettingsError, load_network_settings

pytestmark = pytest.mark.net


def offer_candidates(network: NetworkSettings) -> list:
    """Gather as the sidecar would, for one video transceiver; the offer's candidates."""

    async def gather():
        pc = ice.peer_connection(network)
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        parsed = sdp.SessionDescription.parse(pc.localDescription.sdp)
        await pc.close()
        return [c for media in parsed.media for c in media.ice_candidates]

    return asyncio.run(asyncio.wait_for(gather(), 20))


def own_ipv4() -> list[str]:
    return [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ip.ip.startswith("127.")
    ]


@pytest.fixture
def has_an_address():
    if not own_ipv4():
        pytest.skip("this host has no IPv4 address besides loopback")


def test_host_candidates_use_the_port_range(has_an_address):
    network = NetworkSettings(port_range=(22600, 22619), use_ipv6=False)
    candidates = offer_candidates(network)
    assert candidates and all(22600 <= c.port <= 22619 for c in candidates)
    assert network.bound and all(22600 <= port <= 22619 for _, port in network.bound)


def test_a_full_port_range_is_an_error_naming_the_setting():
    network = NetworkSettings(port_range=(22620, 22620))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        try:
            taken.bind(("127.0.0.1", 22620))
        except OSError:
            pytest.skip("port 22620 is in use here")
        with pytest.raises(OSError, match="LENS_MEDIA_PORT_RANGE 22620-22620"):
            ice.bind_udp("127.0.0.1", network)


def test_the_announced_address_replaces_the_private_one(has_an_address):
    network = NetworkSettings(announced_ipv4="203.0.113.10", use_ipv6=False)
    candidates = offer_candidates(network)
    assert candidates and {c.ip for c in candidates} == {"203.0.113.10"}
    private = set(own_ipv4())
    assert not private & {c.relatedAddress for c in candidates}


def test_only_the_named_interfaces_are_gathered_on(has_an_address):
    adapter = next(a for a in ifaddr.get_adapters() if a.name != "lo")
    addresses = {ip.ip for ip in adapter.ips if isinstance(ip.ip, str)}
    network = NetworkSettings(interfaces=(adapter.name,), use_ipv6=False)
    assert set(ice.host_addresses(network)) == addresses
    assert ice.host_addresses(NetworkSettings(interfaces=("lo",), use_ipv6=False)) == []


class FakeStun(asyncio.DatagramProtocol):
    """Answers binding requests with a made-up public mapping, and counts them."""

    def __init__(self, mapped_ip: str) -> None:
        self.mapped_ip = mapped_ip
        self.requests = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        request = stun.parse_message(data)
        self.requests += 1
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (self.mapped_ip, addr[1])
        self.transport.sendto(bytes(response), addr)


def test_every_stun_server_is_used(has_an_address):
    async def scenario():
        loop = asyncio.get_running_loop()
        servers = []
        for mapped in ("198.51.100.1", "198.51.100.2"):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda mapped=mapped: FakeStun(mapped), local_addr=("127.0.0.1", 0)
            )
            servers.append((transport, protocol))
        urls = [{"urls": f"stun:127.0.0.1:{t.get_extra_info('sockname')[1]}"} for t, _ in servers]
        network = load_network_settings({"LENS_MEDIA_IPV6": "0"}, urls)
        pc = ice.peer_connection(network)
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        await pc.close()
        for transport, _ in servers:
            transport.close()
        parsed = sdp.SessionDescription.parse(pc.localDescription.sdp)
        found = {c.ip for m in parsed.media for c in m.ice_candidates if c.type == "srflx"}
        return found, [p.requests for _, p in servers]

    found, requests = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert found == {"198.51.100.1", "198.51.100.2"}
    assert all(count >= 1 for count in requests)


@pytest.mark.parametrize(
    ("env", "servers", "message"),
    [
        ({"LENS_MEDIA_PORT_RANGE": "40000"}, [], "LENS_MEDIA_PORT_RANGE must look like"),
        ({"LENS_MEDIA_PORT_RANGE": "50000-40000"}, [], "low first"),
        ({"LENS_MEDIA_PORT_RANGE": "80-90"}, [], "1024-65535"),
        ({"LENS_MEDIA_ANNOUNCED_IPV4": "lens.example.com"}, [], "not an IP address"),
        ({"LENS_MEDIA_ANNOUNCED_IPV4": "2001:db8::1"}, [], "must be an IPv4"),
        ({"LENS_MEDIA_ANNOUNCED_IPV6": "203.0.113.1"}, [], "must be an IPv6"),
        ({"LENS_MEDIA_INTERFACES": "nosuch0"}, [], "unknown interfaces nosuch0"),
        ({}, [{"urls": "turn:t.example:3478"}], "LENS_TURN_SECRET"),
        ({}, [{"urls": "http://t.example"}], "LENS_ICE_SERVERS"),
        ({}, [{"urls": "turn:t.example?transport=sctp"}], "transport must be udp or tcp"),
        ({"LENS_TURN_TTL": "10", "LENS_TURN_SECRET": "s"}, [], "at least 60"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(env, servers, message):
    with pytest.raises(NetworkSettingsError, match=message):
        load_network_settings(env, servers)


def test_good_settings_are_read():
    network = load_network_settings(
        {
            "LENS_MEDIA_PORT_RANGE": "40000-40199",
            "LENS_MEDIA_ANNOUNCED_IPV4": "203.0.113.10",
            "LENS_MEDIA_ANNOUNCED_IPV6": "2001:db8::10",
            "LENS_TURN_SECRET": "s",
        },
        [
            {"urls": ["stun:a.example", "stun:b.example:3479"]},
            {"urls": ["turn:t.example?transport=tcp", "turns:t.example"]},
        ],
    )
    assert network.port_range == (40000, 40199)
    assert (network.announced(4), network.announced(6)) == ("203.0.113.10", "2001:db8::10")
    assert [(u.scheme, u.host, u.port, u.transport) for u in network.ice_servers] == [
        ("stun", "a.example", 3478, "udp"),
        ("stun", "b.example", 3479, "udp"),
        ("turn", "t.example", 3478, "tcp"),
        ("turns", "t.example", 5349, "tcp"),
    ]


def test_the_sidecar_gathers_with_the_servers_sent_with_the_offer(has_an_address):
    """The Admin Center's STUN/TURN setting reaches the sidecar with each leg's offer: the
    sidecar (started with none) gathers with the servers in the request, and refuses a list
    it cannot use with a 400 that names the problem."""
    from tests.media.conftest import running_sidecar

    async def scenario():
        loop = asyncio.get_running_loop()
        transport, stun_server = await loop.create_datagram_endpoint(
            lambda: FakeStun("198.51.100.7"), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        phone = ice.peer_connection([])
        phone.addTransceiver("video", direction="sendonly")
        await phone.setLocalDescription(await phone.createOffer())
        offer = {"sdp": phone.localDescription.sdp, "type": "offer"}
        async with running_sidecar() as sidecar:
            status, answer = await sidecar.call(
                "POST",
                "/sessions/s1/publisher",
                json={**offer, "features": [], "ice_servers": [{"urls": f"stun:127.0.0.1:{port}"}]},
            )
            refused = await sidecar.call(
                "POST",
                "/sessions/s2/publisher",
                json={**offer, "features": [], "ice_servers": [{"urls": "turn:t.example"}]},
            )
        await phone.close()
        transport.close()
        parsed = sdp.SessionDescription.parse(answer["sdp"]) if status == 200 else None
        srflx = {c.ip for m in parsed.media for c in m.ice_candidates if c.type == "srflx"}
        return status, srflx, stun_server.requests, refused

    status, srflx, requests, (refused_status, refused_body) = asyncio.run(
        asyncio.wait_for(scenario(), 30)
    )
    assert status == 200
    assert srflx == {"198.51.100.7"} and requests >= 1
    assert refused_status == 400 and "LENS_TURN_SECRET" in str(refused_body)
