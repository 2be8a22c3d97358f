"""Forwarding to the upstream: answers relayed as the upstream gave them (rcode, sections),
and SERVFAIL in bounded time when no upstream answers."""

import socket
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from vdtest import addresses, answer_rrset, describe, free_port, make_query, soa_of


def test_forwarded_records(dns4):
    msg = dns4.query("www.example.com.", "A")
    assert msg.rcode() == dns.rcode.NOERROR
    assert addresses(msg, "www.example.com.") == ["192.0.2.10"], describe(msg)
    msg = dns4.query("example.com.", "MX")
    mx = answer_rrset(msg, "example.com.", "MX")
    assert mx is not None and mx[0].exchange.to_text() == "mail.example.com.", describe(msg)
    msg = dns4.query("example.com.", "TXT")
    txt = answer_rrset(msg, "example.com.", "TXT")
    assert txt is not None and txt[0].strings == (b"v=spf1 -all",), describe(msg)


def test_forwarded_ttl_is_not_raised(dns4):
    msg = dns4.query("www.example.com.", "AAAA")
    rrset = answer_rrset(msg, "www.example.com.", "AAAA")
    assert rrset is not None and 0 < rrset.ttl <= 3600, describe(msg)


def test_upstream_nxdomain_reaches_client_with_soa(dns4):
    msg = dns4.query("nope.example.com.", "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    soa = soa_of(msg)
    assert soa is not None and soa.name == dns.name.from_text("example.com."), describe(msg)
    assert soa[0].serial == 2026112701


def test_upstream_nodata_reaches_client_with_soa(dns4):
    msg = dns4.query("www.example.com.", "MX")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer == [], describe(msg)
    assert soa_of(msg) is not None, describe(msg)


def test_cname_out_of_zone_relayed(dns4):
    msg = dns4.query("away.example.com.", "A")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    cname = answer_rrset(msg, "away.example.com.", "CNAME")
    assert cname is not None and cname[0].target.to_text() == "target.example.net.", describe(msg)


def test_forwarded_question_case_echoed(dns4):
    asked = "WwW.ExAmPlE.CoM."
    q = make_query(asked, "A", qid=0x7777)
    wire = dns4.raw(q.to_wire())
    assert wire is not None
    qname = dns.name.from_text(asked).to_wire()
    assert wire[12 : 12 + len(qname)] == qname, "question case not restored: %r" % wire[12:40]
    assert wire[:2] == b"\x77\x77"


def test_many_forwarded_queries_in_flight(vpcdns):
    # 30 different queries sent before reading any answer: every one answered with its ID
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    want = {}
    for i in range(30):
        name = "www.example.com." if i % 3 else "nope.example.com."
        q = make_query(name, "A" if i % 2 else "AAAA", qid=0x8000 + i)
        want[q.id] = q
        s.sendto(q.to_wire(), ("127.0.0.1", vpcdns.port))
    got = {}
    deadline = time.monotonic() + 5
    try:
        while len(got) < len(want) and time.monotonic() < deadline:
            wire = s.recv(65535)
            m = dns.message.from_wire(wire)
            assert want[m.id].is_response(m), describe(m)
            got[m.id] = m
    except socket.timeout:
        pass
    finally:
        s.close()
    assert sorted(got) == sorted(want), "missing answers for %s" % sorted(set(want) - set(got))


@pytest.fixture
def silent_upstream():
    """A UDP socket on 127.0.0.1 that receives and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield "127.0.0.1:%d" % s.getsockname()[1]
    s.close()


def assert_servfail_in_time(d, name="www.example.com."):
    q = make_query(name, "A", qid=0x9999)
    t0 = time.monotonic()
    wire = d.v4.raw(q.to_wire(), timeout=4.0)
    elapsed = time.monotonic() - t0
    assert wire is not None, "no answer within 4 s"
    m = dns.message.from_wire(wire)
    assert m.id == 0x9999
    assert m.rcode() == dns.rcode.SERVFAIL, describe(m)
    assert elapsed < 2.5, "SERVFAIL after %.2f s" % elapsed
    return m


def test_silent_upstream_servfail_within_budget(start_daemon, silent_upstream):
    d = start_daemon(silent_upstream)
    assert_servfail_in_time(d)
    # local data is still answered at once
    msg = d.v4.query("sqs.eu-west-1.amazonaws.com.", "A")
    assert len(addresses(msg, "sqs.eu-west-1.amazonaws.com.")) == 3
    assert d.stop() == 0, d.proc.failure("SIGTERM with a pending query: status not 0")


def test_closed_upstream_port_servfail(start_daemon):
    port = free_port(("127.0.0.1",))
    d = start_daemon("127.0.0.1:%d" % port)
    assert_servfail_in_time(d)
    assert_servfail_in_time(d, "nope.example.com.")


def test_sigterm_with_query_in_flight(start_daemon, silent_upstream):
    d = start_daemon(silent_upstream)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(make_query("www.example.com.", "A").to_wire(), ("127.0.0.1", d.port))
    time.sleep(0.2)
    t0 = time.monotonic()
    status = d.stop()
    s.close()
    assert status == 0, d.proc.failure("exit status %s after SIGTERM" % status)
    assert time.monotonic() - t0 < 3.0
