"""Views: one vpcdns serving the endpoints of two VPCs, each to its own clients.

The snapshot tests/data/integ/views holds two VPCs (ENI addresses in 127.1.0.0/16 for VPC A,
127.2.0.0/16 for VPC B): both have an SQS endpoint with private DNS, A has an S3 endpoint with
PrivateDnsOnlyForInboundResolverEndpoint, B an Athena endpoint. Clients send from different
127.x source addresses, which the config maps to views; the upstream NSD answers the public
names (the public S3 answer is 198.51.100.8)."""

import re
import signal
import time

import dns.message
import dns.query
import dns.rcode
import pytest

import vdtest
from vdtest import CORP_ZONE, DATA, VPCDNS, make_query

VIEWS_SNAPSHOT = DATA / "views"
VPC_A = "vpc-0a1a1a1a1a1a1a1a1"
VPC_B = "vpc-0b2b2b2b2b2b2b2b2"
SQS = "sqs.eu-west-1.amazonaws.com."
ATHENA = "athena.eu-west-1.amazonaws.com."
S3 = "s3.eu-west-1.amazonaws.com."
BUCKET = "my-bucket.s3.eu-west-1.amazonaws.com."
S3_VPCE = "bucket.vpce-0a2000000000000a2-aaaa2222.s3.eu-west-1.vpce.amazonaws.com."
SQS_B_VPCE = "vpce-0b1000000000000b1-bbbb1111.sqs.eu-west-1.vpce.amazonaws.com."
PUBLIC_S3 = {"198.51.100.8"}
SQS_A = {"127.1.1.10", "127.1.2.10"}
SQS_B = {"127.2.1.10"}

VIEWS = """views:
  - {name: a, clients: [127.0.10.0/24], vpc: %s}
  - {name: b, clients: [127.0.20.0/24, 127.0.10.7/32, "::1/128"], vpc: %s}
  - {name: onprem, clients: [127.0.30.0/24], vpc: %s, inbound: true}
""" % (VPC_A, VPC_B, VPC_A)

# the reload: view a moves to 127.0.11.0/24, b becomes the default view
VIEWS_CHANGED = """views:
  - {name: a, clients: [127.0.11.0/24], vpc: %s}
  - {name: b, clients: [127.0.20.0/24], vpc: %s, default: true}
""" % (VPC_A, VPC_B)


def config_text(port, upstream, views):
    return (
        "listen: [127.0.0.1:%d, \"[::1]:%d\"]\n"
        "upstream: %s\n"
        "snapshot: %s\n"
        "zone: %s\n"
        "workers: 2\n"
        "cache_size: 0\n" % (port, port, upstream, VIEWS_SNAPSHOT, CORP_ZONE)
    ) + views


@pytest.fixture
def served(tmp_path, start_daemon, nsd):
    upstream = "%s:%d" % nsd
    cfg = tmp_path / "vpcdns.yaml"
    ports = []

    def argv(port):
        ports.append(port)
        cfg.write_text(config_text(port, upstream, VIEWS))
        return [VPCDNS, "--config", cfg, "--no-watch"]

    d = start_daemon(upstream, argv=argv, probe="www.corp.example.")
    return d, cfg, upstream


def ask(d, name, source, rdtype="A", tcp=False):
    q = make_query(name, rdtype)
    host = "::1" if ":" in source else "127.0.0.1"
    if tcp:
        return dns.query.tcp(q, host, port=d.port, source=source, timeout=vdtest.TIMEOUT)
    return dns.query.udp(q, host, port=d.port, source=source, timeout=vdtest.TIMEOUT)


def addrs(msg):
    return {rr.address for rrset in msg.answer if rrset.rdtype == 1 for rr in rrset}


