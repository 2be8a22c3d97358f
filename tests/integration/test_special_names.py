"""RFC 6761 special-use names through the real daemon: localhost. (and every name under it)
is 127.0.0.1 / ::1, invalid. is NXDOMAIN, the loopback reverse zones answer PTR localhost.,
and none of them ever reaches the upstream, which counts what it receives. A zone file or a
forwarding rule the user wrote for such a name wins; the start-up loop probe, a name under
invalid., still goes upstream."""

import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

import vdtest
from fakeupstream import FakeUpstream
from vdtest import addresses, answer_rrset, describe, soa_of, vpcdns_argv

V6_LOOPBACK_PTR = dns.reversename.from_address("::1").to_text()
V4_LOOPBACK_PTR = "1.0.0.127.in-addr.arpa."
SPECIAL_SOA = "localhost. nobody.invalid. 1 3600 1200 604800 10800"


@pytest.fixture(scope="module")
def up():
    with FakeUpstream() as u:
        yield u


@pytest.fixture(scope="module")
def daemon(up, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("special")
    user_zone = tmp / "user-localhost.zone"
    # a zone the user wrote for a name under localhost. (more specific than the built-in zone)
    user_zone.write_text(
        "$ORIGIN mine.localhost.\n$TTL 60\n"
        "@ IN SOA ns hostmaster 1 7200 900 1209600 60\n@ IN NS ns\nns IN A 10.7.7.7\n"
        "@ IN A 10.7.7.1\n"
    )
    cfg = tmp / "special.yaml"
    cfg.write_text("forward:\n  - {domain: ruled.localhost, servers: [%s]}\n" % up.address)

    def argv(port):
        return vpcdns_argv(port, up.address, extra=["--zone", user_zone, "--config", cfg])

    d = vdtest.start_vpcdns(tmp, up.address, argv=argv, name="vpcdns-special", probe="good.probe.test.")
    yield d
    assert d.stop() == 0, d.proc.failure("SIGTERM: expected exit status 0")


PROBE_ZONE = ".vpcdns-loop-check.invalid."


def special_queries(up):
    """What the upstream got for special names, the start-up loop probe aside."""
    return [
        q
        for q in up.queries()
        if ("localhost" in q[1] or q[1].endswith("invalid.") or "arpa" in q[1]) and PROBE_ZONE not in q[1]
    ]


def test_the_loop_probe_still_goes_upstream(daemon, up):
    probes = [q for q in up.queries() if q[1].endswith(PROBE_ZONE)]
    assert len(probes) == 1, "the start-up loop check must reach the upstream: %r" % up.queries()
    # and a probe of another vpcdns passing through us is forwarded too (a loop stays visible)
    name = "0123456789abcdef" + PROBE_ZONE
    daemon.v4.query(name, "A")
    assert len(up.queries(name)) == 1


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("name", ["localhost.", "LocalHost.", "app.db.localhost."])
def test_localhost_is_the_loopback_address(daemon, up, name, tcp):
    a = daemon.v4.query(name, "A", tcp=tcp)
    assert a.rcode() == dns.rcode.NOERROR, describe(a)
    assert addresses(a, name.lower()) == ["127.0.0.1"] or addresses(a, name) == ["127.0.0.1"], describe(a)
    aaaa = daemon.v6.query(name, "AAAA", tcp=tcp, edns=True)
    assert aaaa.rcode() == dns.rcode.NOERROR, describe(aaaa)
    assert [r.address for rr in aaaa.answer for r in rr] == ["::1"], describe(aaaa)
    assert a.question[0].name.to_text() == name, "the question as the client sent it"
    assert not special_queries(up), "the upstream was asked: %r" % special_queries(up)


def test_other_types_at_localhost_are_nodata_with_the_soa(daemon, up):
    for rdtype in ("MX", "TXT", "SRV"):
        msg = daemon.v4.query("localhost.", rdtype)
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer, describe(msg)
        soa = soa_of(msg)
        assert soa is not None and soa[0].to_text() == SPECIAL_SOA, describe(msg)
    msg = daemon.v4.query("localhost.", "NS")
    assert [r.target.to_text() for r in answer_rrset(msg, "localhost.", "NS")] == ["localhost."]
    assert not special_queries(up)


@pytest.mark.parametrize("name", ["invalid.", "foo.invalid.", "a.b.INVALID."])
def test_invalid_is_nxdomain(daemon, up, name):
    msg = daemon.v4.query(name, "A", edns=True)
    expected = dns.rcode.NOERROR if name == "invalid." else dns.rcode.NXDOMAIN
    assert msg.rcode() == expected and not msg.answer, describe(msg)
    soa = soa_of(msg)
    assert soa is not None and soa.name.to_text().lower() == "invalid.", describe(msg)
    assert not special_queries(up)


@pytest.mark.parametrize("name", [V4_LOOPBACK_PTR, V6_LOOPBACK_PTR])
def test_loopback_reverse_names_are_localhost(daemon, up, name):
    msg = daemon.v4.query(name, "PTR")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    ptr = answer_rrset(msg, name, "PTR")
    assert ptr is not None and [r.target.to_text() for r in ptr] == ["localhost."], describe(msg)
    assert not special_queries(up)


def test_other_names_in_127_in_addr_arpa_do_not_exist(daemon, up):
    msg = daemon.v4.query("9.8.7.127.in-addr.arpa.", "PTR")
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert soa_of(msg).name.to_text() == "127.in-addr.arpa.", describe(msg)
    assert not special_queries(up)


def test_a_zone_or_rule_the_user_wrote_wins(daemon, up):
    msg = daemon.v4.query("mine.localhost.", "A")
    assert addresses(msg, "mine.localhost.") == ["10.7.7.1"], describe(msg)
    msg = daemon.v4.query("other.mine.localhost.", "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN, "the user's zone says so: " + describe(msg)
    up.reset()
    msg = daemon.v4.query("good.ruled.localhost.", "A")
    assert addresses(msg, "good.ruled.localhost.") == ["192.0.2.53"], describe(msg)
    assert [q[1] for q in up.queries()] == ["good.ruled.localhost."], "the rule sends it upstream"


def test_upstream_names_still_go_upstream(daemon, up):
    up.reset()
    msg = daemon.v4.query("good.localhost.example.", "A")
    assert addresses(msg, "good.localhost.example.") == ["192.0.2.53"], describe(msg)
    assert len(up.queries("good.localhost.example.")) == 1
