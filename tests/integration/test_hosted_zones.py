"""Route 53 private hosted zones (`aws route53 list-resource-record-sets` output) served by a real
daemon: the hub-and-spoke apex alias to an endpoint's regional name (tests/data/hosted/hub, a
snapshot with 127.x ENI addresses and its hosted-zones/ capture), a team zone with every record
type, octal-escaped wildcards, aliases, routing policies (tests/data/hosted/corp.json),
NXDOMAIN/NODATA with the SOA, reloads, and malformed files; aliases to load balancer and API
names (tests/data/hosted/lb.json) resolved through an NSD on loopback that serves
us-east-1.elb.amazonaws.com (tests/data/hosted/upstream)."""

import json
import shutil
import signal

import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import vdtest
from vdtest import REPO, VPCDNS, Client, Proc, addresses, answer_rrset, describe, soa_of

HOSTED = REPO / "tests" / "data" / "hosted"
SQS = "sqs.us-east-1.amazonaws.com."
CORP = "corp.internal."
ENIS = ["127.0.53.11", "127.0.53.12"]


def copy_data(tmp_path):
    hub = tmp_path / "hub"
    shutil.copytree(HOSTED / "hub", hub)
    corp = tmp_path / "corp.json"
    shutil.copy(HOSTED / "corp.json", corp)
    return hub, corp


def start(tmp_path, nsd, start_daemon, extra=()):
    hub, corp = copy_data(tmp_path)

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", "%s:%d" % nsd,
                "--snapshot", hub, "--hosted-zone", corp] + list(extra)

    return start_daemon("%s:%d" % nsd, argv=argv, probe=SQS), hub, corp


def name(label):
    return "%s.%s" % (label, CORP)


