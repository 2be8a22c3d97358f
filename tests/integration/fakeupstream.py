"""fakeupstream — a scripted, misbehaving DNS upstream for the hostile-input suite.

A UDP and TCP server on one loopback port (threads; dnspython builds the messages). What it
does with a query depends on the first label of the query name:

  good        a correct answer: A 192.0.2.53 (TXT for TXT queries)
  truncated   UDP: the correct answer cut in the middle of its last record, counts unchanged
  oversized   UDP: an answer of more than 4096 octets without TC, whatever the query's EDNS
              payload; TCP: the same answer, complete
  wrongname   UDP: an answer whose question is another name
  wrongtype   UDP: an answer whose question has another type
  wrongid     UDP: the correct answer under another ID
  otherport   UDP: the correct answer sent from another socket (another source port)
  garbage     UDP: the query's ID followed by random octets
  ptrloop     UDP: an answer record whose owner is a compression pointer to itself
  tc          UDP: an empty answer with TC set; TCP: the correct answer
  silent      nothing, over UDP and TCP

Answer shapes for the cache tests (over UDP and TCP):

  nxdomain    NXDOMAIN with an SOA (TTL 300, MINIMUM 30) in the authority section
  nodata      NOERROR, no answer, the same SOA
  nosoa       NXDOMAIN without an SOA
  servfail    SERVFAIL
  chain       A queries: name CNAME t1.<name>, t1 CNAME t2.<name>, t2 A 192.0.2.77, plus an
              unrelated A record in the answer section and glue in the additional section
  short       A 192.0.2.53 with TTL 2
  ttlN        A 192.0.2.53 with TTL N seconds (ttl4, ttl30)
  slowN       the correct answer, N milliseconds late (slow300), over UDP
  bigauth     A 192.0.2.53 with 20 NS records of long names in the authority section and 20
              glue records in the additional section: about 1.5 KB, the answer alone 16 octets

Run-time switches for the forwarding tests, settable while the server runs:
.silent (answer nothing at all, like a dead server), .delay (seconds every UDP answer waits),
.rcode (answer every query, UDP and TCP, with this rcode and no records; None: off), and the
address of the good answers (good_a, per instance: tells upstreams apart).

Over TCP every behaviour but "silent" gets the correct answer. A first label ending in
"-good" (e.g. "wrongid-good") sends the bad UDP answer, then the correct one 20 ms later.

Every query received is recorded (transport, lower-cased name, type) for the tests to check;
.details() also has the name exactly as sent (letter case: DNS 0x20), the client's source
port and the time it arrived. Everything is bound to loopback and every wait is bounded."""

import random
import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

GOOD_A = "192.0.2.53"
BIG_TXT_COUNT = 30  # 30 TXT records of 200 octets: about 6.7 KB
BIG_TXT_LEN = 200
TRUNCATED_A = ["192.0.2.61", "192.0.2.62", "192.0.2.63", "192.0.2.64"]
POLL = 0.1  # seconds between checks of the stop flag


def behaviour_of(qname):
    """(behaviour, then_good) from a query name."""
    labels = qname.labels
    first = labels[0].decode("ascii", "replace").lower() if labels and labels[0] else ""
    if first.endswith("-good"):
        return first[: -len("-good")], True
    return first, False


FAKE_SOA = "ns.fake.test. hostmaster.fake.test. 1 7200 900 1209600 30"
CHAIN_A = "192.0.2.77"


def _number_after(label, prefix):
    """N of "ttlN" / "slowN", or None."""
    if label.startswith(prefix) and label[len(prefix) :].isdigit():
        return int(label[len(prefix) :])
    return None


