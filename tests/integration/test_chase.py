"""CNAME chains followed past local data, through the real daemon: the zone chase.zone holds
CNAMEs to names that only the upstream (an NSD serving up.test and other.test) or a
forwarding rule (a scripted upstream for rule.test) can answer, to an endpoint name of the AWS
snapshot and to localhost. The client must get the whole chain in one answer, as the Route 53
Resolver gives it: each record with its own TTL, the final name's rcode, the question as
sent, TC over UDP when the chain does not fit and all of it over TCP. CNAME loops in local
data are refused when loaded, with the file and line of the record."""

import shutil
import signal
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

import vdtest
from fakeupstream import FakeUpstream
from vdtest import REPO, SNAPSHOT, VPCDNS, Client, Proc, addresses, answer_rrset, describe, soa_of

DATA = REPO / "tests" / "data" / "chase"
ZONE = DATA / "chase.zone"
SQS = "sqs.eu-west-1.amazonaws.com."
SQS_IPS = ["10.1.1.10", "10.1.2.10", "10.1.3.10"]
L1 = "l1-" + "a" * 58 + ".up.test."


@pytest.fixture(scope="module")
def chase_nsd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chase-nsd")
    port = vdtest.free_port(("127.0.0.1",))
    conf = vdtest.NSD_CONF.format(host="127.0.0.1", port=port, zonesdir=DATA / "upstream", tmp=tmp)
    for zone in ("up.test", "other.test"):
        conf += 'zone:\n    name: "%s"\n    zonefile: "%s.zone"\n' % (zone, zone)
    (tmp / "nsd.conf").write_text(conf)
    proc = Proc("nsd-chase", [vdtest.NSD, "-d", "-c", tmp / "nsd.conf"], tmp)
    vdtest.wait_until_answers(proc, Client("127.0.0.1", port), "www.up.test.")
    yield "127.0.0.1:%d" % port
    proc.stop()


@pytest.fixture(scope="module")
def rule_up():
    with FakeUpstream(good_a="192.0.2.53") as up:
        yield up