def test_each_view_sees_its_own_vpc(served):
    d, _, _ = served
    a = ask(d, SQS, "127.0.10.5")
    assert a.rcode() == dns.rcode.NOERROR and addrs(a) == SQS_A, a
    b = ask(d, SQS, "127.0.20.5")
    assert b.rcode() == dns.rcode.NOERROR and addrs(b) == SQS_B, b
    # Athena has an endpoint in VPC B only: B gets its ENI, A the public answer (none here)
    assert addrs(ask(d, ATHENA, "127.0.20.5")) == {"127.2.1.30"}
    a_athena = ask(d, ATHENA, "127.0.10.5")
    assert a_athena.rcode() != dns.rcode.REFUSED and not addrs(a_athena) & {"127.2.1.30"}
    # a vpce name of VPC B is not VPC A's: forwarded for A, answered for B
    assert addrs(ask(d, SQS_B_VPCE, "127.0.20.5")) == SQS_B
    assert not addrs(ask(d, SQS_B_VPCE, "127.0.10.5")) & SQS_B
    # over TCP the same
    assert addrs(ask(d, SQS, "127.0.20.5", tcp=True)) == SQS_B
    assert addrs(ask(d, SQS, "127.0.10.5", tcp=True)) == SQS_A


def test_the_most_specific_prefix_wins_and_ipv6_clients_match(served):
    d, _, _ = served
    assert addrs(ask(d, SQS, "127.0.10.7")) == SQS_B  # /32 in b beats /24 in a
    assert addrs(ask(d, SQS, "127.0.10.8")) == SQS_A
    assert addrs(ask(d, SQS, "::1")) == SQS_B


def test_a_client_outside_every_view_is_refused_endpoint_names_only(served):
    d, _, _ = served
    for name in (SQS, ATHENA, SQS_B_VPCE, "nothing-here." + SQS):
        for tcp in (False, True):
            r = ask(d, name, "127.0.40.1", tcp=tcp)
            assert r.rcode() == dns.rcode.REFUSED, (name, tcp, r)
    corp = ask(d, "www.corp.example.", "127.0.40.1")
    assert addrs(corp) == {"10.100.0.10", "10.100.0.11"}, corp
    fwd = ask(d, "www.example.com.", "127.0.40.1")
    assert fwd.rcode() == dns.rcode.NOERROR and addrs(fwd), fwd
    # S3's names are held by VPC A's views: refused too; the public S3 name of no view
    # (s3.amazonaws.com) is forwarded
    assert ask(d, S3, "127.0.40.1").rcode() == dns.rcode.REFUSED
    assert addrs(ask(d, "s3.amazonaws.com.", "127.0.40.1")) == {"198.51.100.1"}


def test_inbound_only_s3_endpoint(served):
    d, _, _ = served
    # inside the VPC: the public S3 answer (forwarded); the vpce names stay the ENI's
    assert addrs(ask(d, S3, "127.0.10.5")) == PUBLIC_S3
    assert addrs(ask(d, BUCKET, "127.0.10.5")) == PUBLIC_S3
    assert addrs(ask(d, S3_VPCE, "127.0.10.5")) == {"127.1.1.20"}
    # inbound (on-premises) view of the same VPC: the ENI for every name
    assert addrs(ask(d, S3, "127.0.30.5")) == {"127.1.1.20"}
    assert addrs(ask(d, BUCKET, "127.0.30.5")) == {"127.1.1.20"}
    assert addrs(ask(d, S3_VPCE, "127.0.30.5")) == {"127.1.1.20"}
    assert addrs(ask(d, SQS, "127.0.30.5")) == SQS_A


def reload_outcomes(d):
    log = d.proc.stderr_text(limit=10**7)
    return sum(log.count("event=%s trigger=sighup" % e)
               for e in ("reload_done", "reload_failed", "reload_skipped"))


def test_a_reload_applies_changed_views(served):
    d, cfg, upstream = served
    assert ask(d, SQS, "127.0.40.1").rcode() == dns.rcode.REFUSED
    before = reload_outcomes(d)
    cfg.write_text(config_text(d.port, upstream, VIEWS_CHANGED))
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: reload_outcomes(d) > before, limit=10.0), d.proc.failure(
        "no reload outcome")
    log = d.proc.stderr_text(limit=10**7)
    assert "event=reload_done trigger=sighup" in log, d.proc.failure("the reload failed")
    assert re.search(r"event=reloaded .*config=\S*views", log), log[-2000:]
    # the default view answers former outsiders and clients that left view a
    assert addrs(ask(d, SQS, "127.0.40.1")) == SQS_B
    assert addrs(ask(d, SQS, "127.0.10.5")) == SQS_B
    assert addrs(ask(d, SQS, "127.0.11.5")) == SQS_A
    # the onprem view is gone: its clients are in the default view (VPC B, no S3 endpoint)
    assert addrs(ask(d, S3, "127.0.30.5")) == PUBLIC_S3
    assert addrs(ask(d, ATHENA, "127.0.30.5")) == {"127.2.1.30"}


