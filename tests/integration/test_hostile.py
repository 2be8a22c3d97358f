"""Malformed and hostile input through the real daemon: every class of bad client
packet with its defined outcome (drop, FORMERR, NOTIMP, REFUSED, BADVERS), hostile TCP
clients (length 0, length beyond the data, slow senders, clients that never read, thousands
of abandoned connections) and a misbehaving upstream (fakeupstream.py). After each case the
server must still answer a normal query; every daemon started here must stop with status 0
on SIGTERM and its stderr must hold no sanitizer report (build with -DVD_SANITIZE=ON and run
with VPCDNS_BIN pointing at it for the sanitizers to be there at all).

Everything talks to 127.0.0.0/8 only; every loop and wait is bounded."""

import errno
import os
import random
import resource
import select
import selectors
import socket
import struct
import time

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

import vdtest
from fakeupstream import BIG_TXT_COUNT, GOOD_A, TRUNCATED_A, FakeUpstream
from vdtest import (
    TIMEOUT,
    addresses,
    answer_rrset,
    describe,
    encode_question,
    header,
    make_query,
    tcp_connect,
    tcp_read_message,
    vpcdns_argv,
)

LOCAL = "sqs.eu-west-1.amazonaws.com."
LOCAL_ADDRS = ["10.1.1.10", "10.1.2.10", "10.1.3.10"]
FORWARDED = "www.example.com."  # served by the NSD upstream
FORWARDED_ADDR = "192.0.2.10"

QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_QUERY, OPCODE_STATUS, OPCODE_NOTIFY, OPCODE_UPDATE = 0, 2, 4, 5
T_A, T_TXT, T_OPT, T_IXFR, T_AXFR = 1, 16, 41, 251, 252
C_IN, C_CH, C_ANY = 1, 3, 255

IDLE_MS = 1000  # tcp_idle_timeout_ms of the main hostile daemon
MAX_CONN = 100  # its tcp_max_connections
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# A one-name zone: the shortest query that local data answers ("t." SOA, 19 octets), so
# that a slow TCP sender can deliver it byte by byte in a few seconds.
TINY_ZONE = """$ORIGIN t.
$TTL 60
@   IN SOA ns.t. hostmaster.t. 1 3600 600 86400 60
@   IN NS  ns
ns  IN A   10.9.9.9
"""

# ---------------------------------------------------------------------------- packets


def name_wire(labels):
    """Wire name from raw label bytes, without any checks (for names no library would build)."""
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"


def hdr(qd=1, an=0, ns=0, ar=0, flags=RD, qid=0x4242):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def opt_rr(payload=1232, ext_rcode=0, version=0, do=False, rdata=b"", owner=b"\x00", rdlen=None):
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    n = len(rdata) if rdlen is None else rdlen
    return owner + struct.pack("!HHIH", T_OPT, payload, ttl, n) + rdata


def rr(owner, rtype, rdata, rdlen=None, ttl=0):
    n = len(rdata) if rdlen is None else rdlen
    return owner + struct.pack("!HHIH", rtype, C_IN, ttl, n) + rdata


Q = encode_question(LOCAL)
QEND = 12 + len(Q)  # offset just past the question
COOKIE = struct.pack("!HH", 10, 8) + b"\x01\x02\x03\x04\x05\x06\x07\x08"


def frame(wire):
    return struct.pack("!H", len(wire)) + wire


# ---------------------------------------------------------------------------- helpers


def sanitizer_report(proc):
    try:
        text = proc.errpath.read_text(errors="replace")
    except OSError:
        return None
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            return text[max(0, i - 300) : i + 4000]
    return None


def stop_clean(d):
    """SIGTERM: exit status 0 within 3 s and no sanitizer report in stderr."""
    alive = d.proc.alive()
    status = d.stop()
    report = sanitizer_report(d.proc)
    assert alive, d.proc.failure("died during the tests (status %s)" % status)
    assert status == 0, d.proc.failure("SIGTERM: expected exit status 0 within 3 s, got %s" % status)
    assert report is None, "%s: sanitizer report in stderr:\n%s" % (d.proc.name, report)


_DAEMONS = []  # daemons of this module, checked after every test


@pytest.fixture(autouse=True)
def no_sanitizer_report():
    """After each test: every daemon of this module is alive and has reported nothing."""
    yield
    for d in list(_DAEMONS):
        report = sanitizer_report(d.proc)
        assert report is None, "%s: sanitizer report in stderr:\n%s" % (d.proc.name, report)
        assert d.proc.alive(), d.proc.failure("died (status %s)" % d.proc.p.returncode)


