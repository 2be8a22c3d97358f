"""Forwarding rules through the real daemon: the most specific domain wins,
a "servers: default" rule carves a subdomain back out to the default upstreams, and a rule at
or under local data (a zone-file zone, an endpoint name from the AWS snapshot) beats it. Three
scripted upstreams answer with different addresses, so every answer tells where it came from;
what each upstream received is checked too. Also: --check prints the effective rules."""

import dns.flags
import dns.rcode
import pytest

import vdtest
from fakeupstream import FakeUpstream
from vdtest import addresses, describe, vpcdns_argv

DEFAULT_A = "192.0.2.53"
RULE_A = "192.0.2.101"
DEEP_A = "192.0.2.102"
SQS = "sqs.%s.amazonaws.com." % vdtest.REGION


@pytest.fixture(scope="module")
def upstreams():
    with FakeUpstream(good_a=DEFAULT_A) as d, FakeUpstream(good_a=RULE_A) as r, FakeUpstream(
        good_a=DEEP_A
    ) as deep:
        yield d, r, deep


def rules_config(rule, deep):
    return (
        "workers: 1\n"
        "forward:\n"
        "  - {domain: fwd.corp.example, servers: [%s]}\n"  # under a zone-file zone
        "  - {domain: www.corp.example, servers: [%s]}\n"  # a name the zone holds
        "  - {domain: rules.test, servers: [%s]}\n"
        "  - {domain: pub.rules.test, servers: default}\n"  # carve-out
        "  - {domain: deep.rules.test, servers: [%s]}\n"  # more specific than rules.test
        "  - {domain: %s, servers: [%s]}\n"  # an endpoint name of the snapshot
        % (rule.address, rule.address, rule.address, deep.address, SQS, rule.address)
    )


@pytest.fixture(scope="module")
def ruled(upstreams, tmp_path_factory):
    d_up, r_up, deep_up = upstreams
    tmp = tmp_path_factory.mktemp("rules")
    cfg = tmp / "rules.yaml"
    cfg.write_text(rules_config(r_up, deep_up))

    def argv(port):
        return vpcdns_argv(port, d_up.address, extra=["--config", cfg])

    d = vdtest.start_vpcdns(tmp, d_up.address, argv=argv, name="vpcdns-rules", probe="good.probe.test.")
    yield d
    assert d.stop() == 0, d.proc.failure("SIGTERM: expected exit status 0")


def ask(daemon, name, rdtype="A"):
    msg = daemon.v4.query(name, rdtype)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    return msg


def test_a_rule_under_a_zone_file_zone_sends_the_name_upstream(ruled, upstreams):
    _, r_up, _ = upstreams
    name = "good.fwd.corp.example."
    msg = ask(ruled, name)
    assert addresses(msg, name) == [RULE_A], describe(msg)
    assert len(r_up.queries(name)) == 1
    assert not msg.flags & dns.flags.AA, "a forwarded answer is not authoritative"
    assert not upstreams[0].queries(name), "the default upstream never saw it"


def test_a_rule_for_a_name_the_zone_holds_beats_the_zone(ruled, upstreams):
    d_up, r_up, _ = upstreams
    msg = ask(ruled, "www.corp.example.")
    assert addresses(msg, "www.corp.example.") == [RULE_A], describe(msg)
    assert len(r_up.queries("www.corp.example.")) >= 1
    assert not d_up.queries("www.corp.example.")