def test_hub_apex_alias_answers_the_endpoint_addresses_without_a_cname(tmp_path, nsd, start_daemon):
    d, _, _ = start(tmp_path, nsd, start_daemon)
    msg = d.v4.query(SQS, "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert sorted(addresses(msg, SQS)) == ENIS, describe(msg)
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.A], describe(msg)
    assert answer_rrset(msg, SQS, "A").ttl == 60, describe(msg)
    # the zone's own apex data, and negative answers with its SOA (TTL 900 < MINIMUM 86400)
    ns = answer_rrset(d.v4.query(SQS, "NS"), SQS, "NS")
    assert ns is not None and len(ns) == 4
    msg = d.v4.query("fifo." + SQS, "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert soa_of(msg).name.to_text() == SQS and soa_of(msg).ttl == 900, describe(msg)
    msg = d.v4.query(SQS, "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer, describe(msg)
    assert soa_of(msg).ttl == 900, describe(msg)


def test_team_zone_every_type_wildcard_and_negative_answers(tmp_path, nsd, start_daemon):
    d, _, _ = start(tmp_path, nsd, start_daemon)
    wanted = {
        CORP: ["MX", "TXT", "SPF", "CAA", "NS", "SOA"],
        name("web"): ["A", "AAAA"],
        name("_sip._tcp"): ["SRV"],
        name("_443._tcp.web"): ["TLSA"],
        name("cname"): ["CNAME"],
        name("https"): ["HTTPS"],
        name("svcb"): ["SVCB"],
        name("sshfp"): ["SSHFP"],
        name("naptr"): ["NAPTR"],
        name("ptr"): ["PTR"],
    }
    for owner, types in wanted.items():
        for t in types:
            msg = d.v4.query(owner, t)
            assert answer_rrset(msg, owner, t) is not None, "%s %s: %s" % (owner, t, describe(msg))
    srv = answer_rrset(d.v4.query(name("_sip._tcp"), "SRV"), name("_sip._tcp"), "SRV")
    assert sorted(r.target.to_text() for r in srv) == [name("sip"), name("sip2")]
    # \052 is a wildcard; \056 a dot inside a label
    for asked in (name("x.apps"), name("a.b.apps")):
        assert addresses(d.v4.query(asked, "A"), asked) == ["10.0.1.1"]
    assert addresses(d.v4.query("a\\.b." + CORP, "A"), "a\\.b." + CORP) == ["10.0.9.9"]
    # NXDOMAIN and NODATA carry the SOA with the smaller of its TTL (900) and MINIMUM (300)
    msg = d.v4.query(name("nothing"), "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert soa_of(msg).name.to_text() == CORP and soa_of(msg).ttl == 300, describe(msg)
    msg = d.v4.query(name("web"), "MX")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and soa_of(msg).ttl == 300
    assert answer_rrset(d.v4.query(CORP, "SOA"), CORP, "SOA").ttl == 900


def test_aliases_and_routing_policies(tmp_path, nsd, start_daemon):
    d, _, _ = start(tmp_path, nsd, start_daemon)
    for owner in (CORP, name("app"), name("www")):  # apex alias, then a chain onto it
        msg = d.v4.query(owner, "A")
        assert sorted(addresses(msg, owner)) == ["10.0.0.1", "10.0.0.2"], describe(msg)
        assert answer_rrset(msg, owner, "A").ttl == 120, describe(msg)
    # an alias to a load balancer the upstream (this NSD) does not know: NODATA, never NXDOMAIN
    msg = d.v4.query(name("elb"), "A")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer, describe(msg)
    assert soa_of(msg).name.to_text() == CORP, describe(msg)
    # failover: the PRIMARY; latency: the snapshot's region (us-east-1); geolocation: "*"
    assert addresses(d.v4.query(name("db"), "A"), name("db")) == ["10.0.3.1"]
    assert addresses(d.v4.query(name("lat"), "A"), name("lat")) == ["10.0.4.1"]
    assert addresses(d.v4.query(name("geo"), "A"), name("geo")) == ["10.0.5.1"]
    # weighted: one record set per answer; multivalue: up to eight record sets per answer
    assert addresses(d.v4.query(name("api"), "A"), name("api")) in (["10.0.2.1"], ["10.0.2.2"])
    assert sorted(addresses(d.v4.query(name("mv"), "A"), name("mv"))) == ["10.0.6.1", "10.0.6.2"]


def test_check_and_dump_describe_the_zones(tmp_path, run_vpcdns):
    hub, corp = copy_data(tmp_path)
    args = ["--snapshot", hub, "--hosted-zone", corp, "--listen", "127.0.0.1:5399",
            "--upstream", "127.0.0.1:5398"]
    r = run_vpcdns(args + ["--check"])
    assert r.returncode == 0, r.stderr
    assert "hosted zones: 2 (39 records, 5 aliases, 10 record sets with a routing policy)" in r.stdout
    assert "hosted zone %s (%s/hosted-zones/Z0SQSUSEAST1.json)" % (SQS, hub) in r.stdout
    assert "routing policy: db.corp.internal. A failover" in r.stdout
    assert "routing policy not applied: geo.corp.internal. A geolocation" in r.stdout
    assert ("alias elb.corp.internal. A -> dualstack.internal-app-1234567890.us-east-1.elb."
            "amazonaws.com. (%s: ResourceRecordSets[15]): resolved upstream per answer"
            % corp) in r.stdout
    r = run_vpcdns(args + ["--dump"])
    assert r.returncode == 0, r.stderr
    assert ("; alias %s A -> vpce-0a1b2c3d4e5f60718-k2j4h6g8.sqs.us-east-1.vpce.amazonaws.com."
            % SQS) in r.stdout
    lines = [l.split() for l in r.stdout.splitlines() if l.startswith(SQS)]
    assert sorted(l[4] for l in lines if l[3] == "A") == ENIS, r.stdout


def test_reload_with_a_changed_zone(tmp_path, nsd, start_daemon):
    d, hub, corp = start(tmp_path, nsd, start_daemon, extra=["--no-watch"])
    data = json.loads(corp.read_text())
    for rrset in data["ResourceRecordSets"]:
        if rrset["Name"] == name("web") and rrset["Type"] == "A":
            rrset["ResourceRecords"] = [{"Value": "10.0.0.9"}]
    data["ResourceRecordSets"].append(
        {"Name": name("added"), "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"new"'}]})
    corp.write_text(json.dumps(data, indent=4))
    d.proc.p.send_signal(signal.SIGHUP)
    # the aliases follow their target's new records
    assert vdtest.wait_for(lambda: addresses(d.v4.query(name("www"), "A"), name("www")) == ["10.0.0.9"])
    assert addresses(d.v4.query(CORP, "A"), CORP) == ["10.0.0.9"]
    assert answer_rrset(d.v4.query(name("added"), "TXT"), name("added"), "TXT") is not None
    assert d.proc.alive()


def test_watch_reloads_a_changed_capture_in_the_snapshot(tmp_path, nsd, start_daemon):
    d, hub, _ = start(tmp_path, nsd, start_daemon)
    capture = hub / "hosted-zones" / "Z0SQSUSEAST1.json"
    data = json.loads(capture.read_text())
    data["ResourceRecordSets"].append(
        {"Name": "fifo." + SQS, "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": "127.0.53.99"}]})
    tmp = capture.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(capture)
    assert vdtest.wait_for(lambda: addresses(d.v4.query("fifo." + SQS, "A"), "fifo." + SQS)
                           == ["127.0.53.99"], limit=10.0), d.proc.stderr_text()


def test_broken_reload_keeps_the_old_data(tmp_path, nsd, start_daemon):
    d, hub, corp = start(tmp_path, nsd, start_daemon, extra=["--no-watch"])
    text = corp.read_text()
    corp.write_text(text.replace('"10 mx1.corp.internal."', '"mx1.corp.internal."'))
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: "event=reload_failed" in d.proc.stderr_text()), d.proc.stderr_text()
    err = d.proc.stderr_text()
    assert "ResourceRecordSets[3] (corp.internal. MX)" in err, err
    assert sorted(addresses(d.v4.query(CORP, "A"), CORP)) == ["10.0.0.1", "10.0.0.2"]
    assert sorted(addresses(d.v4.query(SQS, "A"), SQS)) == ENIS
    assert d.proc.alive()


def test_malformed_files_refuse_to_start(tmp_path, run_vpcdns):
    hub, corp = copy_data(tmp_path)
    cases = {
        "bad-json.json": ('{"ResourceRecordSets": [\n  {"Name": "x."\n  "Type": "A"}]}',
                          "bad-json.json:3:3: not valid JSON"),
        "truncated.json": (json.dumps({
            "ResourceRecordSets": json.loads(corp.read_text())["ResourceRecordSets"][:3],
            "IsTruncated": True, "NextRecordName": "app.corp.internal.", "NextRecordType": "A",
            "MaxItems": "3"}), "the capture is incomplete (IsTruncated is true, NextRecordName"),
        "bad-a.json": (corp.read_text().replace('"10.0.0.25"', '"10.0.0.256"'),
                       "ResourceRecordSets[23] (mx1.corp.internal. A): ResourceRecords[0].Value: "
                       "expected an IPv4 address, got '10.0.0.256'"),
        "conflict.json": (corp.read_text(), "zone corp.internal. is claimed twice"),
    }
    for file, (text, expected) in cases.items():
        path = tmp_path / file
        path.write_text(text)
        extra = ["--hosted-zone", corp] if file == "conflict.json" else []
        r = run_vpcdns(["--hosted-zone", path, "--listen", "127.0.0.1:%d" % vdtest.free_port(),
                        "--upstream", "127.0.0.1:9"] + extra, timeout=10.0)
        assert r.returncode != 0, "%s started" % file
        assert str(path) in r.stderr and expected in r.stderr, r.stderr


# ---- routing policies chosen per answer ------------------------------------------------------

POLICY = "policy.internal."
HUB_VPCE = "vpce-0a1b2c3d4e5f60718-k2j4h6g8.sqs.us-east-1.vpce.amazonaws.com."


def policy_zone(tmp_path, sets):
    """A hosted zone policy.internal. with the given record sets (after its SOA)."""
    soa = {"Name": POLICY, "Type": "SOA", "TTL": 900, "ResourceRecords": [
        {"Value": "ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 300"}]}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"ResourceRecordSets": [soa] + sets}, indent=4))
    return path


