"""A private zone from an RFC 1035 master file (tests/data/integ/corp.zone): records with the
file's TTLs, wildcard, CNAME chain, NXDOMAIN and NODATA with the zone's SOA."""

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from vdtest import addresses, answer_rrset, describe, make_query, soa_of

ZONE = "corp.example."


def name(label):
    return "%s.%s" % (label, ZONE)


def test_a_rrset_with_file_ttl(dns4):
    msg = dns4.query(name("www"), "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert sorted(addresses(msg, name("www"))) == ["10.100.0.10", "10.100.0.11"], describe(msg)
    assert answer_rrset(msg, name("www"), "A").ttl == 300


def test_record_with_own_ttl(dns4):
    msg = dns4.query(name("mx1"), "A")
    assert addresses(msg, name("mx1")) == ["10.100.0.25"], describe(msg)
    assert answer_rrset(msg, name("mx1"), "A").ttl == 600


def test_aaaa_mx_txt(dns4):
    msg = dns4.query(name("www"), "AAAA")
    assert addresses(msg, name("www"), "AAAA") == ["fd00:100::10"], describe(msg)
    msg = dns4.query(name("mail"), "MX")
    mx = answer_rrset(msg, name("mail"), "MX")
    assert mx is not None and [(r.preference, r.exchange.to_text()) for r in mx] == [
        (10, "mx1.corp.example.")
    ], describe(msg)
    msg = dns4.query(name("notes"), "TXT")
    txt = answer_rrset(msg, name("notes"), "TXT")
    assert txt is not None and txt[0].strings == (b"vpcdns integration test zone",), describe(msg)


def test_apex_soa_and_ns(dns4):
    msg = dns4.query(ZONE, "SOA")
    soa = answer_rrset(msg, ZONE, "SOA")
    assert soa is not None and soa[0].serial == 2026112701, describe(msg)
    msg = dns4.query(ZONE, "NS")
    ns = answer_rrset(msg, ZONE, "NS")
    assert ns is not None and [r.target.to_text() for r in ns] == ["ns1.corp.example."], describe(msg)


def test_wildcard(dns4):
    for asked in (name("web.apps"), name("a.b.apps")):
        msg = dns4.query(asked, "A")
        assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
        assert addresses(msg, asked) == ["10.100.1.1"], describe(msg)


def test_cname_chain_followed_in_one_answer(dns4):
    msg = dns4.query(name("alias"), "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    chain = [(r.name.to_text(), r.rdtype) for r in msg.answer]
    assert chain == [
        (name("alias"), dns.rdatatype.CNAME),
        (name("alias2"), dns.rdatatype.CNAME),
        (name("www"), dns.rdatatype.A),
    ], describe(msg)
    assert sorted(addresses(msg, name("www"))) == ["10.100.0.10", "10.100.0.11"]


def test_cname_queried_directly(dns4):
    msg = dns4.query(name("alias2"), "CNAME")
    cname = answer_rrset(msg, name("alias2"), "CNAME")
    assert cname is not None and cname[0].target == dns.name.from_text(name("www")), describe(msg)
    assert len(msg.answer) == 1, describe(msg)


def test_nxdomain_with_zone_soa(dns4):
    msg = dns4.query(name("nope"), "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert msg.answer == []
    soa = soa_of(msg)
    assert soa is not None and soa.name == dns.name.from_text(ZONE), describe(msg)
    assert soa[0].serial == 2026112701
    # RFC 2308: a negative answer is cached no longer than the SOA's MINIMUM
    assert soa.ttl <= 300


def test_nodata_with_zone_soa(dns4):
    msg = dns4.query(name("www"), "MX")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert msg.answer == [], describe(msg)
    soa = soa_of(msg)
    assert soa is not None and soa.name == dns.name.from_text(ZONE), describe(msg)


def test_empty_non_terminal_is_nodata(dns4):
    # apps.corp.example has no records but a wildcard under it: it exists (RFC 4592)
    msg = dns4.query(name("apps"), "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert msg.answer == [], describe(msg)
    assert soa_of(msg) is not None, describe(msg)


def test_wildcard_nodata(dns4):
    msg = dns4.query(name("web.apps"), "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer == [], describe(msg)
    assert soa_of(msg) is not None, describe(msg)


def test_large_local_answer_truncated_over_udp_complete_over_tcp(dns4):
    many = name("many")
    # without EDNS: 512 octets at most, TC set
    q = make_query(many, "A", qid=0x0C0C)
    wire = dns4.raw(q.to_wire())
    assert wire is not None and len(wire) <= 512, "UDP answer of %s octets" % (wire and len(wire))
    msg = dns.message.from_wire(wire)
    assert msg.flags & dns.flags.TC, describe(msg)
    # EDNS 1232: fits whole
    msg = dns4.query(many, "A", edns=True, payload=1232)
    assert not msg.flags & dns.flags.TC and len(addresses(msg, many)) == 40, describe(msg)
    # TCP: whole
    msg = dns4.query(many, "A", tcp=True)
    assert not msg.flags & dns.flags.TC and len(addresses(msg, many)) == 40, describe(msg)
