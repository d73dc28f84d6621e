"""Media over real network paths: a firewall, NAT, 1:1 NAT, UDP blocked (TURN).

Each test builds namespaces (tests/net/netlab.py), starts the real sidecar in the server
namespace and aiortc phones/technicians in theirs; video must reach the technician.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lens.media.ice import udp_ports_in_use
from lens.turn import ice_servers_for
from tests.net import netlab
from tests.net.conftest import wait_for

pytestmark = pytest.mark.net

PORT_RANGE = (40000, 40019)
FRAMES = 30


def stream(lab, sidecar, phone_role="p", phone_url=None, tech_url=None, phone_args=(),
           tech_args=()):  # fmt: skip
    """A phone publishes, a technician subscribes and receives FRAMES video frames."""
    phone = lab.peer(phone_role, "phone", phone_url or sidecar.url, sidecar.secret, "s1",
                     *phone_args)  # fmt: skip
    answer = phone.next_event("answer")
    connected = phone.next_event("connected")
    tech = lab.peer("t", "technician", tech_url or sidecar.url, sidecar.secret, "s1",
                    "--frames", str(FRAMES), *tech_args)  # fmt: skip
    tech.next_event("connected")
    received = tech.next_event("received")
    assert received["video_frames"] >= FRAMES
    return answer, connected, phone


def counter(lab, role: str, table: str, chain: str, comment: str) -> int:
    """Packets counted by the rule carrying `comment`."""
    listing = lab.exec(role, "iptables", "-w", "-t", table, "-L", chain, "-v", "-n", "-x")
    for line in listing.splitlines():
        if comment in line:
            return int(line.split()[0])
    raise AssertionError(f"no rule {comment!r} in {table}/{chain}:\n{listing}")


def test_firewall_allows_udp_only_inside_the_port_range(lab, start_sidecar):
    low, high = PORT_RANGE
    lab.iptables("s", "-A", "INPUT", "-p", "udp", "--dport", f"{low}:{high}", "-j", "ACCEPT")
    lab.iptables("s", "-A", "INPUT", "-p", "udp", "-m", "comment", "--comment", "udp-outside",
                 "-j", "DROP")  # fmt: skip
    sidecar = start_sidecar({"LENS_MEDIA_PORT_RANGE": f"{low}-{high}"})

    answer, _, _ = stream(lab, sidecar)

    assert answer["candidates"], "the answer offers no candidate"
    assert all(low <= c["port"] <= high for c in answer["candidates"]), answer
    ports = udp_ports_in_use(sidecar.pid)  # every UDP socket the sidecar holds now
    assert ports and all(low <= port <= high for port in ports), ports
    assert counter(lab, "s", "filter", "INPUT", "udp-outside") == 0


def test_phone_behind_a_masquerading_router_streams(lab, start_sidecar):
    out = lab.ifname("r", "s")
    lab.iptables("r", "-t", "nat", "-A", "POSTROUTING", "-s", f"{netlab.PHONE_NET}.0/24",
                 "-o", out, "-m", "comment", "--comment", "masq", "-j", "MASQUERADE")  # fmt: skip
    # a NAT: nothing from outside reaches the phone unless it started the flow
    lab.iptables("r", "-A", "FORWARD", "-d", f"{netlab.PHONE_NET}.0/24", "-m", "conntrack",
                 "!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP")  # fmt: skip
    sidecar = start_sidecar()

    _, connected, _ = stream(lab, sidecar)

    assert connected["local"]["ip"] == netlab.PHONE  # the phone's own address, translated
    assert counter(lab, "r", "nat", "POSTROUTING", "masq") > 0


def test_one_to_one_nat_announced_address(lab, start_sidecar):
    public = "10.22.9.9"
    inside = lab.ifname("r", "s")
    lab.iptables("r", "-t", "nat", "-A", "PREROUTING", "-d", public, "-j", "DNAT",
                 "--to-destination", netlab.SERVER)  # fmt: skip
    lab.iptables("r", "-t", "nat", "-A", "POSTROUTING", "-s", netlab.SERVER, "-j", "SNAT",
                 "--to-source", public)  # fmt: skip
    # the server's own address is not reachable from outside: only the public one
    lab.iptables("r", "-A", "FORWARD", "-o", inside, "-d", netlab.SERVER, "-m", "conntrack",
                 "!", "--ctstate", "DNAT,ESTABLISHED,RELATED", "-j", "DROP")  # fmt: skip
    sidecar = start_sidecar({"LENS_MEDIA_ANNOUNCED_IPV4": public})
    url = f"http://{public}:8765"

    answer, connected, _ = stream(lab, sidecar, phone_url=url, tech_url=url)

    assert {c["ip"] for c in answer["candidates"]} == {public}, answer
    assert all(c["related"] in (None, "0.0.0.0") for c in answer["candidates"]), answer
    assert connected["remote"]["ip"] == public


def coturn_config(lab, secret: str) -> str:
    """docs/deploy/turnserver.conf with this lab's addresses, certificate and secret."""
    cert, key = make_certificate(lab.workdir, netlab.SERVER)
    overrides = {
        "listening-ip": netlab.SERVER,
        "relay-ip": netlab.SERVER,
        "external-ip": None,
        "static-auth-secret": secret,
        "realm": "lens.test",
        "cert": str(cert),
        "pkey": str(key),
        "log-file": str(lab.workdir / "turnserver.log"),
        "pidfile": str(lab.workdir / "turnserver.pid"),
        "denied-peer-ip": None,  # the lab lives in 10.22/16, which the guide denies
    }
    text = (netlab.ROOT / "docs" / "deploy" / "turnserver.conf").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in overrides:
            if overrides[key] is not None:
                lines.append(f"{key}={overrides.pop(key)}")
            continue
        lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items() if v is not None]
    return "\n".join(lines) + "\n"