def still_answers(d, tcp=False):
    """The follow-up: a local name and a forwarded name are answered normally."""
    msg = d.v4.query(LOCAL, "A", tcp=tcp)
    assert msg.rcode() == dns.rcode.NOERROR and sorted(addresses(msg, LOCAL)) == LOCAL_ADDRS, (
        "local name not answered normally afterwards:\n" + describe(msg)
    )
    name, addr = d.forward_probe()
    msg = d.v4.query(name, "A", tcp=tcp)
    assert addresses(msg, name) == [addr], "forwarded name not answered normally afterwards:\n" + describe(msg)


def ask(d, pkt, tcp=False, timeout=TIMEOUT):
    """Sends a raw query over UDP or TCP (framed): the reply bytes, or None."""
    if not tcp:
        return d.v4.raw(pkt, timeout=timeout)
    with tcp_connect("127.0.0.1", d.port, timeout) as s:
        s.sendall(frame(pkt))
        try:
            return tcp_read_message(s, time.monotonic() + timeout)
        except (TimeoutError, ConnectionError):
            return None


def check_reply(pkt, wire, want_rcode):
    """The reply carries the query's ID, QR, no answer records and the expected rcode."""
    assert wire is not None, "no answer (expected %s) to %s" % (dns.rcode.to_text(want_rcode), pkt.hex())
    qid, flags, qd, an, ns, ar = header(wire)
    assert qid == struct.unpack("!H", pkt[:2])[0], "ID not echoed: %04x" % qid
    assert flags & QR, "QR clear in the reply"
    if (flags >> 11) & 0xF != OPCODE_QUERY:
        # dnspython reads other opcodes with their own section rules: check the header only
        assert flags & 0xF == want_rcode and ar == 0, "expected %s, got rcode %d: %s" % (
            dns.rcode.to_text(want_rcode),
            flags & 0xF,
            wire.hex(),
        )
        assert an == 0 and ns == 0, "an error reply with records: %s" % wire.hex()
        return None
    try:
        msg = dns.message.from_wire(wire)
    except Exception as e:  # noqa: BLE001 — the message names what was wrong
        raise AssertionError("malformed reply (%s): %s" % (e, wire.hex())) from None
    assert msg.rcode() == want_rcode, "expected %s, got %s:\n%s" % (
        dns.rcode.to_text(want_rcode),
        dns.rcode.to_text(msg.rcode()),
        describe(msg),
    )
    if want_rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        assert an == 0 and ns == 0, "an error reply with records:\n" + describe(msg)
    return msg


def assert_dropped(d, packets, settle=0.4):
    """Sends packets then a normal query from one socket: the only reply is the normal one."""
    sentinel = make_query(LOCAL, "A", qid=0x5EED)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets:
            s.sendto(p, ("127.0.0.1", d.port))
        s.sendto(sentinel.to_wire(), ("127.0.0.1", d.port))
        replies = []
        deadline = time.monotonic() + TIMEOUT
        got_sentinel_at = None
        while time.monotonic() < deadline:
            if got_sentinel_at is not None and time.monotonic() > got_sentinel_at + settle:
                break
            s.settimeout(max(0.01, min(deadline, (got_sentinel_at or deadline) + settle) - time.monotonic()))
            try:
                wire = s.recv(65535)
            except socket.timeout:
                continue
            replies.append(wire)
            if len(wire) >= 2 and wire[:2] == b"\x5e\xed":
                got_sentinel_at = time.monotonic()
    others = [w.hex() for w in replies if w[:2] != b"\x5e\xed"]
    assert got_sentinel_at is not None, "the normal query after the dropped packets got no answer"
    assert others == [], "replies to packets that must be dropped: %s" % others


def readable(sock, timeout):
    p = select.poll()
    p.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(p.poll(max(0, int(timeout * 1000))))