@pytest.fixture(scope="module")
def chase(chase_nsd, rule_up, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chase")
    cfg = tmp / "chase.yaml"
    cfg.write_text(
        "forward:\n  - {domain: rule.test, servers: [%s]}\n  - {domain: fwd.chase.test, servers: [%s]}\n"
        % (rule_up.address, rule_up.address)
    )

    def argv(port):
        return vdtest.vpcdns_argv(port, chase_nsd, snapshot=SNAPSHOT, zone=ZONE, extra=["--config", cfg])

    d = vdtest.start_vpcdns(tmp, chase_nsd, argv=argv, name="vpcdns-chase")
    yield d
    assert d.stop() == 0, d.proc.failure("SIGTERM: expected exit status 0")


def chain(msg):
    """[(owner, type, rdata text, ttl)] of the answer section in order."""
    return [(rr.name.to_text().lower(), dns.rdatatype.to_text(rr.rdtype), r.to_text(), rr.ttl)
            for rr in msg.answer for r in rr]


def cnames(msg):
    return [(o, d) for (o, t, d, _) in chain(msg) if t == "CNAME"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_zone_cname_to_upstream_name_a_and_aaaa(chase, tcp):
    msg = chase.v4.query("web.chase.test.", "A", tcp=tcp)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert cnames(msg) == [("web.chase.test.", "www.up.test.")], describe(msg)
    assert addresses(msg, "www.up.test.") == ["192.0.2.10"], describe(msg)
    assert [t for (_, t, _, _) in chain(msg)] == ["CNAME", "A"], "the chain in order: " + describe(msg)
    ttls = {t: ttl for (_, t, _, ttl) in chain(msg)}
    assert ttls["CNAME"] == 300 and 1700 < ttls["A"] <= 1800, "each record keeps its TTL: " + describe(msg)
    msg = chase.v6.query("web.chase.test.", "AAAA", tcp=tcp, edns=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert addresses(msg, "www.up.test.", "AAAA") == ["2001:db8::10"], describe(msg)
    assert msg.edns == 0, "EDNS as the client asked"


def test_question_id_and_case_as_the_client_sent_them(chase):
    q = vdtest.make_query("WeB.Chase.TEST.", "A", qid=0x4242)
    msg = chase.v4.send(q)
    assert msg.id == 0x4242
    assert msg.question[0].name.to_text() == "WeB.Chase.TEST.", describe(msg)
    assert msg.flags & dns.flags.RA and not msg.flags & dns.flags.AA, describe(msg)
    assert addresses(msg, "www.up.test.") == ["192.0.2.10"], describe(msg)
    assert msg.edns == -1, "no OPT for a client without EDNS"


def test_zone_cname_to_a_name_that_does_not_exist(chase):
    msg = chase.v4.query("nx.chase.test.", "A", edns=True)
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert cnames(msg) == [("nx.chase.test.", "nothere.up.test.")], describe(msg)
    soa = soa_of(msg)
    assert soa is not None and soa.name.to_text() == "up.test.", "the final name's SOA: " + describe(msg)


def test_zone_cname_to_a_name_without_the_type(chase):
    msg = chase.v4.query("nodata.chase.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert chain(msg)[0][:3] == ("nodata.chase.test.", "CNAME", "mail.up.test."), describe(msg)
    assert len(msg.answer) == 1, describe(msg)
    assert soa_of(msg) is not None and soa_of(msg).name.to_text() == "up.test.", describe(msg)


def test_servfail_upstream_is_servfail(chase, rule_up):
    msg = chase.v4.query("broken.chase.test.", "A")
    assert msg.rcode() == dns.rcode.SERVFAIL, describe(msg)
    assert rule_up.queries("servfail.rule.test."), "the rule's server was asked"


def test_a_rule_covering_the_target_sends_it_to_the_rules_server(chase, rule_up):
    msg = chase.v4.query("ruled.chase.test.", "A")
    assert cnames(msg) == [("ruled.chase.test.", "good.rule.test.")], describe(msg)
    assert addresses(msg, "good.rule.test.") == ["192.0.2.53"], describe(msg)
    assert rule_up.queries("good.rule.test."), "the rule's server was asked"


def test_a_rule_covering_a_local_target_beats_the_local_record(chase, rule_up):
    msg = chase.v4.query("torule.chase.test.", "A")
    assert cnames(msg) == [("torule.chase.test.", "good.fwd.chase.test.")], describe(msg)
    assert addresses(msg, "good.fwd.chase.test.") == ["192.0.2.53"], describe(msg)
    assert rule_up.queries("good.fwd.chase.test.")


def test_zone_cname_to_an_endpoint_name_gets_the_enis(chase):
    msg = chase.v4.query("ep.chase.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert cnames(msg) == [("ep.chase.test.", SQS)], describe(msg)
    assert sorted(addresses(msg, SQS)) == SQS_IPS, describe(msg)


def test_zone_cname_to_localhost(chase):
    msg = chase.v4.query("lh.chase.test.", "A")
    assert cnames(msg) == [("lh.chase.test.", "localhost.")], describe(msg)
    assert addresses(msg, "localhost.") == ["127.0.0.1"], describe(msg)


def test_chain_alternating_local_upstream_local(chase):
    # alt (zone) -> back.up.test (upstream) -> app.chase.test (zone) -> A 10.5.0.10
    msg = chase.v4.query("alt.chase.test.", "A", edns=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert cnames(msg) == [("alt.chase.test.", "back.up.test."), ("back.up.test.", "app.chase.test.")], describe(msg)
    assert addresses(msg, "app.chase.test.") == ["10.5.0.10"], "local data answers the local name: " + describe(msg)
    assert len(msg.answer) == 3, describe(msg)


def test_chain_that_leaves_the_upstreams_zone_is_followed(chase):
    # far (zone) -> out.up.test (NSD answers the CNAME only) -> www.other.test A
    msg = chase.v4.query("far.chase.test.", "A")
    assert cnames(msg) == [("far.chase.test.", "out.up.test."), ("out.up.test.", "www.other.test.")], describe(msg)
    assert addresses(msg, "www.other.test.") == ["192.0.2.30"], describe(msg)


def test_hop_limit(chase):
    # c0: 6 local CNAMEs, then 6 upstream ones, then the address: 12 hops, the limit
    msg = chase.v4.query("c0.chase.test.", "A", tcp=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert len(cnames(msg)) == 12 and addresses(msg, "x7.up.test.") == ["192.0.2.77"], describe(msg)
    # d0: one more
    msg = chase.v4.query("d0.chase.test.", "A", tcp=True)
    assert msg.rcode() == dns.rcode.SERVFAIL, describe(msg)
    assert not msg.answer, describe(msg)


def test_long_chain_truncated_over_udp_and_whole_over_tcp(chase):
    udp = chase.v4.query("long.chase.test.", "A")  # no EDNS: 512 octets
    assert udp.flags & dns.flags.TC, describe(udp)
    assert not udp.answer, describe(udp)
    tcp = chase.v4.query("long.chase.test.", "A", tcp=True)
    assert tcp.rcode() == dns.rcode.NOERROR and not tcp.flags & dns.flags.TC, describe(tcp)
    assert len(cnames(tcp)) == 4, describe(tcp)
    assert len(addresses(tcp, "many.up.test.")) == 20, describe(tcp)
    assert len(tcp.to_wire()) > 512
    edns = chase.v4.query("long.chase.test.", "A", edns=True, payload=1232)
    assert not edns.flags & dns.flags.TC and len(addresses(edns, "many.up.test.")) == 20, describe(edns)


def test_cached_second_answer_is_the_same_chain(chase):
    first = chase.v4.query("alt.chase.test.", "A")
    second = chase.v4.query("alt.chase.test.", "A")
    assert [c[:3] for c in chain(first)] == [c[:3] for c in chain(second)], describe(second)


def test_the_example_zone_keeps_its_promise(tmp_path, chase_nsd, start_daemon):
    """zones/example/corp.zone: queue CNAME sqs.us-east-1.amazonaws.com. answers with the
    endpoint's ENIs from the example snapshot, and without the snapshot goes to the upstream."""
    example = REPO / "zones" / "example"
    name = "queue.corp.example.internal."
    for snapshot in (example, None):

        def argv(port, snapshot=snapshot):
            return vdtest.vpcdns_argv(port, chase_nsd, snapshot=snapshot, zone=example / "corp.zone")

        d = start_daemon(chase_nsd, argv=argv, probe="web.corp.example.internal.")
        msg = d.v4.query(name, "A")
        if snapshot is not None:
            assert cnames(msg) == [(name, "sqs.us-east-1.amazonaws.com.")], describe(msg)
            assert sorted(addresses(msg, "sqs.us-east-1.amazonaws.com.")) == [
                "10.0.1.10", "10.0.2.10", "10.0.3.10"], describe(msg)
        else:
            # the upstream was asked (NSD serves neither amazonaws.com nor the root: it refuses,
            # and a refused hop is SERVFAIL for the whole chain, with no partial answer)
            assert msg.rcode() == dns.rcode.SERVFAIL and not msg.answer, describe(msg)
        d.stop()


# ---------------------------------------------------------------------------- loops at load time


LOOP_ZONE = """$ORIGIN loop.test.
$TTL 300
@ IN SOA ns hostmaster 1 7200 900 1209600 60
@ IN NS ns
ns IN A 10.6.0.1
host IN A 10.6.0.2
a IN CNAME b
b IN CNAME c.loop.test.
c IN CNAME a
"""


def test_cname_loop_rejected_at_load_with_file_and_line(tmp_path, run_vpcdns):
    zone = tmp_path / "loop.zone"
    zone.write_text(LOOP_ZONE)
    res = run_vpcdns(["--check", "--zone", zone])
    assert res.returncode != 0, res.stdout + res.stderr
    assert "%s:7: CNAME loop" % zone in res.stderr, res.stderr
    assert "a.loop.test." in res.stderr and "c.loop.test." in res.stderr, res.stderr
    # a wildcard that answers its own target is a loop too
    zone.write_text(LOOP_ZONE.replace("c IN CNAME a", "c IN A 10.6.0.3") + "*.w IN CNAME x.w\n")
    res = run_vpcdns(["--check", "--zone", zone])
    assert res.returncode != 0 and "%s:10: CNAME loop" % zone in res.stderr, res.stderr


def test_cname_loop_across_zone_files(tmp_path, run_vpcdns):
    one = tmp_path / "one.zone"
    two = tmp_path / "two.zone"
    one.write_text("$ORIGIN one.test.\n$TTL 60\n@ IN SOA ns hm 1 1 1 1 1\n@ IN NS ns\nns IN A 10.0.0.1\n"
                   "go IN CNAME go.two.test.\n")
    two.write_text("$ORIGIN two.test.\n$TTL 60\n@ IN SOA ns hm 1 1 1 1 1\n@ IN NS ns\nns IN A 10.0.0.1\n"
                   "go IN CNAME go.one.test.\n")
    res = run_vpcdns(["--check", "--zone", one, "--zone", two])
    assert res.returncode != 0, res.stdout
    assert "%s:6: CNAME loop" % one in res.stderr and "%s:6" % two in res.stderr, res.stderr


def test_reload_with_a_loop_keeps_the_old_data(tmp_path, chase_nsd, start_daemon):
    zone = tmp_path / "reload.zone"
    zone.write_text(LOOP_ZONE.replace("c IN CNAME a", "c IN A 10.6.0.3"))

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", chase_nsd, "--zone", zone]

    d = start_daemon(chase_nsd, argv=argv, probe="host.loop.test.")
    assert addresses(d.v4.query("a.loop.test.", "A"), "c.loop.test.") == ["10.6.0.3"]
    zone.write_text(LOOP_ZONE)
    d.proc.p.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 3
    while "event=reload_failed" not in d.proc.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = d.proc.stderr_text()
    assert "event=reload_failed" in log and "%s:7: CNAME loop" % zone in log, log
    msg = d.v4.query("a.loop.test.", "A")
    assert addresses(msg, "c.loop.test.") == ["10.6.0.3"], "the old data still answers: " + describe(msg)
    assert d.proc.alive()