def make_certificate(folder: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for `ip`; the peers trust it through SSL_CERT_FILE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )  # fmt: skip
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "turn-cert.pem", folder / "turn-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        (f"turn:{netlab.SERVER}:3478?transport=tcp", "tcp"),
        (f"turns:{netlab.SERVER}:5349?transport=tcp", "tls"),
    ],
)
def test_udp_blocked_phone_streams_over_turn(lab, start_sidecar, url, transport):
    secret = "lab-turn-secret-" + lab.tag
    config = lab.workdir / "turnserver.conf"
    config.write_text(coturn_config(lab, secret))
    turn = lab.start("s", "coturn", ["turnserver", "-c", str(config), "--no-cli"], {})
    wait_for(
        lambda: re.search(r":5349\b", lab.exec("s", "ss", "-ltn")) is not None,
        10,
        f"coturn to listen\n{turn.tail()}",
    )
    for chain in ("INPUT", "OUTPUT"):
        lab.iptables("p", "-A", chain, "-p", "udp", "-j", "DROP")
    servers = [{"urls": [url]}]
    phone_ice = ice_servers_for(servers, secret, "phone-s1", ttl=600)
    assert "credential" in phone_ice[0] and "credential" not in servers[0]
    cert = lab.workdir / "turn-cert.pem"
    # the sidecar uses every TURN URL, with credentials it derives from the same secret
    sidecar_urls = [
        f"turn:{netlab.SERVER}:3478?transport=udp",
        f"turn:{netlab.SERVER}:3478?transport=tcp",
        f"turns:{netlab.SERVER}:5349?transport=tcp",
    ]
    sidecar = start_sidecar(
        {
            "LENS_ICE_SERVERS": json.dumps([{"urls": sidecar_urls}]),
            "LENS_TURN_SECRET": secret,
            "LENS_MEDIA_PORT_RANGE": "40000-40019",
            "SSL_CERT_FILE": str(cert),
        }
    )
    lab_env = {"SSL_CERT_FILE": str(cert)}
    phone_args = ("--ice", json.dumps(phone_ice), "--relay-only")

    phone = lab.start("p", "phone", [*peer_argv("phone", sidecar), *phone_args], lab_env)
    answer = phone.next_event("answer")
    connected = phone.next_event("connected")
    tech = lab.peer("t", "technician", sidecar.url, sidecar.secret, "s1", "--frames",
                    str(FRAMES))  # fmt: skip
    assert tech.next_event("received")["video_frames"] >= FRAMES

    assert connected["local"]["type"] == "relay"
    assert connected["turn"] == transport
    # the sidecar's own TURN/UDP allocation, with its own short-lived credentials
    relays = {(c["ip"], c["port"]) for c in answer["candidates"] if c["type"] == "relay"}
    assert len(relays) == len(sidecar_urls), answer
    assert all(40000 <= p <= 40019 for p in udp_ports_in_use(sidecar.pid))