def good_answer(q, good_a=GOOD_A):
    r = dns.message.make_response(q)
    qname = q.question[0].name
    qtype = q.question[0].rdtype
    shape = behaviour_of(qname)[0]
    if shape in ("nxdomain", "nodata", "nosoa"):
        if shape != "nodata":
            r.set_rcode(dns.rcode.NXDOMAIN)
        if shape != "nosoa":
            r.authority.append(dns.rrset.from_text("fake.test.", 300, "IN", "SOA", FAKE_SOA))
        return r
    if shape == "servfail":
        r.set_rcode(dns.rcode.SERVFAIL)
        return r
    if shape == "bigauth" and qtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(qname, 60, "IN", "A", good_a))
        servers = ["ns%02d-%s.fake.test." % (i, "x" * 40) for i in range(20)]
        r.authority.append(dns.rrset.from_text_list("fake.test.", 300, "IN", "NS", servers))
        for i, ns in enumerate(servers):
            r.additional.append(dns.rrset.from_text(ns, 300, "IN", "A", "198.51.100.%d" % (i + 1)))
        return r
    if shape == "chain" and qtype == dns.rdatatype.A:
        t1 = dns.name.from_text("t1", qname)
        t2 = dns.name.from_text("t2", qname)
        r.answer.append(dns.rrset.from_text(qname, 300, "IN", "CNAME", t1.to_text()))
        r.answer.append(dns.rrset.from_text(t1, 300, "IN", "CNAME", t2.to_text()))
        r.answer.append(dns.rrset.from_text(t2, 300, "IN", "A", CHAIN_A))
        r.answer.append(dns.rrset.from_text("other.fake.test.", 300, "IN", "A", "198.51.100.1"))
        r.additional.append(dns.rrset.from_text("ns.fake.test.", 300, "IN", "A", "198.51.100.2"))
        return r
    if shape == "short" and qtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(qname, 2, "IN", "A", good_a))
        return r
    ttl = _number_after(shape, "ttl")
    if ttl is not None and qtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(qname, ttl, "IN", "A", good_a))
        return r
    if qtype == dns.rdatatype.TXT:
        if behaviour_of(qname)[0] == "oversized":
            texts = ['"%02d%s"' % (i, "x" * (BIG_TXT_LEN - 2)) for i in range(BIG_TXT_COUNT)]
        else:
            texts = ['"fake upstream"']
        r.answer.append(dns.rrset.from_text_list(qname, 60, "IN", "TXT", texts))
    elif qtype == dns.rdatatype.A:
        addrs = TRUNCATED_A if behaviour_of(qname)[0] == "truncated" else [good_a]
        r.answer.append(dns.rrset.from_text_list(qname, 60, "IN", "A", addrs))
    return r


def to_wire(msg):
    # never limited by the payload the query advertised: the tests decide what is too big
    return msg.to_wire(max_size=65535)


def bad_udp_answer(q, behaviour, rng):
    """[(wire, from_other_socket)] for a misbehaving UDP answer, [] to stay silent, None when
    the behaviour is unknown (then the correct answer is sent)."""
    qname = q.question[0].name
    qtype = q.question[0].rdtype
    if behaviour == "silent":
        return []
    if behaviour == "truncated":
        r = good_answer(q)
        r.use_edns(False)  # so that the last octets belong to the last A record
        wire = to_wire(r)
        return [(wire[:-3], False)]
    if behaviour == "oversized":
        return [(to_wire(good_answer(q)), False)]
    if behaviour in ("wrongname", "wrongtype"):
        other_name = dns.name.from_text("other.fake.test.") if behaviour == "wrongname" else qname
        other_type = qtype if behaviour == "wrongname" else (
            dns.rdatatype.AAAA if qtype != dns.rdatatype.AAAA else dns.rdatatype.A
        )
        q2 = dns.message.make_query(other_name, other_type)
        q2.id = q.id
        q2.flags = q.flags
        r = dns.message.make_response(q2)
        if other_type == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(other_name, 60, "IN", "A", "198.51.100.66"))
        else:
            r.answer.append(dns.rrset.from_text(other_name, 60, "IN", "AAAA", "2001:db8::66"))
        return [(to_wire(r), False)]
    if behaviour == "wrongid":
        r = good_answer(q)
        r.id = q.id ^ 0x5A5A
        return [(to_wire(r), False)]
    if behaviour == "otherport":
        return [(to_wire(good_answer(q)), True)]
    if behaviour == "garbage":
        return [(struct.pack("!H", q.id) + rng.randbytes(rng.randrange(10, 200)), False)]
    if behaviour == "ptrloop":
        # header + question as asked, one answer record whose owner points at itself
        qwire = q.question[0].name.to_wire() + struct.pack("!HH", qtype, q.question[0].rdclass)
        owner_off = 12 + len(qwire)
        rr = struct.pack("!HHHIH", 0xC000 | owner_off, 1, 1, 60, 4) + bytes([192, 0, 2, 99])
        hdr = struct.pack("!HHHHHH", q.id, 0x8180, 1, 1, 0, 0)
        return [(hdr + qwire + rr, False)]
    if behaviour == "tc":
        r = dns.message.make_response(q)
        r.flags |= dns.flags.TC
        return [(to_wire(r), False)]
    return None


