"""DNS protocol rules at the listener: header, malformed and unusual queries, EDNS (RFC 1035,
6891). Hand-built packets where dnspython would refuse to build them."""

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from vdtest import addresses, describe, encode_question, header, make_query, raw_query

LOCAL = "sqs.eu-west-1.amazonaws.com."
FORWARDED = "www.example.com."

QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080


def flags_rcode(wire):
    return header(wire)[1] & 0xF


def still_answers(client):
    msg = client.query(LOCAL, "A")
    assert msg.rcode() == dns.rcode.NOERROR and len(addresses(msg, LOCAL)) == 3, describe(msg)


# ---------------------------------------------------------------- header


@pytest.mark.parametrize("name", [LOCAL, FORWARDED])
@pytest.mark.parametrize("rd", [True, False])
def test_header_id_rd_ra_aa(dns4, name, rd):
    wire = dns4.raw(make_query(name, "A", rd=rd, qid=0xBEEF).to_wire())
    assert wire is not None, "no answer"
    qid, flags, qd, an, ns, ar = header(wire)
    assert qid == 0xBEEF
    assert flags & QR, "QR clear"
    assert bool(flags & RD) == rd, "RD not echoed: flags %04x" % flags
    assert flags & RA, "RA clear: a recursive server sets it"
    assert not flags & AA, "AA set: flags %04x (the VPC resolver answers with AA clear)" % flags
    assert (flags >> 11) & 0xF == 0, "opcode changed"
    assert qd == 1 and an >= 1


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_opcode_other_than_query_is_notimp(dns4, opcode):
    wire = dns4.raw(raw_query(LOCAL, qid=0x0A0B, flags=RD | (opcode << 11)))
    assert wire is not None, "no answer"
    qid, flags, *_ = header(wire)
    assert qid == 0x0A0B and flags & QR
    assert flags & 0xF == dns.rcode.NOTIMP, "rcode %d" % (flags & 0xF)
    assert (flags >> 11) & 0xF == opcode, "opcode not echoed"


@pytest.mark.parametrize("qdcount", [0, 2])
def test_qdcount_other_than_one_is_formerr(dns4, qdcount):
    body = b"" if qdcount == 0 else encode_question(LOCAL) + encode_question(FORWARDED)
    pkt = struct.pack("!HHHHHH", 0x1111, RD, qdcount, 0, 0, 0) + body
    wire = dns4.raw(pkt)
    assert wire is not None, "no answer"
    qid, flags, *_ = header(wire)
    assert qid == 0x1111 and flags & QR
    assert flags & 0xF == dns.rcode.FORMERR, "rcode %d" % (flags & 0xF)
    still_answers(dns4)


def test_response_bit_set_gets_no_answer(dns4):
    wire = dns4.raw(raw_query(LOCAL, flags=QR | RD), timeout=0.7)
    assert wire is None, "answered a response (QR=1): reflection loop risk"
    still_answers(dns4)


def test_class_chaos_is_refused(dns4):
    wire = dns4.raw(raw_query("version.bind.", rdtype=16, rdclass=3, qid=0x2222))
    assert wire is not None, "no answer"
    qid, flags, qd, an, *_ = header(wire)
    assert qid == 0x2222
    assert flags & 0xF == dns.rcode.REFUSED, "rcode %d" % (flags & 0xF)
    assert an == 0


# cut inside the first label, inside the name, after the qtype (the name is 29 octets)
@pytest.mark.parametrize("keep", [3, 10, 31])
def test_truncated_question_is_formerr(dns4, keep):
    pkt = raw_query(LOCAL, qid=0x3333)[: 12 + keep]
    wire = dns4.raw(pkt)
    assert wire is not None, "no answer"
    qid, flags, *_ = header(wire)
    assert qid == 0x3333 and flags & QR
    assert flags & 0xF == dns.rcode.FORMERR, "rcode %d" % (flags & 0xF)
    still_answers(dns4)


def test_compression_loop_in_question_is_formerr(dns4):
    # the name is a pointer to itself
    pkt = struct.pack("!HHHHHH", 0x4444, RD, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    wire = dns4.raw(pkt)
    assert wire is not None and flags_rcode(wire) == dns.rcode.FORMERR
    still_answers(dns4)


def test_garbage_then_still_answers(dns4):
    rng = random.Random(20261127)
    for i in range(300):
        data = bytearray(rng.randbytes(rng.randrange(0, 90)))
        # clear QR in every other packet so that part of the garbage is taken for a query
        if len(data) > 2 and i % 2:
            data[2] &= 0x7F
        dns4.raw(bytes(data), timeout=0.01)
    for data in (b"", b"\x00" * 11, b"\xff" * 12, b"\x00" * 12 + b"\x3f"):
        dns4.raw(data, timeout=0.01)
    still_answers(dns4)


def test_short_packet_gets_no_answer(dns4):
    assert dns4.raw(b"\x12\x34\x01\x00\x00", timeout=0.5) is None


# ---------------------------------------------------------------- EDNS


@pytest.mark.parametrize("name", [LOCAL, FORWARDED])
def test_no_opt_without_edns(dns4, name):
    msg = dns4.query(name, "A", edns=False)
    assert msg.edns == -1, "OPT in the answer to a query without EDNS:\n" + describe(msg)
    assert msg.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("name", [LOCAL, FORWARDED])
def test_opt_with_our_payload(dns4, name):
    msg = dns4.query(name, "A", edns=True, payload=4096)
    assert msg.edns == 0, describe(msg)
    assert msg.payload == 1232, "payload %d" % msg.payload


def test_edns_version_1_is_badvers(dns4):
    q = make_query(LOCAL, "A", edns=True)
    q.use_edns(1, 0, 1232)
    msg = dns4.send(q)
    assert msg.rcode() == dns.rcode.BADVERS, "rcode %s" % dns.rcode.to_text(msg.rcode())
    assert msg.edns == 0, "BADVERS must carry our version 0 OPT"
    assert msg.answer == []


@pytest.mark.parametrize("name", [LOCAL, FORWARDED])
def test_do_bit_echoed(dns4, name):
    msg = dns4.query(name, "A", dnssec=True)
    assert msg.ednsflags & dns.flags.DO, "DO not echoed:\n" + describe(msg)
    msg = dns4.query(name, "A", edns=True)
    assert not msg.ednsflags & dns.flags.DO, "DO set but not asked:\n" + describe(msg)


def test_small_edns_payload_is_treated_as_512(dns4):
    # payload below 512 is read as 512 (RFC 6891 §6.2.5): the three A records still fit
    msg = dns4.query(LOCAL, "A", edns=True, payload=100)
    assert not msg.flags & dns.flags.TC
    assert len(addresses(msg, LOCAL)) == 3


def test_question_echoed_on_error(dns4):
    q = make_query(LOCAL, "A", edns=True)
    q.use_edns(1, 0, 1232)
    msg = dns4.send(q)
    assert [r.name.to_text() for r in msg.question] == [LOCAL]