def test_weighted_split_over_many_answers(tmp_path, nsd, start_daemon):
    zone = policy_zone(tmp_path, [
        {"Name": "w." + POLICY, "Type": "A", "SetIdentifier": "one", "Weight": 1, "TTL": 60,
         "ResourceRecords": [{"Value": "10.1.0.1"}]},
        {"Name": "w." + POLICY, "Type": "A", "SetIdentifier": "three", "Weight": 3, "TTL": 30,
         "ResourceRecords": [{"Value": "10.1.0.3"}]},
        {"Name": "w." + POLICY, "Type": "A", "SetIdentifier": "drained", "Weight": 0, "TTL": 60,
         "ResourceRecords": [{"Value": "10.1.0.9"}]},
    ])
    d, _, _ = start(tmp_path, nsd, start_daemon, extra=["--hosted-zone", zone])
    counts = {}
    for _ in range(4000):
        msg = d.v4.query("w." + POLICY, "A")
        got = tuple(addresses(msg, "w." + POLICY))
        counts[got] = counts.get(got, 0) + 1
        if got == ("10.1.0.3",):
            assert answer_rrset(msg, "w." + POLICY, "A").ttl == 30, describe(msg)
    print("weighted 1:3:0 over 4000 answers:", counts)
    assert set(counts) == {("10.1.0.1",), ("10.1.0.3",)}, counts
    # 1,000 expected; each answer's choice is a hash of a per-worker counter, not a coin
    assert 800 <= counts[("10.1.0.1",)] <= 1200, counts