class FakeUpstream:
    """The scripted upstream: .host, .port, .queries(); use as a context manager."""

    def __init__(self, host="127.0.0.1", port=None, seed=20261205, good_a=GOOD_A):
        from vdtest import free_port  # late: keeps this module usable on its own

        self.good_a = good_a
        self.silent = False  # run-time switch: drop every query (UDP and TCP)
        self.delay = 0.0  # run-time switch: seconds every UDP answer waits
        self.rcode = None  # run-time switch: answer everything with this rcode, no records
        self.log = []  # (transport, name as sent, type, source port, monotonic time)
        self.host = host
        self.port = port or free_port((host,))
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.seen = []
        self.stopping = threading.Event()
        self.threads = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, self.port))
        self.udp.settimeout(POLL)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind((host, 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(16)
        self.tcp.settimeout(POLL)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        for target in (self._udp_loop, self._tcp_accept_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)

    def close(self):
        self.stopping.set()
        for t in list(self.threads):
            t.join(2.0)
        for s in (self.udp, self.other, self.tcp):
            s.close()

    def queries(self, name=None, transport=None):
        """[(transport, name, type)] received so far, filtered by name and transport."""
        want = name.lower().rstrip(".") + "." if name else None
        with self.lock:
            return [
                s for s in self.seen if (want is None or s[1] == want) and (transport is None or s[0] == transport)
            ]

    def details(self, name=None):
        """[(transport, name as sent, type, source port, time)] received so far, by name."""
        want = name.lower().rstrip(".") + "." if name else None
        with self.lock:
            return [d for d in self.log if want is None or d[1].lower() == want]

    def reset(self):
        """Forgets what was received and turns the run-time switches off."""
        with self.lock:
            self.seen.clear()
            self.log.clear()
        self.silent = False
        self.delay = 0.0
        self.rcode = None

    def _answer(self, q):
        """The correct answer for q, or the .rcode answer when that switch is on."""
        if self.rcode is not None:
            r = dns.message.make_response(q)
            r.set_rcode(self.rcode)
            return r
        return good_answer(q, self.good_a)

    def _record(self, transport, q, port=0):
        name = q.question[0].name.to_text()
        with self.lock:
            self.seen.append((transport, name.lower(), q.question[0].rdtype))
            self.log.append((transport, name, q.question[0].rdtype, port, time.monotonic()))

    @staticmethod
    def _parse(wire):
        try:
            q = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 — anything unparsable is ignored
            return None
        return q if len(q.question) == 1 and not q.flags & dns.flags.QR else None

    # ---------------------------------------------------------------- UDP

    def _udp_loop(self):
        while not self.stopping.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            q = self._parse(wire)
            if q is None:
                continue
            self._record("udp", q, peer[1])
            if self.silent:
                continue
            behaviour, then_good = behaviour_of(q.question[0].name)
            with self.lock:
                plan = bad_udp_answer(q, behaviour, self.rng)
            if plan is None or self.rcode is not None:
                plan = [(to_wire(self._answer(q)), False)]
            elif then_good:
                plan = plan + [(to_wire(good_answer(q, self.good_a)), False)]
            late = self.delay + (_number_after(behaviour, "slow") or 0) / 1000.0
            if late > 0:  # answer from a timer: the loop keeps receiving meanwhile
                t = threading.Timer(min(late, 30.0), self._send_plan, args=(plan, peer))
                t.daemon = True
                t.start()
                continue
            self._send_plan(plan, peer)

    def _send_plan(self, plan, peer):
        if self.stopping.is_set():
            return
        for i, (data, other) in enumerate(plan):
            if i:
                time.sleep(0.02)
            try:
                (self.other if other else self.udp).sendto(data, peer)
            except OSError:
                pass

    # ---------------------------------------------------------------- TCP

    def _tcp_accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _tcp_conn(self, conn):
        conn.settimeout(POLL)
        buf = b""
        try:
            while not self.stopping.is_set():
                try:
                    chunk = conn.recv(65535)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2:
                    (n,) = struct.unpack("!H", buf[:2])
                    if len(buf) < 2 + n:
                        break
                    wire, buf = buf[2 : 2 + n], buf[2 + n :]
                    q = self._parse(wire)
                    if q is None:
                        continue
                    self._record("tcp", q)
                    if self.silent or behaviour_of(q.question[0].name)[0] == "silent":
                        continue
                    out = to_wire(self._answer(q))
                    conn.settimeout(2.0)
                    conn.sendall(struct.pack("!H", len(out)) + out)
                    conn.settimeout(POLL)
        except OSError:
            pass
        finally:
            conn.close()