def test_refusals_are_counted(served):
    d, _, _ = served
    for _ in range(3):
        assert ask(d, SQS, "127.0.40.2").rcode() == dns.rcode.REFUSED
    assert d.stop() == 0
    line = [l for l in d.proc.stderr_text(limit=10**7).splitlines() if "server_stop" in l][-1]
    assert re.search(r"\bview_refused=3\b", line), line


def test_a_snapshot_of_two_vpcs_needs_a_choice(run_vpcdns, nsd):
    base = ["--check", "--snapshot", VIEWS_SNAPSHOT, "--upstream", "%s:%d" % nsd]
    r = run_vpcdns(base)
    assert r.returncode == 1
    assert VPC_A in r.stderr and VPC_B in r.stderr and "--vpc" in r.stderr, r.stderr
    assert "views" in r.stderr
    r = run_vpcdns(base + ["--vpc", VPC_B])
    assert r.returncode == 0, r.stderr
    assert "vpc: %s" % VPC_B in r.stdout and "endpoints served: 2" in r.stdout, r.stdout
    r = run_vpcdns(base + ["--vpc", "vpc-0c3c3c3c3c3c3c3c3"])
    assert r.returncode == 1
    assert "vpc-0c3c3c3c3c3c3c3c3 is not in the snapshot" in r.stderr and VPC_A in r.stderr
    r = run_vpcdns(base + ["--vpc", "vpc-nothex"])
    assert r.returncode == 2 and "--vpc: expected a VPC id" in r.stderr, r.stderr


def test_check_and_dump_show_each_view(tmp_path, run_vpcdns, nsd):
    cfg = tmp_path / "vpcdns.yaml"
    cfg.write_text(config_text(5300, "%s:%d" % nsd, VIEWS))
    r = run_vpcdns(["--config", cfg, "--check"])
    assert r.returncode == 0, r.stderr
    assert "views: 3 (clients outside every view: REFUSED for endpoint names)" in r.stdout
    assert re.search(r"view onprem: vpc %s, clients 127.0.30.0/24, inbound; endpoints 2" % VPC_A,
                     r.stdout), r.stdout
    assert "event=view_loaded view=b vpc=%s" % VPC_B in r.stderr
    r = run_vpcdns(["--config", cfg, "--dump"])
    assert r.returncode == 0, r.stderr
    sections = re.split(r"^; ", r.stdout, flags=re.M)
    by_head = {s.split("\n", 1)[0]: s for s in sections if s}
    assert "127.2.1.30" in by_head["view b"] and "127.2.1.30" not in by_head["view a"]
    outside = [v for k, v in by_head.items() if k.startswith("clients outside")][0]
    assert "www.corp.example." in outside and "127.1." not in outside and "127.2." not in outside


def test_a_view_of_an_unknown_vpc_is_refused(tmp_path, run_vpcdns, nsd):
    cfg = tmp_path / "vpcdns.yaml"
    cfg.write_text(config_text(5300, "%s:%d" % nsd,
                               "views:\n  - {name: x, clients: [10.0.0.0/8], "
                               "vpc: vpc-0c3c3c3c3c3c3c3c3}\n"))
    r = run_vpcdns(["--config", cfg, "--check"])
    assert r.returncode == 1
    assert "view 'x': vpc vpc-0c3c3c3c3c3c3c3c3 is not in the snapshot" in r.stderr, r.stderr
    assert VPC_A in r.stderr and VPC_B in r.stderr
    # errors of the views key name the file and line
    cfg.write_text(config_text(5300, "%s:%d" % nsd,
                               "views:\n  - {name: a, clients: [10.0.0.0/8], vpc: %s}\n"
                               "  - {name: a, clients: [10.1.0.0/16], vpc: %s}\n"
                               % (VPC_A, VPC_B)))
    r = run_vpcdns(["--config", cfg, "--check"])
    assert r.returncode == 2 and "%s:9:" % cfg in r.stderr and "'a' again" in r.stderr, r.stderr
