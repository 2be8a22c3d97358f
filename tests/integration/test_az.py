"""AZ-local endpoint answers (docs/az-affinity.md): a snapshot whose ENI addresses are 127.0.N.10,
a describe-subnets.json that puts 127.0.1.0/24 in AZ a, 127.0.2.0/24 in b, 127.0.3.0/24 in c and
127.0.4.0/24 in d (where no endpoint has an ENI), and clients that send from those addresses
(their sockets bound to them). Covers prefer, strict, off, an AZ without an ENI of the endpoint,
az set by ID, az: imds through a fake IMDSv2 on loopback, IMDS unreachable, and --dump --client.
Every packet stays on 127.0.0.0/8."""

import http.server
import json
import signal
import threading

import pytest

import dns.message
import dns.query
import dns.rdatatype

import vdtest
from vdtest import free_port, run_vpcdns, start_vpcdns, vpcdns_argv

R = "eu-west-1"
VPCE = R + ".vpce.amazonaws.com"
# AZ name → (AZ ID, subnet): the IDs differ from the names' letters, as between accounts.
AZS = {
    "a": ("euw1-az3", "subnet-0000000000000000a", "127.0.1.0/24"),
    "b": ("euw1-az1", "subnet-0000000000000000b", "127.0.2.0/24"),
    "c": ("euw1-az2", "subnet-0000000000000000c", "127.0.3.0/24"),
    "d": ("euw1-az4", "subnet-0000000000000000d", "127.0.4.0/24"),
}
SQS_ID = "vpce-0a1b2c3d4e5f60718"
SQS_REGIONAL = "%s-k2j4h6g8.sqs.%s." % (SQS_ID, VPCE)
SQS_PRIVATE = "sqs.%s.amazonaws.com." % R
SQS_IPS = {"a": "127.0.1.10", "b": "127.0.2.10", "c": "127.0.3.10"}
KMS_ID = "vpce-0b2c3d4e5f6071829"
KMS_PRIVATE = "kms.%s.amazonaws.com." % R
KMS_IPS = {"a": "127.0.1.11", "b": "127.0.2.11"}  # no ENI in c or d
AZ_OF_IP = {ip: az for ips in (SQS_IPS, KMS_IPS) for az, ip in ips.items()}
CLIENT = {"a": "127.0.1.5", "b": "127.0.2.5", "c": "127.0.3.5", "d": "127.0.4.5", "none": "127.0.9.5"}
N = 30  # queries per count: a multiple of 3, so plain rotation puts each ENI first N/3 times


def endpoint(eid, service, ips, private):
    names = ["%s-k2j4h6g8.%s.%s" % (eid, service, VPCE)]
    names += ["%s-k2j4h6g8-%s%s.%s.%s" % (eid, R, az, service, VPCE) for az in sorted(ips)]
    names.append(private.rstrip("."))
    return {
        "VpcEndpointId": eid,
        "VpcEndpointType": "Interface",
        "VpcId": "vpc-0e1d2c3b4a5968778",
        "ServiceName": "com.amazonaws.%s.%s" % (R, service),
        "State": "available",
        "IpAddressType": "ipv4",
        "PrivateDnsEnabled": True,
        "NetworkInterfaceIds": ["eni-%s%s" % (eid[5:13], az) for az in sorted(ips)],
        "DnsEntries": [{"DnsName": n, "HostedZoneId": "Z7K1066E3PUKB"} for n in names],
        "DnsOptions": {"DnsRecordIpType": "ipv4"},
    }


def interfaces(eid, ips):
    return [
        {
            "NetworkInterfaceId": "eni-%s%s" % (eid[5:13], az),
            "AvailabilityZone": R + az,
            "SubnetId": AZS[az][1],
            "PrivateIpAddress": ip,
            "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": ip}],
            "Ipv6Addresses": [],
        }
        for az, ip in sorted(ips.items())
    ]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    d = tmp_path_factory.mktemp("az-snapshot")
    eps = [endpoint(SQS_ID, "sqs", SQS_IPS, SQS_PRIVATE), endpoint(KMS_ID, "kms", KMS_IPS, KMS_PRIVATE)]
    (d / "describe-vpc-endpoints.json").write_text(json.dumps({"VpcEndpoints": eps}))
    enis = interfaces(SQS_ID, SQS_IPS) + interfaces(KMS_ID, KMS_IPS)
    (d / "describe-network-interfaces.json").write_text(json.dumps({"NetworkInterfaces": enis}))
    subnets = [
        {"SubnetId": sid, "AvailabilityZone": R + az, "AvailabilityZoneId": azid, "CidrBlock": cidr}
        for az, (azid, sid, cidr) in sorted(AZS.items())
    ]
    # IPv6 clients: ::1 is in AZ c's subnet
    subnets[2]["Ipv6CidrBlockAssociationSet"] = [
        {"Ipv6CidrBlock": "::1/128", "Ipv6CidrBlockState": {"State": "associated"}}
    ]
    (d / "describe-subnets.json").write_text(json.dumps({"Subnets": subnets}))
    return d


