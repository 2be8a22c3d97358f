"""ANY (RFC 8482) through the real daemon: a name vpcdns holds answers with its own RRsets; a
name without local data is forwarded and the upstream's answer relayed as it is (NXDOMAIN for a
name that does not exist, the CNAME at a CNAME owner), and never served from the cache."""

import dns.rcode
import dns.rdatatype

from fakeupstream import FakeUpstream
from vdtest import addresses, answer_rrset, describe, soa_of, vpcdns_argv
import vdtest


def records(msg):
    return sorted((rr.name.to_text().lower(), rr.rdtype, r.to_text()) for rr in msg.answer for r in rr)


def test_any_for_an_upstream_name_relays_the_upstreams_rrsets(dns4, upstream):
    msg = dns4.query("www.example.com.", "ANY", tcp=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    # NSD itself answers ANY over UDP with one RRset (RFC 8482): whatever it says is relayed
    direct = upstream.query("www.example.com.", "ANY")
    assert records(msg) == records(direct) and records(msg), describe(msg) + describe(direct)
    assert answer_rrset(msg, "www.example.com.", "HINFO") is None, describe(msg)


def test_any_for_a_name_that_does_not_exist_is_nxdomain(dns4):
    msg = dns4.query("no-such-name.example.com.", "ANY")
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert not msg.answer, describe(msg)
    soa = soa_of(msg)
    assert soa is not None and soa.name.to_text() == "example.com.", describe(msg)


def test_any_at_an_upstream_cname_owner_is_the_cname(dns4):
    msg = dns4.query("away.example.com.", "ANY", edns=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert [rr.rdtype for rr in msg.answer] == [dns.rdatatype.CNAME], describe(msg)


def test_any_at_a_local_name_is_answered_locally(dns4):
    msg = dns4.query("www.corp.example.", "ANY", tcp=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert sorted(addresses(msg, "www.corp.example.", "A")) == ["10.100.0.10", "10.100.0.11"]
    assert addresses(msg, "www.corp.example.", "AAAA") == ["fd00:100::10"], describe(msg)


def test_any_is_forwarded_every_time_never_cached(tmp_path):
    with FakeUpstream() as up:

        def argv(port):
            return vpcdns_argv(port, up.address, extra=["--workers", "1"])

        d = vdtest.start_vpcdns(tmp_path, up.address, argv=argv, probe="good.probe.test.")
        try:
            for _ in range(3):
                msg = d.v4.query("good.any.test.", "ANY")
                assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
            asked = [q for q in up.queries("good.any.test.") if q[2] == dns.rdatatype.ANY]
            assert len(asked) == 3, "ANY must reach the upstream each time: %r" % asked
            # an ordinary type is cached: asked once
            for _ in range(3):
                d.v4.query("good.any.test.", "A")
            assert len([q for q in up.queries("good.any.test.") if q[2] == dns.rdatatype.A]) == 1
        finally:
            assert d.stop() == 0, d.proc.failure("SIGTERM")