def test_failover_follows_eni_health(tmp_path, nsd, start_daemon):
    from test_eni_health import Listeners, free_port_on  # the 127.x stand-ins for ENIs

    zone = policy_zone(tmp_path, [
        {"Name": "db." + POLICY, "Type": "A", "SetIdentifier": "hub", "Failover": "PRIMARY",
         "AliasTarget": {"HostedZoneId": "Z7HUB", "DNSName": HUB_VPCE,
                         "EvaluateTargetHealth": True}},
        {"Name": "db." + POLICY, "Type": "A", "SetIdentifier": "dr", "Failover": "SECONDARY",
         "TTL": 30, "ResourceRecords": [{"Value": "10.9.9.9"}]},
    ])
    port = free_port_on(ENIS)
    listeners = Listeners(ENIS, port)
    conf = tmp_path / "vpcdns.yaml"
    conf.write_text("eni_health: {port: %d, interval_ms: 200, timeout_ms: 190, fall: 2, rise: 2}\n"
                    % port)
    d, _, _ = start(tmp_path, nsd, start_daemon, extra=["--hosted-zone", zone, "--config", conf])
    db = "db." + POLICY

    def wait(want, limit=10.0):
        ok = vdtest.wait_for(lambda: sorted(addresses(d.v4.query(db, "A"), db)) == want, limit)
        assert ok, "%s: not %s: %s" % (db, want, describe(d.v4.query(db, "A")))

    try:
        assert sorted(addresses(d.v4.query(db, "A"), db)) == ENIS
        listeners.stop(ENIS[0])
        wait([ENIS[1]])  # one down: still the PRIMARY, without it
        listeners.stop(ENIS[1])
        wait(["10.9.9.9"])  # all down: the SECONDARY
        msg = d.v4.query(db, "A")
        assert answer_rrset(msg, db, "A").ttl == 30, describe(msg)
        # the endpoint's own name fails open meanwhile
        assert sorted(addresses(d.v4.query(SQS, "A"), SQS)) == ENIS
        listeners.start(ENIS[0])
        wait([ENIS[0]])  # back: the PRIMARY again
    finally:
        listeners.close()
    assert d.stop() == 0, d.proc.stderr_text()