def test_the_rest_of_the_zone_is_still_answered_locally(ruled, upstreams):
    msg = ask(ruled, "ns1.corp.example.")
    assert addresses(msg, "ns1.corp.example.") == ["10.100.0.1"], describe(msg)
    nx = ruled.v4.query("absent.corp.example.", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN, describe(nx)
    for up in upstreams:
        assert not up.queries("ns1.corp.example.") and not up.queries("absent.corp.example.")


def test_a_rule_beats_an_endpoint_name_of_the_snapshot(ruled, upstreams):
    _, r_up, _ = upstreams
    msg = ask(ruled, SQS)
    assert addresses(msg, SQS) == [RULE_A], describe(msg)
    assert len(r_up.queries(SQS)) >= 1


def test_names_under_a_rule_go_to_its_servers(ruled, upstreams):
    d_up, r_up, deep_up = upstreams
    for name in ("good.rules.test.", "rules.test.", "a.b.c.rules.test."):
        msg = ask(ruled, name)
        assert addresses(msg, name) == [RULE_A], describe(msg)
        assert len(r_up.queries(name)) == 1
        assert not d_up.queries(name) and not deep_up.queries(name)


def test_rule_domains_match_without_regard_to_case(ruled, upstreams):
    name = "Good.CaSe.RULES.Test."
    msg = ask(ruled, name)
    assert addresses(msg, name) == [RULE_A], describe(msg)


def test_a_default_rule_carves_a_subdomain_back_to_the_upstreams(ruled, upstreams):
    d_up, r_up, _ = upstreams
    for name in ("good.pub.rules.test.", "pub.rules.test."):
        msg = ask(ruled, name)
        assert addresses(msg, name) == [DEFAULT_A], describe(msg)
        assert len(d_up.queries(name)) == 1
        assert not r_up.queries(name)
    # only the subdomain: a sibling that merely starts the same way stays with the rule
    msg = ask(ruled, "good.xpub.rules.test.")
    assert addresses(msg, "good.xpub.rules.test.") == [RULE_A], describe(msg)


def test_the_most_specific_rule_wins(ruled, upstreams):
    d_up, r_up, deep_up = upstreams
    for name in ("deep.rules.test.", "good.deep.rules.test."):
        msg = ask(ruled, name)
        assert addresses(msg, name) == [DEEP_A], describe(msg)
        assert len(deep_up.queries(name)) == 1
        assert not r_up.queries(name) and not d_up.queries(name)


def test_names_without_a_rule_go_to_the_default_upstreams(ruled, upstreams):
    d_up, r_up, deep_up = upstreams
    name = "good.elsewhere.test."
    msg = ask(ruled, name)
    assert addresses(msg, name) == [DEFAULT_A], describe(msg)
    assert len(d_up.queries(name)) == 1
    assert not r_up.queries(name) and not deep_up.queries(name)


def test_check_prints_the_effective_rules(upstreams, tmp_path, run_vpcdns):
    _, r_up, deep_up = upstreams
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(rules_config(r_up, deep_up) + "upstream_max_qps: 1000\nupstream_0x20: true\n")
    res = run_vpcdns(["--check", "--config", cfg, "--listen", "127.0.0.1:5399", "--upstream", "127.0.0.1:5398"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "rule: fwd.corp.example. -> %s" % r_up.address in lines, res.stdout
    assert "rule: pub.rules.test. -> default (the upstreams)" in lines, res.stdout
    assert "rule: deep.rules.test. -> %s" % deep_up.address in lines, res.stdout
    assert "rule: %s -> %s" % (SQS, r_up.address) in lines, res.stdout
    assert "upstream budget: 1000 queries/s per server" in lines, res.stdout
    assert "upstream 0x20: on" in lines, res.stdout
    assert "prefetch: on" in lines, res.stdout


def test_a_rule_server_that_is_ourselves_is_refused(tmp_path, run_vpcdns):
    cfg = tmp_path / "loop.yaml"
    cfg.write_text("forward:\n  - {domain: corp.example, servers: [127.0.0.1:5399]}\n")
    res = run_vpcdns(["--check", "--config", cfg, "--listen", "127.0.0.1:5399", "--upstream", "127.0.0.1:5398"])
    assert res.returncode == 2, res.stdout + res.stderr
    assert "server 127.0.0.1:5399 is one of our own listen addresses" in res.stderr, res.stderr
