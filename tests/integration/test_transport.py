"""UDP size limits and truncation, TCP framing and pipelining, the IPv6 listener."""

import struct
import time

import dns.flags
import dns.message
import dns.rcode

from vdtest import (
    TIMEOUT,
    addresses,
    answer_rrset,
    describe,
    make_query,
    tcp_connect,
    tcp_read_message,
)

BIG = "big.example.com."  # 12 TXT strings of 200 octets upstream, about 2.5 KB
LOCAL = "sqs.eu-west-1.amazonaws.com."


def frame(wire):
    return struct.pack("!H", len(wire)) + wire


def test_big_forwarded_answer_over_udp_without_edns_is_truncated(dns4):
    q = make_query(BIG, "TXT", edns=False)
    wire = dns4.raw(q.to_wire(), timeout=TIMEOUT + 1)
    assert wire is not None, "no answer"
    assert len(wire) <= 512, "UDP answer of %d octets to a client without EDNS" % len(wire)
    msg = dns.message.from_wire(wire)
    assert msg.flags & dns.flags.TC, "TC clear:\n" + describe(msg)
    assert msg.id == q.id
    assert msg.rcode() == dns.rcode.NOERROR


def test_big_forwarded_answer_over_udp_with_edns_is_truncated_at_1232(dns4):
    q = make_query(BIG, "TXT", edns=True, payload=4096)
    wire = dns4.raw(q.to_wire(), timeout=TIMEOUT + 1)
    assert wire is not None, "no answer"
    assert len(wire) <= 1232, "UDP answer of %d octets (our payload is 1232)" % len(wire)
    msg = dns.message.from_wire(wire)
    assert msg.flags & dns.flags.TC, "TC clear:\n" + describe(msg)


def test_big_forwarded_answer_over_tcp_is_complete(dns4, upstream):
    msg = dns4.query(BIG, "TXT", tcp=True)
    assert not msg.flags & dns.flags.TC, describe(msg)
    txt = answer_rrset(msg, BIG, "TXT")
    assert txt is not None and len(txt) == 12, describe(msg)
    want = answer_rrset(upstream.query(BIG, "TXT", tcp=True), BIG, "TXT")
    assert sorted(r.strings for r in txt) == sorted(r.strings for r in want)


def test_tcp_pipelined_queries_all_answered(vpcdns):
    names = [
        (LOCAL, "A"),
        ("www.example.com.", "A"),
        ("www.corp.example.", "A"),
        ("nope.example.com.", "A"),
        ("kms.eu-west-1.amazonaws.com.", "AAAA"),
    ]
    queries = {}
    blob = b""
    for i, (name, rdtype) in enumerate(names):
        q = make_query(name, rdtype, qid=0x5000 + i)
        queries[q.id] = q
        blob += frame(q.to_wire())
    with tcp_connect("127.0.0.1", vpcdns.port) as s:
        s.sendall(blob)  # all five in one write
        deadline = time.monotonic() + 5
        seen = {}
        for _ in names:
            msg = dns.message.from_wire(tcp_read_message(s, deadline))
            assert msg.id in queries, "unexpected ID %04x" % msg.id
            assert queries[msg.id].is_response(msg), describe(msg)
            seen[msg.id] = msg
    assert sorted(seen) == sorted(queries)
    assert len(addresses(seen[0x5000], LOCAL)) == 3
    assert addresses(seen[0x5001], "www.example.com.") == ["192.0.2.10"]
    assert seen[0x5003].rcode() == dns.rcode.NXDOMAIN


def test_tcp_query_split_across_writes(vpcdns):
    q = make_query(LOCAL, "A", qid=0x6001)
    data = frame(q.to_wire())
    with tcp_connect("127.0.0.1", vpcdns.port) as s:
        for piece in (data[:1], data[1:7], data[7:20], data[20:]):
            s.sendall(piece)
            time.sleep(0.05)
        msg = dns.message.from_wire(tcp_read_message(s, time.monotonic() + 3))
    assert msg.id == 0x6001
    assert len(addresses(msg, LOCAL)) == 3, describe(msg)


def test_tcp_connection_serves_several_queries_in_turn(vpcdns):
    with tcp_connect("127.0.0.1", vpcdns.port) as s:
        for i in range(3):
            q = make_query(LOCAL if i % 2 == 0 else "www.example.com.", "A", qid=0x6100 + i)
            s.sendall(frame(q.to_wire()))
            msg = dns.message.from_wire(tcp_read_message(s, time.monotonic() + 3))
            assert msg.id == 0x6100 + i and msg.answer, describe(msg)


def test_local_answer_over_tcp(dns4):
    msg = dns4.query(LOCAL, "A", tcp=True)
    assert sorted(addresses(msg, LOCAL)) == ["10.1.1.10", "10.1.2.10", "10.1.3.10"], describe(msg)


def test_ipv6_listener_udp_and_tcp(vpcdns):
    for tcp in (False, True):
        msg = vpcdns.v6.query(LOCAL, "A", tcp=tcp)
        assert sorted(addresses(msg, LOCAL)) == ["10.1.1.10", "10.1.2.10", "10.1.3.10"], describe(msg)
        msg = vpcdns.v6.query("www.example.com.", "AAAA", tcp=tcp)
        assert addresses(msg, "www.example.com.", "AAAA") == ["2001:db8::10"], describe(msg)