def start(tmp_path, snapshot, *extra):
    def argv(port):
        return vpcdns_argv(port, "127.0.0.1:9", snapshot=snapshot, zone=None, extra=["--workers", "1"] + list(extra))

    return start_vpcdns(tmp_path, "127.0.0.1:9", argv=argv)


def ask_from(daemon, source, name, rdtype="A"):
    """The A addresses of name, in answer order, asked over UDP from the address source."""
    q = dns.message.make_query(name, rdtype)
    server = "::1" if ":" in source else "127.0.0.1"
    r = dns.query.udp(q, server, port=daemon.port, timeout=vdtest.TIMEOUT, source=source)
    out = []
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out += [rd.address for rd in rrset]
    return out


def cross_az_share(daemon, az, name, n=N):
    """The share of n answers whose first address is not in the client's AZ."""
    crossed = 0
    for _ in range(n):
        got = ask_from(daemon, CLIENT[az], name)
        assert got, "no answer for %s" % name
        crossed += AZ_OF_IP[got[0]] != az
    return crossed / n


def test_prefer_brings_the_cross_az_share_from_two_thirds_to_zero(tmp_path, snapshot):
    """The figure of the issue: with three AZs, plain rotation sends 2/3 of first addresses to
    another AZ; prefer sends none, for the regional and the private name alike."""
    d = start(tmp_path, snapshot, "--az-affinity", "off")
    try:
        off = {name: cross_az_share(d, "b", name) for name in (SQS_REGIONAL, SQS_PRIVATE)}
    finally:
        d.stop()
    d = start(tmp_path, snapshot)  # prefer is the default
    try:
        prefer = {
            "%s from %s" % (name, az): cross_az_share(d, az, name) for az in "abc" for name in (SQS_REGIONAL, SQS_PRIVATE)
        }
        log = d.proc.stderr_text()
    finally:
        d.stop()
    print("\ncross-AZ first address over %d queries: off %s, prefer %s" % (N, off, prefer))
    for name, share in off.items():
        assert abs(share - 2 / 3) < 0.01, (name, share)
    assert all(share == 0 for share in prefer.values()), prefer
    assert "event=az_affinity phase=start mode=prefer" in log and "source=subnets" in log, log


def test_prefer_keeps_every_address_and_rotates_the_rest(tmp_path, snapshot):
    d = start(tmp_path, snapshot)
    try:
        seen_second = set()
        for _ in range(6):
            got = ask_from(d, CLIENT["a"], SQS_PRIVATE)
            assert got[0] == SQS_IPS["a"] and sorted(got) == sorted(SQS_IPS.values()), got
            seen_second.add(got[1])
        assert seen_second == {SQS_IPS["b"], SQS_IPS["c"]}
        # AZ d has no ENI of either endpoint, an address outside every subnet has no AZ: rotation
        for source in (CLIENT["d"], CLIENT["none"]):
            firsts = {ask_from(d, source, SQS_PRIVATE)[0] for _ in range(6)}
            assert firsts == set(SQS_IPS.values()), (source, firsts)
        # an IPv6 client, by the subnet's IPv6 block
        assert all(ask_from(d, "::1", SQS_PRIVATE)[0] == SQS_IPS["c"] for _ in range(3))
        # zonal names keep their own AZ
        zonal_c = "%s-k2j4h6g8-%sc.sqs.%s." % (SQS_ID, R, VPCE)
        assert ask_from(d, CLIENT["a"], zonal_c) == [SQS_IPS["c"]]
    finally:
        d.stop()


def test_strict_answers_the_clients_az_alone_else_all(tmp_path, snapshot):
    d = start(tmp_path, snapshot, "--az-affinity", "strict")
    try:
        for az in "abc":
            for name in (SQS_REGIONAL, SQS_PRIVATE):
                assert ask_from(d, CLIENT[az], name) == [SQS_IPS[az]]
        # kms has no ENI in c: a client there gets both, rotated
        firsts = set()
        for _ in range(4):
            got = ask_from(d, CLIENT["c"], KMS_PRIVATE)
            assert sorted(got) == sorted(KMS_IPS.values()), got
            firsts.add(got[0])
        assert firsts == set(KMS_IPS.values())
        assert ask_from(d, CLIENT["b"], KMS_PRIVATE) == [KMS_IPS["b"]]
    finally:
        d.stop()


def test_az_setting_by_id_overrides_the_address(tmp_path, snapshot):
    """A sidecar: az names the AZ of every client, by ID (euw1-az1 is eu-west-1b here)."""
    d = start(tmp_path, snapshot, "--az", "euw1-az1")
    try:
        for source in (CLIENT["a"], CLIENT["c"], CLIENT["none"]):
            assert ask_from(d, source, SQS_PRIVATE)[0] == SQS_IPS["b"]
        log = d.proc.stderr_text()
        assert "az=euw1-az1 az_name=eu-west-1b az_id=euw1-az1 source=config" in log, log
    finally:
        d.stop()