LB = "lb.internal."
ELB = "us-east-1.elb.amazonaws.com"


@pytest.fixture(scope="module")
def elb_nsd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("elb-nsd")
    port = vdtest.free_port(("127.0.0.1",))
    conf = vdtest.NSD_CONF.format(host="127.0.0.1", port=port, zonesdir=HOSTED / "upstream", tmp=tmp)
    conf += 'zone:\n    name: "%s"\n    zonefile: "%s.zone"\n' % (ELB, ELB)
    (tmp / "nsd.conf").write_text(conf)
    proc = Proc("nsd-elb", [vdtest.NSD, "-d", "-c", tmp / "nsd.conf"], tmp)
    vdtest.wait_until_answers(proc, Client("127.0.0.1", port), "my-alb-123.%s." % ELB)
    yield "127.0.0.1:%d" % port
    proc.stop()


@pytest.fixture
def lb(tmp_path, elb_nsd, start_daemon):
    zone = tmp_path / "lb.json"
    shutil.copy(HOSTED / "lb.json", zone)

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", elb_nsd,
                "--hosted-zone", zone]

    return start_daemon(elb_nsd, argv=argv, probe="v4." + LB)


def lb_name(label):
    return "%s.%s" % (label, LB)


def test_alias_to_a_load_balancer_answers_its_addresses_under_the_alias_name(lb):
    for tcp in (False, True):
        msg = lb.v4.query(LB, "A", tcp=tcp)
        assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
        assert [(r.name.to_text(), r.rdtype) for r in msg.answer] == [(LB, dns.rdatatype.A)], describe(msg)
        assert sorted(addresses(msg, LB)) == ["127.0.60.1", "127.0.60.2"], describe(msg)
        assert 0 < answer_rrset(msg, LB, "A").ttl <= 45, describe(msg)
    msg = lb.v4.query(LB, "AAAA")
    assert addresses(msg, LB, "AAAA") == ["fd00::60:1"], describe(msg)
    # the second answer comes from the cache, the same records under the same name
    msg = lb.v4.query(LB, "A")
    assert sorted(addresses(msg, LB)) == ["127.0.60.1", "127.0.60.2"], describe(msg)
    # a wildcard alias answers under the name asked
    asked = "x." + lb_name("apps")
    msg = lb.v4.query(asked, "A")
    assert sorted(addresses(msg, asked)) == ["127.0.60.1", "127.0.60.2"], describe(msg)
    assert len(msg.answer) == 1, describe(msg)


