"""One cache and one set of upstream queries for the whole daemon, however many workers.

Each worker has its own SO_REUSEPORT socket, and the kernel picks the worker of a datagram by
its source port: queries sent from new sockets land on every worker. With several workers
these tests count what reached the scripted fake upstream: a repeated question, a repeated
NXDOMAIN and a burst of identical concurrent questions each cost one upstream query."""

import itertools
import select
import socket
import time

import dns.message
import dns.rcode
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
