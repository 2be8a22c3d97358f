#!/usr/bin/python3
"""gen_corpus.py — regenerates the seed corpora in tests/fuzz/corpus/ (run with Debian's
/usr/bin/python3 and python3-dnspython):
    /usr/bin/python3 tests/fuzz/gen_corpus.py
query/    client messages for fuzz_query (odd length = TCP in the harness)
relay/    [qlen][query][max_len selector][cap selector][upstream answer] for fuzz_relay
aws/      describe-vpc-endpoints.json NUL describe-network-interfaces.json for fuzz_aws
zonefile/, hosted_zone/ and config/: the repository's example and test files, unchanged."""
import os
import shutil
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def reset(name):
    d = os.path.join(CORPUS, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def query(name, rdtype, edns=-1, payload=1232, do=False, options=(), qid=0x4242,
          rdclass="IN"):
    q = dns.message.make_query(name, rdtype, rdclass, use_edns=edns, payload=payload,
                               want_dnssec=do, options=list(options))
    q.id = qid
    return q


def with_parity(q, odd):
    """Wire form of q with the requested length parity: EDNS padding (option 12) toggles it."""
    wire = q.to_wire()
    if (len(wire) % 2 == 1) == odd:
        return wire
    q2 = dns.message.make_query(q.question[0].name, q.question[0].rdtype, use_edns=0,
                                payload=1232, options=[dns.edns.GenericOption(12, b"")])
    q2.id = q.id
    wire = q2.to_wire()
    if (len(wire) % 2 == 1) != odd:
        q2 = dns.message.make_query(q.question[0].name, q.question[0].rdtype, use_edns=0,
                                    payload=1232, options=[dns.edns.GenericOption(12, b"\0")])
        q2.id = q.id
        wire = q2.to_wire()
    return wire


NAMES = [
    "web.corp.example.internal", "WwW.Corp.Example.Internal", "corp.example.internal",
    "nothere.corp.example.internal", "grafana.apps.corp.example.internal",
    "a.b.apps.corp.example.internal", "status.apps.corp.example.internal",
    "queue.corp.example.internal", "_ldap._tcp.corp.example.internal",
    "sqs.us-east-1.amazonaws.com", "SQS.us-east-1.amazonaws.com",
    "vpce-0fd9f58376efe8244-gm7vrd49.sqs.us-east-1.vpce.amazonaws.com",
    "vpce-0fd9f58376efe8244-gm7vrd49-us-east-1a.sqs.us-east-1.vpce.amazonaws.com",
    "bucket.vpce-0cd7ecab13d4bc504-1kdzzkp7.s3.us-east-1.vpce.amazonaws.com",
    "abc.execute-api.us-east-1.amazonaws.com", "us-east-1.vpce.amazonaws.com",
    "missing.us-east-1.vpce.amazonaws.com", "example.com", ".",
]


def gen_query():
    d = reset("query")
    n = 0
    for i, name in enumerate(NAMES):
        for rdtype in ("A", "AAAA", "ANY"):
            q = query(name, rdtype, qid=i * 16 + n % 16)
            write(d, "plain-%02d-%s" % (i, rdtype), q.to_wire())
            n += 1
        write(d, "edns-%02d" % i, query(name, "A", edns=0, payload=4096).to_wire())
        write(d, "do-%02d" % i, query(name, "AAAA", edns=0, payload=1232, do=True).to_wire())
        write(d, "tcp-%02d" % i, with_parity(query(name, "ANY"), True))
        write(d, "udp-even-%02d" % i, with_parity(query(name, "A"), False))
    for t in ("MX", "TXT", "SRV", "SOA", "NS", "CNAME", "PTR", "AXFR", "IXFR", "MAILA", "OPT",
              "TYPE65534"):
        write(d, "type-%s" % t, query("corp.example.internal", t).to_wire())
    write(d, "chaos", query("version.bind", "TXT", rdclass="CH").to_wire())
    write(d, "small-payload", query("corp.example.internal", "ANY", edns=0,
                                    payload=100).to_wire())
    write(d, "edns-v1", query("web.corp.example.internal", "A", edns=1).to_wire())
    write(d, "edns-options", query("web.corp.example.internal", "A", edns=0, options=[
        dns.edns.GenericOption(10, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
        dns.edns.ECSOption("10.0.0.0", 24)]).to_wire())
    q = query("web.corp.example.internal", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    write(d, "opcode-notify", q.to_wire())
    q = query("web.corp.example.internal", "A")
    q.flags |= dns.flags.QR
    write(d, "qr-set", q.to_wire())
    q = query("web.corp.example.internal", "A")
    q.flags |= dns.flags.CD | dns.flags.AD
    q.flags &= ~dns.flags.RD
    write(d, "flags", q.to_wire())
    wire = query("web.corp.example.internal", "A").to_wire()
    write(d, "trailing", wire + b"\0")
    write(d, "short", wire[:11])
    write(d, "qdcount0", wire[:4] + b"\0\0" + wire[6:12])
    write(d, "qdcount2", wire[:4] + b"\0\2" + wire[6:] + wire[12:])
    # Question name compressed (a pointer to itself / forward): FORMERR.
    write(d, "qname-pointer", wire[:12] + b"\xc0\x0c\x00\x01\x00\x01")
    # A query carrying an answer record (allowed by the parser: records are skipped).
    q = query("web.corp.example.internal", "A", edns=0)
    q.answer.append(dns.rrset.from_text("web.corp.example.internal.", 60, "IN", "A", "1.2.3.4"))
    write(d, "with-answer", q.to_wire())
    # The longest legal name.
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    write(d, "name-255", query(long, "A").to_wire())


def relay_input(q, answer, max_sel=7, cap_sel=10):
    qw = q.to_wire() if not isinstance(q, bytes) else q
    assert len(qw) < 256
    return bytes([len(qw)]) + qw + bytes([max_sel, cap_sel]) + answer


def rr(name, ttl, rdtype, *texts):
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *texts)


def gen_relay():
    d = reset("relay")
    # A with compression, upstream OPT, client with EDNS.
    q = query("www.example.com", "A", edns=0, payload=1232)
    r = dns.message.make_response(q)
    r.answer.append(rr("www.example.com.", 300, "CNAME", "web.example.com."))
    r.answer.append(rr("web.example.com.", 300, "A", "93.184.216.34", "93.184.216.35"))
    r.authority.append(rr("example.com.", 3600, "NS", "ns1.example.com.", "ns2.example.com."))
    r.additional.append(rr("ns1.example.com.", 3600, "A", "192.0.2.1"))
    write(d, "cname-opt", relay_input(q, r.to_wire()))
    write(d, "cname-opt-tc", relay_input(q, r.to_wire(), max_sel=4))
    # Same answer to a client without EDNS: our side strips the upstream OPT.
    q2 = query("www.example.com", "A")
    r2 = dns.message.make_response(q2)
    r2.use_edns(0, 0, 4096)
    for s in r.answer:
        r2.answer.append(s)
    write(d, "cname-strip-opt", relay_input(q2, r2.to_wire()))
    # NXDOMAIN + SOA.
    q = query("nothere.example.com", "AAAA", edns=0, do=True)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.NXDOMAIN)
    r.authority.append(rr("example.com.", 900, "SOA",
                          "ns.example.com. hostmaster.example.com. 1 7200 900 1209600 300"))
    write(d, "nxdomain-soa", relay_input(q, r.to_wire()))
    # Upstream spelt the question in another case.
    q = query("MiXeD.Example.COM", "A")
    r = dns.message.make_response(query("mixed.example.com", "A"))
    r.id = q.id
    r.answer.append(rr("mixed.example.com.", 60, "A", "198.51.100.7"))
    write(d, "case", relay_input(q, r.to_wire()))
    # Many records: truncation to 512 and to small caps.
    q = query("big.example.com", "TXT")
    r = dns.message.make_response(q)
    r.answer.append(rr("big.example.com.", 60, "TXT",
                       *['"record %03d %s"' % (i, "x" * 40) for i in range(30)]))
    write(d, "big-512", relay_input(q, r.to_wire(), max_sel=7))
    write(d, "big-cap-small", relay_input(q, r.to_wire(), max_sel=9, cap_sel=5))
    # MX / SRV / SOA answers with names in rdata (compressed by dnspython for MX).
    q = query("example.com", "MX", edns=0)
    r = dns.message.make_response(q)
    r.answer.append(rr("example.com.", 300, "MX", "10 mail.example.com.", "20 mx2.example.com."))
    r.additional.append(rr("mail.example.com.", 300, "A", "192.0.2.25"))
    r.additional.append(rr("mx2.example.com.", 300, "AAAA", "2001:db8::25"))
    write(d, "mx", relay_input(q, r.to_wire()))
    q = query("_sip._udp.example.com", "SRV")
    r = dns.message.make_response(q)
    r.answer.append(rr("_sip._udp.example.com.", 300, "SRV", "0 5 5060 sip.example.com."))
    write(d, "srv", relay_input(q, r.to_wire()))
    # Extended rcode (BADCOOKIE 23) for an EDNS client.
    q = query("example.com", "A", edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(23)
    write(d, "ext-rcode", relay_input(q, r.to_wire()))
    # SERVFAIL, empty NOERROR, AA set upstream.
    q = query("fail.example.com", "A")
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.SERVFAIL)
    write(d, "servfail", relay_input(q, r.to_wire()))
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    write(d, "nodata-aa", relay_input(q, r.to_wire()))
    # Hand-made: OPT first in the additional section, then records whose names are compressed
    # against names before the OPT (offsets that stay valid once the OPT is removed).
    # regress/relay/opt-not-last-rdata-pointer is the variant whose CNAME points past the OPT.
    q = query("a.example.com", "NS", edns=0)
    qw = q.to_wire()
    qname = dns.name.from_text("a.example.com.").to_wire()
    hdr = struct.pack("!HHHHHH", q.id, 0x8180, 1, 1, 0, 3)
    msg = bytearray(hdr + qname + struct.pack("!HH", 2, 1))
    # answer: a.example.com NS ns.a.example.com (ns + pointer to qname)
    msg += b"\xc0\x0c" + struct.pack("!HHIH", 2, 1, 300, 5) + b"\x02ns\xc0\x0c"
    ns_off = len(msg) - 5
    # additional: OPT (root), then ns.a.example.com A, then x.example.com CNAME -> pointer to
    # the owner just written after the OPT.
    msg += b"\x00" + struct.pack("!HHIH", 41, 4096, 0, 0)
    owner_off = len(msg)
    msg += b"\x01x\xc0\x0e" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 9])
    msg += struct.pack("!H", 0xC000 | ns_off) + struct.pack("!HHIH", 5, 1, 300, 2)
    msg += struct.pack("!H", 0xC000 | ns_off)
    assert owner_off > ns_off
    write(d, "opt-first-compressed", relay_input(qw, bytes(msg)))
    # Mismatching question, garbage, truncated answer.
    r = dns.message.make_response(query("other.example.com", "A"))
    write(d, "wrong-question", relay_input(q, r.to_wire()))
    write(d, "short-answer", relay_input(q, b"\x42\x42\x81\x80\x00\x01"))


