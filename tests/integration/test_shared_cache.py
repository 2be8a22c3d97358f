"""One cache and one set of upstream queries for the whole daemon, however many workers.

Each worker has its own SO_REUSEPORT socket, and the kernel picks the worker of a datagram by
its source port: queries sent from new sockets land on every worker. With several workers
these tests count what reached the scripted fake upstream: a repeated question, a repeated
NXDOMAIN and a burst of identical concurrent questions each cost one upstream query, and an
entry near its expiry is refreshed once. Then what the cache writes, against a small upstream
that answers with compressed messages: a cached answer is as small as the upstream's (one
that fit in 512 octets still fits), and a CNAME question under a DNAME gets the same records
the second time as the first."""

import itertools
import select
import socket
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import vdtest
from fakeupstream import GOOD_A, FakeUpstream
from vdtest import addresses, describe, make_query, vpcdns_argv

_names = itertools.count(1)


def unique(shape):
    """A name nobody asked before: the first label picks the fake upstream's answer."""
    return "%s.s%d.fake.test." % (shape, next(_names))


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as f:
        yield f


@pytest.fixture(scope="module", params=[2, 4], ids=["workers2", "workers4"])
def daemon(request, fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared-cache")
    cfg = tmp / "shared.yaml"
    cfg.write_text("workers: %d\nprefetch: false\n" % request.param)

    def argv(port):
        return vpcdns_argv(port, fake.address, extra=["--config", cfg])

    d = vdtest.start_vpcdns(tmp, fake.address, argv=argv, name="vpcdns-shared",
                            probe=unique("good"))
    yield d
    assert d.stop() == 0, d.proc.failure("SIGTERM: expected exit status 0")


def upstream_count(fake, name):
    return len(fake.queries(name))


def test_a_repeated_question_from_new_source_ports_costs_one_upstream_query(daemon, fake):
    name = unique("good")
    for i in range(20):
        r = daemon.v4.query(name, "A")  # a new socket, so a new source port, every time
        assert r.rcode() == dns.rcode.NOERROR, describe(r)
        assert addresses(r, name) == [GOOD_A], describe(r)
    assert upstream_count(fake, name) == 1


def test_a_repeated_nxdomain_costs_one_upstream_query(daemon, fake):
    name = unique("nxdomain")
    for i in range(10):
        r = daemon.v4.query(name, "A")
        assert r.rcode() == dns.rcode.NXDOMAIN, describe(r)
        assert r.authority, describe(r)
    assert upstream_count(fake, name) == 1


def test_concurrent_identical_questions_are_merged_into_one_upstream_query(daemon, fake):
    name = unique("slow150")  # 150 ms late (before any retry): every question arrives meanwhile
    socks = []
    try:
        for i in range(20):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        queries = {}
        for i, s in enumerate(socks):
            q = make_query(name, "A", qid=1000 + i)
            queries[s] = q
            s.sendto(q.to_wire(), ("127.0.0.1", daemon.port))
        answers = {}
        deadline = time.monotonic() + 3.0
        while len(answers) < len(socks) and time.monotonic() < deadline:
            ready, _, _ = select.select([s for s in socks if s not in answers], [], [], 0.2)
            for s in ready:
                answers[s] = dns.message.from_wire(s.recv(4096))
        assert len(answers) == len(socks), "only %d of %d answered" % (len(answers), len(socks))
        for s, r in answers.items():
            assert r.id == queries[s].id
            assert r.rcode() == dns.rcode.NOERROR, describe(r)
            assert addresses(r, name) == [GOOD_A], describe(r)
    finally:
        for s in socks:
            s.close()
    assert upstream_count(fake, name) == 1
    # and the answer is cached for every worker
    for i in range(10):
        r = daemon.v4.query(name, "A")
        assert addresses(r, name) == [GOOD_A], describe(r)
    assert upstream_count(fake, name) == 1


def test_prefetch_refreshes_an_entry_once_for_every_worker(fake, tmp_path):
    cfg = tmp_path / "prefetch.yaml"
    cfg.write_text("workers: 2\nprefetch: true\n")

    def argv(port):
        return vpcdns_argv(port, fake.address, extra=["--config", cfg])

    d = vdtest.start_vpcdns(tmp_path, fake.address, argv=argv, name="vpcdns-prefetch",
                            probe=unique("good"))
    try:
        name = unique("ttl10")
        start = time.monotonic()
        r = d.v4.query(name, "A")
        assert addresses(r, name) == [GOOD_A], describe(r)
        # the last tenth of its 10 s: every one of these is a hit that may start a refresh
        time.sleep(max(0.0, 9.3 - (time.monotonic() - start)))
        for i in range(10):
            r = d.v4.query(name, "A")
            assert addresses(r, name) == [GOOD_A], describe(r)
        deadline = time.monotonic() + 2.0
        while upstream_count(fake, name) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a second refresh, if any, would have been sent by now
        assert upstream_count(fake, name) == 2, "one query, then exactly one refresh"
    finally:
        assert d.stop() == 0, d.proc.failure("SIGTERM: expected exit status 0")


# ---------------------------------------------------------------------------- what the cache writes

MX_COUNT = 20  # compressed: 473 octets without EDNS; written out in full: over 1100


class ShapeUpstream:
    """A UDP upstream on 127.0.0.1 answering with dnspython (which compresses names):
    mx.big.test MX (MX_COUNT exchanges under one domain), x.a.dname.test CNAME through the
    DNAME a.dname.test, anything else A 192.0.2.1. Counts queries by lower-cased name."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.counts = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(2.0)
        self.sock.close()

    def count(self, name):
        with self.lock:
            return self.counts.get(name.lower(), 0)

    def _serve(self):
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
                q = dns.message.from_wire(wire)
            except (socket.timeout, dns.exception.DNSException):
                continue
            name = q.question[0].name.to_text().lower()
            with self.lock:
                self.counts[name] = self.counts.get(name, 0) + 1
            r = dns.message.make_response(q)
            r.flags |= dns.flags.RA
            qtype = q.question[0].rdtype
            if name == "mx.big.test." and qtype == dns.rdatatype.MX:
                mx = ["%d mx%02d.mail-servers.example.net." % (i, i) for i in range(MX_COUNT)]
                r.answer.append(dns.rrset.from_text("mx.big.test.", 300, "IN", "MX", *mx))
            elif name == "x.a.dname.test." and qtype == dns.rdatatype.CNAME:
                r.answer.append(dns.rrset.from_text("a.dname.test.", 300, "IN", "DNAME",
                                                    "b.other.test."))
                r.answer.append(dns.rrset.from_text("x.a.dname.test.", 300, "IN", "CNAME",
                                                    "x.b.other.test."))
            else:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A",
                                                    "192.0.2.1"))
            self.sock.sendto(r.to_wire(), peer)


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    up = ShapeUpstream()
    tmp = tmp_path_factory.mktemp("shaped")
    cfg = tmp / "shaped.yaml"
    cfg.write_text("workers: 2\nprefetch: false\n")

    def argv(port):
        return vpcdns_argv(port, up.address, extra=["--config", cfg])

    d = vdtest.start_vpcdns(tmp, up.address, argv=argv, name="vpcdns-shaped", probe="ready.test.")
    yield d, up
    status = d.stop()
    up.stop()
    assert status == 0, d.proc.failure("SIGTERM: expected exit status 0")


def test_a_cached_answer_that_fit_in_512_octets_still_fits(shaped):
    d, up = shaped
    q = make_query("mx.big.test.", "MX")  # no EDNS: 512 octets
    first_wire = vdtest.raw_udp("127.0.0.1", d.port, q.to_wire(), timeout=2.0)
    assert first_wire is not None
    first = dns.message.from_wire(first_wire)
    assert not first.flags & dns.flags.TC, describe(first)
    assert len(first.answer[0]) == MX_COUNT, describe(first)
    for i in range(5):
        q = make_query("mx.big.test.", "MX")
        wire = vdtest.raw_udp("127.0.0.1", d.port, q.to_wire(), timeout=2.0)
        assert wire is not None
        again = dns.message.from_wire(wire)
        assert not again.flags & dns.flags.TC, "truncated from the cache (%d octets)" % len(wire)
        assert len(wire) <= len(first_wire), (len(wire), len(first_wire))
        assert again.answer[0] == first.answer[0], describe(again)
    assert up.count("mx.big.test.") == 1


def test_a_cname_question_under_a_dname_is_answered_the_same_from_the_cache(shaped):
    d, up = shaped
    first = d.v4.query("x.a.dname.test.", "CNAME")
    types = [dns.rdatatype.to_text(r.rdtype) for r in first.answer]
    assert types == ["DNAME", "CNAME"], describe(first)
    for i in range(5):
        again = d.v4.query("x.a.dname.test.", "CNAME")
        assert again.answer == first.answer, describe(again)
    assert up.count("x.a.dname.test.") == 1