def peer_argv(kind: str, sidecar) -> list[str]:
    return [sys.executable, str(netlab.PEER), kind, sidecar.url, "s1", f"--secret={sidecar.secret}"]


GATHER = """
import asyncio, json, os
from aiortc import sdp
from lens.media import ice
from lens.media.config import load_config

async def main():
    network = load_config().network
    pc = ice.peer_connection(network)
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    media = sdp.SessionDescription.parse(pc.localDescription.sdp).media
    found = [[c.ip, c.port, c.relatedAddress] for m in media for c in m.ice_candidates]
    print(json.dumps({"event": "candidates", "found": found}))

asyncio.run(main())
"""


def test_announced_ipv4_and_ipv6_replace_both_private_addresses(lab):
    """A dual-stack server: each family's host candidate carries its announced address,
    only on the interface named, in the port range; the sidecar's own config path."""
    lab.exec("s", "ip", "-6", "addr", "add", "fd22::2/64", "dev", lab.ifname("s", "r"),
             "nodad")  # fmt: skip
    # a second interface the sidecar must leave alone
    other, other_peer = f"nt{lab.tag}xa", f"nt{lab.tag}xb"
    lab.exec("s", "ip", "link", "add", other, "type", "veth", "peer", "name", other_peer)
    lab.exec("s", "ip", "addr", "add", "10.22.8.8/24", "dev", other)
    lab.exec("s", "ip", "link", "set", other, "up")
    env = {
        "LENS_MEDIA_SECRET": "x",
        "LENS_INSTANCE_PATH": str(lab.workdir / "instance"),
        "LENS_MEDIA_INTERFACES": lab.ifname("s", "r"),
        "LENS_MEDIA_ANNOUNCED_IPV4": "203.0.113.10",
        "LENS_MEDIA_ANNOUNCED_IPV6": "2001:db8::10",
        "LENS_MEDIA_PORT_RANGE": "40000-40009",
    }
    gathered = lab.start("s", "gather", [sys.executable, "-c", GATHER], env)
    candidates = gathered.next_event("candidates")["found"]
    assert sorted(ip for ip, _, _ in candidates) == ["2001:db8::10", "203.0.113.10"], candidates
    assert all(40000 <= port <= 40009 for _, port, _ in candidates)


LEGS_IN_A_ROW = """
import asyncio, json, logging, sys
logging.basicConfig(level=logging.DEBUG if "-v" in sys.argv else logging.WARNING)
from lens.media import ice
from lens.media.config import load_config

async def main():
    network = load_config().network
    relays = []
    for _ in range(6):  # legs closing and opening again at once, as sessions do
        pc = ice.peer_connection(network)
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        relays.append(pc.localDescription.sdp.count(" typ relay"))
        await pc.close()
    print(json.dumps({"event": "relays", "per_leg": relays}))

asyncio.run(main())
"""


DEBUG_LEGS: list[str] = []  # ["-v"]: aioice's debug log in legs.log


def test_turn_allocations_in_a_small_port_range_survive_legs_in_a_row(lab):
    """coturn answers an Allocate from the 5-tuple of an allocation deleted a moment ago
    with 437; six legs in a row, nine TURN ports: each leg still gets its relay (recently
    used ports are taken last, and a 437 is retried on another port)."""
    secret = "lab-turn-secret-" + lab.tag
    config = lab.workdir / "turnserver.conf"
    config.write_text(coturn_config(lab, secret))
    turn = lab.start("s", "coturn", ["turnserver", "-c", str(config), "--no-cli"], {})
    wait_for(
        lambda: re.search(r":3478\b", lab.exec("s", "ss", "-lun")) is not None,
        10,
        f"coturn to listen\n{turn.tail()}",
    )
    env = {
        "LENS_MEDIA_SECRET": "x",
        "LENS_INSTANCE_PATH": str(lab.workdir / "instance"),
        "LENS_MEDIA_PORT_RANGE": "40000-40009",  # one host socket, nine for TURN
        "LENS_MEDIA_IPV6": "0",
        "LENS_ICE_SERVERS": json.dumps([{"urls": f"turn:{netlab.SERVER}:3478"}]),
        "LENS_TURN_SECRET": secret,
    }
    legs = lab.start("s", "legs", [sys.executable, "-c", LEGS_IN_A_ROW, *DEBUG_LEGS], env)
    assert legs.next_event("relays", timeout=60)["per_leg"] == [1] * 6, legs.tail()