def test_alias_to_a_name_answering_a_cname_chain_upstream(lb):
    msg = lb.v4.query(lb_name("api"), "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert [(r.name.to_text(), r.rdtype) for r in msg.answer] == [(lb_name("api"), dns.rdatatype.A)], describe(msg)
    assert addresses(msg, lb_name("api")) == ["127.0.60.5"], describe(msg)
    assert 0 < answer_rrset(msg, lb_name("api"), "A").ttl <= 30, describe(msg)


def test_local_cname_onto_an_upstream_alias(lb):
    msg = lb.v4.query(lb_name("cn"), "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert answer_rrset(msg, lb_name("cn"), "CNAME")[0].target.to_text() == LB, describe(msg)
    assert sorted(addresses(msg, LB)) == ["127.0.60.1", "127.0.60.2"], describe(msg)
    assert len(msg.answer) == 2, describe(msg)


def test_alias_to_a_missing_target_or_type_is_nodata_with_the_zone_soa(lb):
    for asked, rdtype in ((lb_name("gone"), "A"), (lb_name("v4"), "AAAA")):
        msg = lb.v4.query(asked, rdtype)
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer, describe(msg)
        soa = soa_of(msg)
        assert soa is not None and soa.name.to_text() == LB and soa.ttl == 120, describe(msg)
    # the alias's name keeps its other data; a name beside it does not exist
    assert answer_rrset(lb.v4.query(lb_name("v4"), "TXT"), lb_name("v4"), "TXT") is not None
    msg = lb.v4.query(lb_name("nothing"), "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN and soa_of(msg).name.to_text() == LB, describe(msg)


# ---- views: a hosted zone applies to the VPCs it is associated with ----

VIEWS_SNAPSHOT = vdtest.DATA / "views"
VPC_A = "vpc-0a1a1a1a1a1a1a1a1"
VPC_B = "vpc-0b2b2b2b2b2b2b2b2"


def small_zone(apex, address):
    soa = "ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 60"
    return json.dumps({"ResourceRecordSets": [
        {"Name": apex, "Type": "SOA", "TTL": 900, "ResourceRecords": [{"Value": soa}]},
        {"Name": "www." + apex, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": address}]},
    ]}, indent=4)


@pytest.fixture
def viewed(tmp_path, nsd, start_daemon):
    snap = tmp_path / "snap"
    shutil.copytree(VIEWS_SNAPSHOT, snap)
    (snap / "hosted-zones").mkdir()
    (snap / "hosted-zones" / "Z0CAPTUREDB.json").write_text(small_zone("captured.internal.", "10.9.2.2"))
    (snap / "list-hosted-zones-by-vpc.vpc-id").write_text(VPC_B + "\n")
    files = {"a": ("only-a.internal.", "10.9.1.1"), "ab": ("both.internal.", "10.9.3.3"),
             "all": ("shared.internal.", "10.9.4.4"), "split-a": ("split.internal.", "10.9.5.1"),
             "split-b": ("split.internal.", "10.9.5.2"), "orphan": ("orphan.internal.", "10.9.6.6")}
    for key, (apex, address) in files.items():
        (tmp_path / (key + ".json")).write_text(small_zone(apex, address))
    upstream = "%s:%d" % nsd
    cfg = tmp_path / "vpcdns.yaml"

    def argv(port):
        cfg.write_text(
            "listen: [127.0.0.1:%d]\nupstream: %s\nsnapshot: %s\ncache_size: 0\n"
            "hosted_zones:\n"
            "  - {path: %s, vpcs: [%s]}\n"
            "  - {path: %s, vpcs: [%s, %s]}\n"
            "  - %s\n"
            "  - {path: %s, vpcs: [%s]}\n"
            "  - {path: %s, vpcs: [%s]}\n"
            "  - {path: %s, vpcs: [vpc-0c3c3c3c3c3c3c3c3]}\n"
            "views:\n"
            "  - {name: a, clients: [127.0.10.0/24], vpc: %s}\n"
            "  - {name: b, clients: [127.0.20.0/24], vpc: %s}\n"
            % (port, upstream, snap, tmp_path / "a.json", VPC_A, tmp_path / "ab.json", VPC_A,
               VPC_B, tmp_path / "all.json", tmp_path / "split-a.json", VPC_A,
               tmp_path / "split-b.json", VPC_B, tmp_path / "orphan.json", VPC_A, VPC_B))
        return [VPCDNS, "--config", cfg, "--no-watch"]

    return start_daemon(upstream, argv=argv, probe="www.shared.internal."), snap, cfg


def ask_from(d, name, source, rdtype="A"):
    q = vdtest.make_query(name, rdtype)
    return dns.query.udp(q, "127.0.0.1", port=d.port, source=source, timeout=vdtest.TIMEOUT)


def test_views_load_the_hosted_zones_of_their_vpc(viewed):
    d, _, _ = viewed
    a, b, outsider = "127.0.10.5", "127.0.20.5", "127.0.40.1"
    expected = {  # name: {client: address answered, or None: not this client's data}
        "www.only-a.internal.": {a: "10.9.1.1", b: None, outsider: None},
        "www.captured.internal.": {a: None, b: "10.9.2.2", outsider: None},
        "www.both.internal.": {a: "10.9.3.3", b: "10.9.3.3", outsider: None},
        "www.shared.internal.": {a: "10.9.4.4", b: "10.9.4.4", outsider: "10.9.4.4"},
        # the same zone, one version per VPC (split horizon between VPCs)
        "www.split.internal.": {a: "10.9.5.1", b: "10.9.5.2", outsider: None},
        "www.orphan.internal.": {a: None, b: None, outsider: None},  # a VPC of no view
    }
    for asked, per_client in expected.items():
        for client, address in per_client.items():
            msg = ask_from(d, asked, client)
            if address is not None:
                assert addresses(msg, asked) == [address], (asked, client, describe(msg))
            else:
                # forwarded: the upstream (NSD) holds no such zone
                assert addresses(msg, asked) == [] and soa_of(msg) is None, (asked, client, describe(msg))


def test_a_bad_vpc_id_file_is_an_error_naming_it(viewed, run_vpcdns):
    _, snap, cfg = viewed
    (snap / "list-hosted-zones-by-vpc.vpc-id").write_text("not a vpc\n")
    r = run_vpcdns(["--config", cfg, "--check"])
    assert r.returncode != 0, r.stdout
    assert "%s/list-hosted-zones-by-vpc.vpc-id: expected the VPC id" % snap in r.stderr, r.stderr


def test_an_upstream_chain_that_comes_back_to_an_upstream_alias(lb):
    # round -> (alias) back.elb -> CNAME lb.internal. (an alias again) -> my-alb-123
    asked = lb_name("round")
    msg = lb.v4.query(asked, "A")
    assert [(r.name.to_text(), r.rdtype) for r in msg.answer] == [(asked, dns.rdatatype.A)], describe(msg)
    assert sorted(addresses(msg, asked)) == ["127.0.60.1", "127.0.60.2"], describe(msg)
    # up CNAME back.elb (upstream) CNAME lb.internal. (alias): the CNAMEs, then lb.internal.'s A
    asked = lb_name("up")
    msg = lb.v4.query(asked, "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.CNAME] * 2 + [dns.rdatatype.A], describe(msg)
    assert sorted(addresses(msg, LB)) == ["127.0.60.1", "127.0.60.2"], describe(msg)
    msg = lb.v4.query(asked, "AAAA")
    assert addresses(msg, LB, "AAAA") == ["fd00::60:1"], describe(msg)
    msg = lb.v4.query(asked, "TXT")  # lb.internal. has no TXT: NODATA with its SOA
    assert msg.rcode() == dns.rcode.NOERROR and soa_of(msg).name.to_text() == LB, describe(msg)


def test_check_counts_each_hosted_zone_once_with_views(viewed, run_vpcdns):
    _, _, cfg = viewed
    r = run_vpcdns(["--config", cfg, "--check"])
    assert r.returncode == 0, r.stderr
    # captured, only-a, both, shared, split twice (one per VPC): SOA and one A each
    assert "hosted zones: 6 (12 records, 0 aliases, 0 record sets with a routing policy)" in r.stdout, r.stdout
    assert r.stdout.count("hosted zone both.internal.") == 1, r.stdout
    assert ("hosted zone file %s: not loaded: no view serves its VPCs (vpc-0c3c3c3c3c3c3c3c3)"
            % (cfg.parent / "orphan.json")) in r.stdout, r.stdout