def closed_without_data(sock, limit):
    """Waits at most limit seconds for the peer to close: (closed, data received)."""
    deadline = time.monotonic() + limit
    data = b""
    while time.monotonic() < deadline:
        if not readable(sock, deadline - time.monotonic()):
            continue
        try:
            chunk = sock.recv(65535)
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def held_connections(pid, port):
    """Remote ports of the TCP connections to local port `port` that process pid holds open
    (from /proc: sockets among its descriptors, listeners excluded)."""
    inodes = set()
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            link = os.readlink(os.path.join(fddir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    held = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
                if int(local.rsplit(":", 1)[1], 16) == port and state != "0A" and inode in inodes:
                    held.append(int(remote.rsplit(":", 1)[1], 16))
    return held


def wait_until(pred, limit, step=0.05):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---------------------------------------------------------------------------- daemons


def start_configured(tmp, upstream, config, name, forward_probe):
    tmp.joinpath("t.zone").write_text(TINY_ZONE)
    cfg = tmp / (name + ".yaml")
    cfg.write_text(config)

    def argv(port):
        return vpcdns_argv(port, upstream, extra=["--config", cfg, "--zone", tmp / "t.zone"])

    d = vdtest.start_vpcdns(tmp, upstream, argv=argv, name=name)
    d.forward_probe = forward_probe
    return d


def nsd_probe():
    return FORWARDED, FORWARDED_ADDR


@pytest.fixture(scope="module")
def hostile(nsd, tmp_path_factory):
    """The daemon under attack: one worker, short TCP idle timeout, a small connection cap."""
    tmp = tmp_path_factory.mktemp("hostile")
    config = "workers: 1\ntcp_idle_timeout_ms: %d\ntcp_max_connections: %d\n" % (IDLE_MS, MAX_CONN)
    d = start_configured(tmp, "%s:%d" % nsd, config, "vpcdns-hostile", nsd_probe)
    _DAEMONS.append(d)
    yield d
    _DAEMONS.remove(d)
    stop_clean(d)


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as f:
        yield f


_counter = [0]


def unique(behaviour):
    """A query name for the fake upstream, never asked before (no cache can answer it)."""
    _counter[0] += 1
    return "%s.n%d.fake.test." % (behaviour, _counter[0])


@pytest.fixture(scope="module")
def behind_fake(fake, tmp_path_factory):
    """A daemon whose only upstream is the misbehaving fake."""
    tmp = tmp_path_factory.mktemp("behind-fake")
    d = start_configured(
        tmp, fake.address, "workers: 1\nupstream_timeout_ms: 2000\n", "vpcdns-fake", lambda: (unique("good"), GOOD_A)
    )
    _DAEMONS.append(d)
    yield d
    _DAEMONS.remove(d)
    stop_clean(d)


# ---------------------------------------------------------------------------- dropped


def test_empty_and_short_packets_are_dropped(hostile):
    full = make_query(LOCAL, "A", qid=0x0102).to_wire()
    assert_dropped(hostile, [full[:n] for n in range(12)] + [b"\xff" * n for n in range(1, 12)])
    still_answers(hostile)


@pytest.mark.parametrize(
    "pkt",
    [
        hdr(flags=QR | RD) + Q,
        hdr(qd=0, flags=QR | RD),  # would be FORMERR as a query
        hdr(flags=QR | (OPCODE_NOTIFY << 11)) + Q,  # would be NOTIMP as a query
        hdr(flags=QR | RD, ar=1) + Q + opt_rr(version=1),  # would be BADVERS as a query
    ],
    ids=["qr-query", "qr-qdcount-0", "qr-notify", "qr-edns-v1"],
)
def test_responses_are_dropped(hostile, pkt):
    assert_dropped(hostile, [pkt])
    still_answers(hostile)


# ---------------------------------------------------------------------------- FORMERR

LABEL63 = b"a" * 63
FORMERR_CASES = {
    # counts
    "qdcount-0": hdr(qd=0),
    "qdcount-2": hdr(qd=2) + Q + encode_question(FORWARDED),
    "qdcount-2-one-present": hdr(qd=2) + Q,
    "ancount-1-missing": hdr(an=1) + Q,
    "nscount-2-missing": hdr(ns=2) + Q,
    "arcount-1-missing": hdr(ar=1) + Q,
    "arcount-65535": hdr(ar=0xFFFF) + Q + opt_rr(),
    # labels and names
    "label-64": hdr() + name_wire([b"a" * 64, b"example", b"com"]) + b"\x00\x01\x00\x01",
    "label-type-01": hdr() + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01",
    "label-type-10": hdr() + b"\x81a\x00\x00\x01\x00\x01",
    "name-256": hdr() + name_wire([LABEL63] * 3 + [b"b" * 62]) + b"\x00\x01\x00\x01",
    "name-320": hdr() + name_wire([LABEL63] * 5) + b"\x00\x01\x00\x01",
    # compression in the question
    "qname-ptr-self": hdr() + b"\xc0\x0c\x00\x01\x00\x01",
    "qname-ptr-loop": hdr() + b"\x01a\xc0\x0c\x00\x01\x00\x01",
    "qname-ptr-header": hdr() + b"\xc0\x02\x00\x01\x00\x01",
    "qname-ptr-forward": hdr(ar=1) + b"\xc0\x12\x00\x01\x00\x01" + rr(b"\x01a\x00", T_A, b"\x0a\x00\x00\x01"),
    # compression in an additional record
    "ar-owner-ptr-self": hdr(ar=1) + Q + rr(struct.pack("!H", 0xC000 | QEND), T_A, b"\x0a\x00\x00\x01"),
    "ar-owner-ptr-header": hdr(ar=1) + Q + rr(b"\xc0\x04", T_A, b"\x0a\x00\x00\x01"),
    "ar-owner-ptr-forward": hdr(ar=1) + Q + rr(struct.pack("!H", 0xC000 | (QEND + 12)), T_TXT, b"\x01a\x00"),
    "ar-owner-label-then-loop": hdr(ar=1)
    + Q
    + rr(b"\x01x" + struct.pack("!H", 0xC000 | QEND), T_A, b"\x0a\x00\x00\x01"),
    "ar-rdlength-beyond-end": hdr(ar=1) + Q + rr(b"\x00", T_A, b"\x0a\x00\x00\x01", rdlen=100),
    # OPT rules (RFC 6891 §6.1.1)
    "two-opt": hdr(ar=2) + Q + opt_rr() + opt_rr(),
    "opt-in-answer": hdr(an=1) + Q + opt_rr(),
    "opt-in-authority": hdr(ns=1) + Q + opt_rr(),
    "opt-owner-not-root": hdr(ar=1) + Q + opt_rr(owner=b"\x01a\x00"),
    "opt-owner-ptr-to-qname": hdr(ar=1) + Q + opt_rr(owner=b"\xc0\x0c"),
    "opt-option-len-beyond-rdata": hdr(ar=1) + Q + opt_rr(rdata=struct.pack("!HH", 10, 9) + b"\x01\x02"),
    "opt-partial-option-header": hdr(ar=1) + Q + opt_rr(rdata=b"\x00\x0a\x00"),
    "opt-second-option-overruns": hdr(ar=1) + Q + opt_rr(rdata=COOKIE + struct.pack("!HH", 8, 40) + b"\x00" * 4),
    "opt-rdlength-beyond-end": hdr(ar=1) + Q + opt_rr(rdata=COOKIE, rdlen=40),
    # trailing garbage
    "trailing-1-octet": hdr() + Q + b"\x00",
    "trailing-after-opt": hdr(ar=1) + Q + opt_rr() + b"junk",
    "question-cut-in-qtype": hdr() + Q[:-3],
}


@pytest.mark.parametrize("case", sorted(FORMERR_CASES))
def test_malformed_query_is_formerr(hostile, case):
    pkt = FORMERR_CASES[case]
    check_reply(pkt, ask(hostile, pkt), dns.rcode.FORMERR)
    still_answers(hostile)


@pytest.mark.parametrize("case", ["qdcount-0", "name-256", "two-opt", "trailing-1-octet", "ar-owner-ptr-header"])
def test_malformed_query_over_tcp_is_formerr(hostile, case):
    pkt = FORMERR_CASES[case]
    check_reply(pkt, ask(hostile, pkt, tcp=True), dns.rcode.FORMERR)
    still_answers(hostile, tcp=True)


# Legal limits and legal compression: answered normally, so the FORMERR cases above fail for
# the reason they were built for, not because the parser rejects everything unusual.
def long_name(total, suffix=b"\x07example\x03com\x00"):
    """A name under example.com. of exactly `total` octets in wire form."""
    left = total - len(suffix)
    labels = []
    while left > 0:
        n = min(63, left - 1)
        labels.append(b"c" * n)
        left -= n + 1
    return b"".join(bytes([len(x)]) + x for x in labels) + suffix


def test_name_of_255_octets_is_answered(hostile):
    qname = long_name(255)
    assert len(qname) == 255
    pkt = hdr() + qname + b"\x00\x01\x00\x01"
    msg = check_reply(pkt, ask(hostile, pkt), dns.rcode.NXDOMAIN)  # NSD: no such name
    assert msg.question[0].name.to_wire() == qname
    still_answers(hostile)


def test_label_of_63_octets_is_answered(hostile):
    pkt = hdr() + name_wire([LABEL63, b"example", b"com"]) + b"\x00\x01\x00\x01"
    check_reply(pkt, ask(hostile, pkt), dns.rcode.NXDOMAIN)


def test_legal_backward_pointer_in_additional_record_is_answered(hostile):
    pkt = hdr(ar=1) + Q + rr(b"\xc0\x0c", T_A, b"\x0a\x00\x00\x01")
    msg = check_reply(pkt, ask(hostile, pkt), dns.rcode.NOERROR)
    assert sorted(addresses(msg, LOCAL)) == LOCAL_ADDRS, describe(msg)


def test_opt_with_a_valid_option_is_answered(hostile):
    pkt = hdr(ar=1) + Q + opt_rr(rdata=COOKIE)
    msg = check_reply(pkt, ask(hostile, pkt), dns.rcode.NOERROR)
    assert sorted(addresses(msg, LOCAL)) == LOCAL_ADDRS, describe(msg)
    assert msg.edns == 0


# ---------------------------------------------------------------------------- BADVERS, NOTIMP, REFUSED


@pytest.mark.parametrize("version", [1, 255])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_edns_version_above_0_is_badvers(hostile, version, tcp):
    pkt = hdr(ar=1) + Q + opt_rr(version=version)
    msg = check_reply(pkt, ask(hostile, pkt, tcp=tcp), dns.rcode.BADVERS)
    assert msg.edns == 0, "BADVERS must come with our OPT of version 0:\n" + describe(msg)
    assert msg.answer == []
    still_answers(hostile, tcp=tcp)


@pytest.mark.parametrize(
    "opcode", [OPCODE_STATUS, OPCODE_NOTIFY, OPCODE_UPDATE, 15], ids=["status", "notify", "update", "15"]
)
def test_other_opcodes_are_notimp(hostile, opcode):
    pkt = hdr(flags=RD | (opcode << 11)) + Q
    wire = ask(hostile, pkt)
    check_reply(pkt, wire, dns.rcode.NOTIMP)
    assert (header(wire)[1] >> 11) & 0xF == opcode, "opcode not echoed"
    still_answers(hostile)


@pytest.mark.parametrize("rdclass", [C_CH, C_ANY], ids=["CH", "ANY"])
@pytest.mark.parametrize("name", [LOCAL, FORWARDED, "version.bind."])
def test_class_other_than_in_is_refused(hostile, rdclass, name):
    pkt = hdr() + encode_question(name, T_TXT if name.startswith("version") else T_A, rdclass)
    check_reply(pkt, ask(hostile, pkt), dns.rcode.REFUSED)
    still_answers(hostile)


@pytest.mark.parametrize("rdtype", [T_AXFR, T_IXFR], ids=["AXFR", "IXFR"])
@pytest.mark.parametrize("zone", ["corp.example.", "example.com."])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_zone_transfers_are_refused(hostile, rdtype, zone, tcp):
    pkt = hdr(flags=0) + encode_question(zone, rdtype)
    check_reply(pkt, ask(hostile, pkt, tcp=tcp), dns.rcode.REFUSED)
    still_answers(hostile, tcp=tcp)


# ---------------------------------------------------------------------------- mutation


def test_mutated_queries_then_still_answers(hostile):
    rng = random.Random(5150)
    seeds = [
        hdr(ar=1) + Q + opt_rr(rdata=COOKIE),
        hdr(ar=1) + encode_question(FORWARDED) + opt_rr(do=True),
        hdr(ar=1) + Q + rr(b"\xc0\x0c", T_A, b"\x0a\x00\x00\x01"),
        hdr() + encode_question("www.corp.example.", 28),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(3000):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(4)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif op == 1 and data:
                    del data[rng.randrange(len(data)) :]
                elif op == 2:
                    data += rng.randbytes(rng.randrange(1, 8))
                elif data:
                    data[rng.choice((4, 5, 6, 7, 8, 9, 10, 11)) % max(1, len(data))] = rng.randrange(256)
            if len(data) > 2:
                data[2] &= 0x7F  # a query, so that the parser looks further than the header
            try:
                s.sendto(bytes(data), ("127.0.0.1", hostile.port))
            except BlockingIOError:
                time.sleep(0.001)
            if i % 50 == 0:  # drain the replies, pace the sender
                time.sleep(0.002)
                while True:
                    try:
                        s.recv(65535)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
    still_answers(hostile)
    still_answers(hostile, tcp=True)


# ---------------------------------------------------------------------------- TCP


def test_tcp_length_zero_closes_without_answer(hostile):
    with tcp_connect("127.0.0.1", hostile.port) as s:
        s.sendall(b"\x00\x00")
        closed, data = closed_without_data(s, 2.0)
    assert data == b"", "answered a message of length 0: %r" % data
    assert closed, "connection still open 2 s after a message of length 0"
    still_answers(hostile, tcp=True)


@pytest.mark.parametrize(
    "partial",
    [b"\x00", b"\x00\x40" + Q[:5], b"\x00\x2d" + hdr(), b"\xff\xff" + hdr() + Q + b"\x00" * 100],
    ids=["half-length", "length-64-7-octets", "length-45-header-only", "length-65535-145-octets"],
)
def test_tcp_length_beyond_data_then_close(hostile, partial):
    with tcp_connect("127.0.0.1", hostile.port) as s:
        s.sendall(partial)
        s.shutdown(socket.SHUT_WR)
        closed, data = closed_without_data(s, 2.0)
    assert data == b"", "answered an incomplete message: %r" % data
    assert closed, "connection not closed 2 s after the client's EOF"
    still_answers(hostile, tcp=True)


def test_tcp_complete_query_then_partial_then_close(hostile):
    q = make_query(LOCAL, "A", qid=0x7001)
    with tcp_connect("127.0.0.1", hostile.port) as s:
        s.sendall(frame(q.to_wire()) + b"\x00\x40" + Q[:9])
        s.shutdown(socket.SHUT_WR)
        closed, data = closed_without_data(s, 2.0)
    assert closed, "connection not closed 2 s after the client's EOF"
    assert len(data) >= 2, "the complete query before the partial one was not answered"
    (n,) = struct.unpack("!H", data[:2])
    assert len(data) == 2 + n, "more than one answer, or a cut one: %r" % data
    msg = dns.message.from_wire(data[2:])
    assert msg.id == 0x7001 and sorted(addresses(msg, LOCAL)) == LOCAL_ADDRS, describe(msg)


def slow_send(sock, data, gap):
    """Sends data one octet every gap seconds; stops early when the peer closes.
    Returns (octets sent, closed by peer, data received meanwhile)."""
    got = b""
    for i, b in enumerate(data):
        try:
            sock.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            return i, True, got
        if i + 1 < len(data) and readable(sock, gap):
            try:
                chunk = sock.recv(65535)
            except ConnectionResetError:
                return i + 1, True, got
            if not chunk:
                return i + 1, True, got
            got += chunk
    return len(data), False, got


def test_tcp_slow_sender_is_answered_within_idle_timeout(nsd, tmp_path):
    # 1 octet every 0.3 s: the 21 octets of the framed query take 6 s, under the 8 s timeout
    d = start_configured(tmp_path, "%s:%d" % nsd, "workers: 1\ntcp_idle_timeout_ms: 8000\n", "vpcdns-slow", nsd_probe)
    _DAEMONS.append(d)
    try:
        q = make_query("t.", "SOA", qid=0x5105)
        data = frame(q.to_wire())
        t0 = time.monotonic()
        with tcp_connect("127.0.0.1", d.port) as s:
            sent, closed, got = slow_send(s, data, 0.3)
            assert not closed and got == b"", "closed after %d of %d octets (%.1f s)" % (
                sent,
                len(data),
                time.monotonic() - t0,
            )
            msg = dns.message.from_wire(tcp_read_message(s, time.monotonic() + TIMEOUT))
        assert msg.id == 0x5105 and msg.rcode() == dns.rcode.NOERROR, describe(msg)
        assert answer_rrset(msg, "t.", "SOA") is not None, describe(msg)
        still_answers(d, tcp=True)
    finally:
        _DAEMONS.remove(d)
        stop_clean(d)


def test_tcp_slow_sender_beyond_idle_timeout_is_closed(hostile):
    q = make_query("t.", "SOA", qid=0x5106)
    data = frame(q.to_wire())
    t0 = time.monotonic()
    with tcp_connect("127.0.0.1", hostile.port) as s:
        sent, closed, got = slow_send(s, data, 0.3)
        if not closed:
            closed, more = closed_without_data(s, 1.0)
            got += more
    elapsed = time.monotonic() - t0
    assert got == b"", "answered a query that took longer than the idle timeout: %r" % got
    assert closed, "a client trickling one octet every 0.3 s was not closed (idle %d ms)" % IDLE_MS
    assert elapsed < IDLE_MS / 1000 + 2.0, "closed only after %.1f s (idle %d ms)" % (elapsed, IDLE_MS)
    still_answers(hostile, tcp=True)


def send_for(sock, data, limit):
    """Non-blocking send of as much of data as goes within limit seconds: octets sent."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + limit
    p = select.poll()
    p.register(sock, select.POLLOUT)
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            p.poll(50)
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def test_tcp_client_that_never_reads_is_closed(hostile):
    hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        hog.settimeout(TIMEOUT)
        hog.connect(("127.0.0.1", hostile.port))
        hog_port = hog.getsockname()[1]
        assert wait_until(lambda: hog_port in held_connections(hostile.proc.p.pid, hostile.port), 1.0)
        # 4000 pipelined queries (about 190 KB of answers) and never a read
        blob = b"".join(frame(make_query(LOCAL, "A", qid=i).to_wire()) for i in range(4000))
        sent = send_for(hog, blob, 3.0)
        assert sent > 0
        # others are answered while the hog is (or was) connected
        still_answers(hostile)
        still_answers(hostile, tcp=True)
        pid = hostile.proc.p.pid
        gone = wait_until(lambda: hog_port not in held_connections(pid, hostile.port), IDLE_MS / 1000 + 4)
        assert gone, "a client that never reads still held open %.0f s after it stopped sending (%d octets sent)" % (
            IDLE_MS / 1000 + 4,
            sent,
        )
    finally:
        hog.close()
    still_answers(hostile, tcp=True)


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def test_tcp_2000_abandoned_connections_are_bounded(hostile):
    n = 2000
    raise_fd_limit(n + 512)
    sel = selectors.DefaultSelector()
    socks = []
    connected = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setblocking(False)
            s.bind(("127.0.0.%d" % (2 + i // 50), 0))  # 40 source addresses, 50 each
            rc = s.connect_ex(("127.0.0.1", hostile.port))
            if rc == 0:
                connected.append(s)
            elif rc in (errno.EINPROGRESS, errno.EAGAIN):
                sel.register(s, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 5
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                sel.unregister(key.fileobj)
                if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected.append(key.fileobj)
        assert len(connected) >= MAX_CONN * 2, "only %d of %d connections opened" % (len(connected), n)
        # a quarter of them leave a partial query behind
        for s in connected[::4]:
            try:
                s.send(b"\x00\x2d" + hdr()[:6])
            except OSError:
                pass
        time.sleep(0.2)
        held = held_connections(hostile.proc.p.pid, hostile.port)
        assert len(held) <= MAX_CONN, "the daemon holds %d connections, tcp_max_connections is %d" % (
            len(held),
            MAX_CONN,
        )
        # UDP is answered at once
        still_answers(hostile)
        # TCP again once the idle timeout has freed the slots
        q = make_query(LOCAL, "A", qid=0x2000)
        answered = None
        deadline = time.monotonic() + IDLE_MS / 1000 + 5
        while answered is None and time.monotonic() < deadline:
            try:
                answered = hostile.v4.send(q, tcp=True, timeout=0.5)
            except (OSError, EOFError, dns.exception.DNSException):
                time.sleep(0.1)
        assert answered is not None, "no TCP answer %.0f s after the flood" % (IDLE_MS / 1000 + 5)
        assert sorted(addresses(answered, LOCAL)) == LOCAL_ADDRS, describe(answered)
    finally:
        sel.close()
        for s in socks:
            s.close()
    assert wait_until(lambda: len(held_connections(hostile.proc.p.pid, hostile.port)) == 0, 3.0), (
        "connections still held after every client closed"
    )
    still_answers(hostile, tcp=True)


# ---------------------------------------------------------------------------- upstream


def forwarded_query(d, name, rdtype="A", edns=False, payload=1232, tcp=False, qid=0x6161, limit=4.0):
    """(message or None, seconds) for one query to d."""
    q = make_query(name, rdtype, edns=edns, payload=payload, qid=qid)
    t0 = time.monotonic()
    if tcp:
        wire = ask(d, q.to_wire(), tcp=True, timeout=limit)
    else:
        wire = d.v4.raw(q.to_wire(), timeout=limit)
    elapsed = time.monotonic() - t0
    if wire is None:
        return None, elapsed, q
    return dns.message.from_wire(wire), elapsed, q


@pytest.mark.parametrize(
    "behaviour", ["wrongid", "wrongname", "wrongtype", "otherport", "garbage", "silent", "ptrloop"]
)
def test_upstream_bad_answer_alone_is_servfail(behind_fake, fake, behaviour):
    name = unique(behaviour)
    msg, elapsed, q = forwarded_query(behind_fake, name)
    assert msg is not None, "no answer within 4 s (upstream: %s)" % behaviour
    assert q.is_response(msg), describe(msg)
    assert msg.rcode() == dns.rcode.SERVFAIL, "expected SERVFAIL, got:\n" + describe(msg)
    assert msg.answer == [], describe(msg)
    assert elapsed < 2.5, "SERVFAIL after %.2f s" % elapsed
    assert fake.queries(name, "udp"), "the query never reached the fake upstream"
    still_answers(behind_fake)


@pytest.mark.parametrize("behaviour", ["wrongid", "wrongname", "wrongtype", "otherport", "garbage"])
def test_upstream_bad_answer_then_good_answer_is_relayed(behind_fake, behaviour):
    name = unique(behaviour + "-good")
    msg, elapsed, q = forwarded_query(behind_fake, name)
    assert msg is not None, "no answer within 4 s (upstream: %s, then a good answer)" % behaviour
    assert q.is_response(msg), describe(msg)
    assert msg.rcode() == dns.rcode.NOERROR and addresses(msg, name) == [GOOD_A], (
        "the good answer that followed the bad one was not relayed:\n" + describe(msg)
    )
    assert elapsed < 1.0, "answered after %.2f s" % elapsed
    still_answers(behind_fake)


def test_upstream_answer_cut_mid_record(behind_fake):
    name = unique("truncated")
    msg, elapsed, q = forwarded_query(behind_fake, name)
    assert msg is not None, "no answer within 4 s"
    assert q.is_response(msg), describe(msg)
    # SERVFAIL, or the complete answer when the daemon retried over TCP: never a part of it
    if msg.rcode() == dns.rcode.SERVFAIL:
        assert msg.answer == [], describe(msg)
    else:
        assert msg.rcode() == dns.rcode.NOERROR and sorted(addresses(msg, name)) == TRUNCATED_A, describe(msg)
    assert elapsed < 2.5, "answered after %.2f s" % elapsed
    still_answers(behind_fake)


@pytest.mark.parametrize("tcp", [False, True], ids=["client-udp", "client-tcp"])
def test_upstream_tc_is_retried_over_tcp(behind_fake, fake, tcp):
    name = unique("tc")
    msg, elapsed, q = forwarded_query(behind_fake, name, tcp=tcp)
    assert msg is not None, "no answer within 4 s"
    assert msg.rcode() == dns.rcode.NOERROR and addresses(msg, name) == [GOOD_A], describe(msg)
    assert not msg.flags & dns.flags.TC, "TC passed on instead of retrying over TCP:\n" + describe(msg)
    assert fake.queries(name, "tcp"), "no TCP query reached the upstream after its TC answer"
    assert elapsed < 2.5
    still_answers(behind_fake)


@pytest.mark.parametrize("edns,limit", [(False, 512), (True, 1232)], ids=["no-edns-512", "edns-1232"])
def test_upstream_oversized_udp_answer_is_tc_to_a_small_client(behind_fake, edns, limit):
    name = unique("oversized")
    q = make_query(name, "TXT", edns=edns, payload=1232, qid=0x0515)
    wire = behind_fake.v4.raw(q.to_wire(), timeout=4.0)
    assert wire is not None, "no answer within 4 s"
    msg = dns.message.from_wire(wire)
    assert q.is_response(msg), describe(msg)
    assert len(wire) <= limit, "UDP answer of %d octets to a client accepting %d" % (len(wire), limit)
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.TC, (
        "expected NOERROR with TC (the upstream's answer of > 4096 octets does not fit), got:\n" + describe(msg)
    )
    still_answers(behind_fake)


def test_upstream_oversized_answer_is_complete_over_tcp(behind_fake):
    name = unique("oversized")
    msg, elapsed, q = forwarded_query(behind_fake, name, "TXT", tcp=True)
    assert msg is not None, "no answer within 4 s"
    assert not msg.flags & dns.flags.TC, describe(msg)
    txt = answer_rrset(msg, name, "TXT")
    assert msg.rcode() == dns.rcode.NOERROR and txt is not None and len(txt) == BIG_TXT_COUNT, (
        "expected the complete answer of %d TXT records over TCP, got:\n%s" % (BIG_TXT_COUNT, describe(msg))
    )
    still_answers(behind_fake, tcp=True)