class FakeImds(http.server.BaseHTTPRequestHandler):
    """IMDSv2 as far as vpcdns uses it: a token for a PUT with a TTL header, the AZ ID for a
    GET with that token, 401 otherwise. Records what it was asked."""

    token = "AQAEAfakeTokenForTests=="
    az_id = "euw1-az2"
    asked = []

    def do_PUT(self):
        FakeImds.asked.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.send_error(400)
            return
        self.reply(self.token)

    def do_GET(self):
        FakeImds.asked.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self.send_error(401)
            return
        if self.path != "/latest/meta-data/placement/availability-zone-id":
            self.send_error(404)
            return
        self.reply(self.az_id)

    def reply(self, text):
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_az_imds_asks_a_fake_imdsv2_on_loopback(tmp_path, snapshot, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeImds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeImds.asked = []
    monkeypatch.setenv("VPCDNS_TEST_IMDS", "127.0.0.1:%d" % server.server_address[1])
    try:
        d = start(tmp_path, snapshot, "--az", "imds")
        try:
            assert ask_from(d, CLIENT["a"], SQS_PRIVATE)[0] == SQS_IPS["c"]  # euw1-az2 is c
            log = d.proc.stderr_text()
        finally:
            d.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert [a[:2] for a in FakeImds.asked] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/placement/availability-zone-id"),
    ], FakeImds.asked
    assert FakeImds.asked[1][2] == FakeImds.token
    assert "event=az_imds az=euw1-az2" in log, log
    assert "source=imds" in log, log


def test_az_imds_unreachable_starts_without_affinity(tmp_path, snapshot, monkeypatch):
    monkeypatch.setenv("VPCDNS_TEST_IMDS", "127.0.0.1:%d" % free_port(("127.0.0.1",)))
    d = start(tmp_path, snapshot, "--az", "imds")
    try:
        firsts = {ask_from(d, CLIENT["a"], SQS_PRIVATE)[0] for _ in range(6)}
        log = d.proc.stderr_text()
    finally:
        d.stop()
    assert firsts == set(SQS_IPS.values()), firsts  # plain rotation, even from a subnet of AZ a
    assert "level=warn event=az_imds_failed" in log, log
    assert "source=none" in log, log
    r = run_vpcdns(["--snapshot", snapshot, "--az", "imds", "--dump", "--client", CLIENT["a"]])
    assert r.returncode == 0 and "event=az_imds_failed" in r.stderr, r.stderr
    assert r.stdout.splitlines()[0] == "; client 127.0.1.5 az_id= az_name= source=unknown affinity=off"


def test_dump_client_shows_the_ordered_answers(snapshot):
    r = run_vpcdns(["--snapshot", snapshot, "--dump", "--client", CLIENT["b"]])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "; client 127.0.2.5 az_id=euw1-az1 az_name=eu-west-1b source=subnets affinity=prefer"
    private = [line for line in lines if line.startswith(SQS_PRIVATE + " A ")]
    assert private == [SQS_PRIVATE + " A 127.0.2.10 127.0.1.10 127.0.3.10"], lines
    r = run_vpcdns(["--snapshot", snapshot, "--dump", "--client", CLIENT["c"], "--az-affinity", "strict"])
    assert r.returncode == 0, r.stderr
    assert KMS_PRIVATE + " A 127.0.1.11 127.0.2.11" in r.stdout.splitlines(), r.stdout
    r = run_vpcdns(["--snapshot", snapshot, "--client", CLIENT["c"]])
    assert r.returncode == 2 and "--client needs --dump" in r.stderr, r.stderr


def test_unknown_az_warns_and_answers_plain_rotation(tmp_path, snapshot):
    d = start(tmp_path, snapshot, "--az", "euw1-az9")
    try:
        firsts = {ask_from(d, CLIENT["a"], SQS_PRIVATE)[0] for _ in range(6)}
        log = d.proc.stderr_text()
    finally:
        d.stop()
    assert firsts == set(SQS_IPS.values()), firsts
    assert "level=warn event=az_unknown az=euw1-az9" in log, log


def test_az_affinity_changes_on_reload(tmp_path, snapshot):
    conf = tmp_path / "vpcdns.yaml"
    conf.write_text("az_affinity: off\n")
    d = start(tmp_path, snapshot, "--config", conf)
    try:
        assert abs(cross_az_share(d, "a", SQS_PRIVATE, 9) - 2 / 3) < 0.01
        conf.write_text("az_affinity: strict\n")
        d.proc.p.send_signal(signal.SIGHUP)
        assert vdtest.wait_for(lambda: "phase=reload mode=strict" in d.proc.stderr_text(), 10), d.proc.stderr_text()
        assert vdtest.wait_for(lambda: ask_from(d, CLIENT["a"], SQS_PRIVATE) == [SQS_IPS["a"]], 5)
        assert all(ask_from(d, CLIENT["a"], SQS_PRIVATE) == [SQS_IPS["a"]] for _ in range(6))
    finally:
        d.stop()