def gen_aws():
    d = reset("aws")
    dirs = [os.path.join(SRC, "zones", "example"), os.path.join(SRC, "tests", "data", "integ",
                                                                "snapshot")]
    base = os.path.join(SRC, "tests", "data", "aws")
    for root, _, files in sorted(os.walk(base)):
        if "describe-vpc-endpoints.json" in files or "describe-network-interfaces.json" in files:
            dirs.append(root)
    for root in dirs:
        parts = []
        for f in ("describe-vpc-endpoints.json", "describe-network-interfaces.json"):
            p = os.path.join(root, f)
            parts.append(open(p, "rb").read() if os.path.exists(p) else b"")
        name = os.path.relpath(root, SRC).replace("/", "_")
        write(d, name, parts[0] + b"\0" + parts[1])


def copy_files(name, paths):
    d = reset(name)
    for p in paths:
        write(d, os.path.relpath(p, SRC).replace("/", "_"), open(p, "rb").read())


def gen_zonefile():
    paths = [os.path.join(SRC, "zones", "example", "corp.zone"),
             os.path.join(SRC, "tests", "data", "integ", "corp.zone")]
    for root, _, files in sorted(os.walk(os.path.join(SRC, "tests", "data", "zones"))):
        paths += [os.path.join(root, f) for f in sorted(files)]
    copy_files("zonefile", paths)


def gen_hosted_zone():
    paths = [os.path.join(SRC, "tests", "data", "hosted", "corp.json")]
    for root, _, files in sorted(os.walk(os.path.join(SRC, "tests", "data", "hosted", "hub"))):
        paths += [os.path.join(root, f) for f in sorted(files) if f.endswith(".json") and
                  not f.startswith("describe-")]
    copy_files("hosted_zone", paths)


def gen_config():
    paths = [os.path.join(SRC, "zones", "example", "vpcdns.yaml")]
    for root, _, files in sorted(os.walk(os.path.join(SRC, "tests", "data", "config"))):
        paths += [os.path.join(root, f) for f in sorted(files) if f.endswith(".yaml")]
    copy_files("config", paths)


if __name__ == "__main__":
    gen_query()
    gen_relay()
    gen_aws()
    gen_zonefile()
    gen_hosted_zone()
    gen_config()
