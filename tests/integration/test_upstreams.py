"""The upstream side of forwarding through the real daemon, with scripted upstreams
the tests control (fakeupstream.py): identical questions in flight merged into one upstream
query, serve-stale (RFC 8767) with the upstream dead or slow, prefetch of popular names, a dead
upstream that stops costing time, the upstream packet budget, source-port rotation and DNS 0x20
(RFC 5452), and the start-up check for a forwarding loop.

Spoofed answers (wrong ID, wrong question, wrong source port) are covered by test_hostile.py.
Every daemon here runs one worker so that counts of upstream queries are exact."""

import concurrent.futures
import itertools
import re
import time

import dns.flags
import dns.message
import dns.rcode
import pytest

import vdtest
from fakeupstream import GOOD_A, FakeUpstream
from vdtest import Proc, addresses, describe, free_port, make_query, vpcdns_argv

_names = itertools.count(1)


def unique(shape):
    """A name nobody asked before: the first label picks the fake upstream's answer."""
    return "%s.u%d.fake.test." % (shape, next(_names))


def start(tmp, fakes, config, name="vpcdns-up", extra=(), workers=1):
    """vpcdns forwarding to every fake in fakes (in that order), with config added."""
    cfg = tmp / ("%s.yaml" % name)
    cfg.write_text("workers: %d\n" % workers + config)
    more = []
    for f in fakes[1:]:
        more += ["--upstream", f.address]

    def argv(port):
        return vpcdns_argv(port, fakes[0].address, extra=more + ["--config", cfg] + list(extra))

    return vdtest.start_vpcdns(tmp, fakes[0].address, argv=argv, name=name, probe=unique("good"))


def stop_and_counters(d):
    """Stops d (status 0 expected) and returns the counters of its server_stop log line."""
    status = d.stop()
    text = d.proc.stderr_text(100000)
    assert status == 0, d.proc.failure("SIGTERM: expected exit status 0, got %s" % status)
    line = [l for l in text.splitlines() if "event=server_stop" in l]
    assert line, text
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line[-1])}


def timed(client, name, rdtype="A", timeout=vdtest.TIMEOUT, **kw):
    t = time.monotonic()
    msg = client.send(make_query(name, rdtype, **kw), timeout=timeout)
    return msg, time.monotonic() - t


@pytest.fixture
def fake():
    with FakeUpstream() as f:
        yield f


# ---------------------------------------------------------------------------- merging


def test_identical_queries_in_flight_are_merged(fake, tmp_path):
    d = start(tmp_path, [fake], "")
    try:
        # the upstream answers 150 ms late: later than the clients need to ask, sooner than
        # the forwarder's first retransmission (200 ms at least)
        name = unique("slow150")
        # ten clients, each with its own ID and letter case
        asked = [name.upper() if i % 2 else name for i in range(10)]
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            replies = list(pool.map(lambda n: d.v4.query(n, "A"), asked))
        for sent, msg in zip(asked, replies):
            assert addresses(msg, sent) == [GOOD_A], describe(msg)
            assert msg.question[0].name.to_text() == sent, "own case: " + describe(msg)
        assert len(fake.queries(name)) == 1, "ten identical questions, one upstream query"
    finally:
        counters = stop_and_counters(d)
    assert counters["merged"] >= 9, counters


# ---------------------------------------------------------------------------- serve-stale


def test_stale_answer_when_the_upstream_is_dead(fake, tmp_path):
    d = start(tmp_path, [fake], "upstream_timeout_ms: 1000\n")
    try:
        name = unique("short")  # TTL 2
        assert addresses(d.v4.query(name, "A"), name) == [GOOD_A]
        time.sleep(2.4)
        fake.silent = True
        msg, took = timed(d.v4, name, timeout=4.0)
        assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
        assert addresses(msg, name) == [GOOD_A], describe(msg)
        assert msg.answer[0].ttl == 30, "stale answers carry TTL 30: " + describe(msg)
        assert took < 2.0, "answered after %.2f s" % took
        # a name never answered has nothing stale: SERVFAIL
        never = unique("good")
        assert d.v4.send(make_query(never, "A"), timeout=4.0).rcode() == dns.rcode.SERVFAIL
    finally:
        counters = stop_and_counters(d)
    assert counters["stale_answers"] >= 1, counters


def test_stale_max_bounds_staleness(fake, tmp_path):
    d = start(tmp_path, [fake], "upstream_timeout_ms: 500\nstale_max: 1\n")
    try:
        name = unique("short")
        assert addresses(d.v4.query(name, "A"), name) == [GOOD_A]
        fake.silent = True
        time.sleep(3.6)  # expired 1.6 s ago: beyond stale_max
        msg = d.v4.send(make_query(name, "A"), timeout=3.0)
        assert msg.rcode() == dns.rcode.SERVFAIL, describe(msg)
    finally:
        stop_and_counters(d)


def test_stale_answer_after_stale_answer_ms_when_the_upstream_is_slow(fake, tmp_path):
    d = start(tmp_path, [fake], "upstream_timeout_ms: 5000\n")
    try:
        name = unique("short")
        assert addresses(d.v4.query(name, "A"), name) == [GOOD_A]
        time.sleep(2.4)
        fake.delay = 3.0
        msg, took = timed(d.v4, name, timeout=5.0)
        assert addresses(msg, name) == [GOOD_A] and msg.answer[0].ttl == 30, describe(msg)
        assert 1.6 <= took <= 2.6, "stale answer after %.2f s, expected about 1.8 s" % took
        # the upstream query went on and refreshed the entry: the next answer is fresh and
        # comes from the cache (retransmissions to the slow upstream are counted before)
        time.sleep(1.6)
        fake.delay = 0.0
        sent = len(fake.queries(name))
        fresh = d.v4.query(name, "A")
        assert addresses(fresh, name) == [GOOD_A] and fresh.answer[0].ttl <= 2, describe(fresh)
        assert len(fake.queries(name)) == sent, "a fresh entry: nothing more upstream"
    finally:
        stop_and_counters(d)


# ---------------------------------------------------------------------------- prefetch


def test_a_hit_in_the_last_tenth_of_the_ttl_refreshes_the_entry(fake, tmp_path):
    d = start(tmp_path, [fake], "")
    try:
        name = unique("ttl5")
        assert addresses(d.v4.query(name, "A"), name) == [GOOD_A]
        time.sleep(2.0)
        d.v4.query(name, "A")  # 60 % of the TTL: a plain hit
        time.sleep(0.3)
        assert len(fake.queries(name)) == 1
        time.sleep(2.45)  # 4.75 s: in the last 10 %
        msg = d.v4.query(name, "A")
        assert addresses(msg, name) == [GOOD_A], describe(msg)
        assert msg.answer[0].ttl <= 1, "served from the cache: " + describe(msg)
        deadline = time.monotonic() + 1.0
        while len(fake.queries(name)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(fake.queries(name)) == 2, "one background refresh"
        time.sleep(0.6)  # the first answer has expired now; the refreshed one has not
        again = d.v4.query(name, "A")
        assert addresses(again, name) == [GOOD_A] and again.answer[0].ttl >= 3, describe(again)
        assert len(fake.queries(name)) == 2, "no miss for a popular name"
    finally:
        counters = stop_and_counters(d)
    assert counters["prefetches"] == 1, counters


def test_prefetch_false_turns_it_off(fake, tmp_path):
    d = start(tmp_path, [fake], "prefetch: false\n")
    try:
        name = unique("ttl2")
        d.v4.query(name, "A")
        time.sleep(1.85)
        d.v4.query(name, "A")
        time.sleep(0.3)
        assert len(fake.queries(name)) == 1
    finally:
        stop_and_counters(d)


# ---------------------------------------------------------------------------- failover


def test_a_silent_upstream_stops_costing_time(tmp_path):
    with FakeUpstream() as dead, FakeUpstream() as alive:
        dead.silent = True
        d = start(tmp_path, [dead, alive], "upstream_timeout_ms: 2000\n")
        try:
            for _ in range(5):  # the forwarder learns that the first server is dead
                d.v4.send(make_query(unique("good"), "A"), timeout=3.0)
            slow = []
            # spread over 2.5 s: longer than the first back-off, so background probes of the
            # dead server happen meanwhile and must not delay anyone
            for _ in range(15):
                name = unique("good")
                msg, took = timed(d.v4, name)
                assert addresses(msg, name) == [GOOD_A], describe(msg)
                if took >= 0.2:
                    slow.append(round(took, 3))
                time.sleep(0.15)
            assert not slow, "answers waited for the dead server: %s" % slow
            assert dead.queries(), "the dead server was never tried: the test proves nothing"
        finally:
            stop_and_counters(d)


# ---------------------------------------------------------------------------- budget


def test_over_the_upstream_budget_is_servfail_at_once_and_counted(fake, tmp_path):
    d = start(tmp_path, [fake], "upstream_max_qps: 5\n")
    try:
        time.sleep(1.0)  # the start-up probe's token is back
        rcodes = []
        t = time.monotonic()
        for _ in range(30):
            msg = d.v4.query(unique("good"), "A")
            rcodes.append(msg.rcode())
        took = time.monotonic() - t
        refused = rcodes.count(dns.rcode.SERVFAIL)
        assert refused >= 20, rcodes
        assert rcodes.count(dns.rcode.NOERROR) >= 1, rcodes
        assert took < 2.0, "refusals must not wait (%.2f s)" % took
        assert len([q for q in fake.queries() if ".u" in q[1]]) <= 10
    finally:
        counters = stop_and_counters(d)
    assert counters["budget_refused"] >= 20, counters


def test_the_upstream_budget_holds_across_workers(fake, tmp_path):
    """upstream_max_qps is one budget per upstream server for the whole process: a burst
    from many source ports, which SO_REUSEPORT spreads over both workers, sends no more
    upstream than the budget allows (each worker with a share of its own would send more)."""
    d = start(tmp_path, [fake], "upstream_max_qps: 1\n", workers=2)  # a burst of one
    try:
        time.sleep(1.2)  # the start-up probe's token is back
        names = [unique("good") for _ in range(40)]
        t = time.monotonic()
        rcodes = [d.v4.query(name, "A").rcode() for name in names]  # a new port each
        took = time.monotonic() - t
        sent = len([n for n in names if fake.queries(n)])
        assert rcodes.count(dns.rcode.NOERROR) == sent, rcodes
        assert rcodes.count(dns.rcode.SERVFAIL) == len(names) - sent, rcodes
        assert 1 <= sent <= 1 + int(took), "%d upstream queries in %.2f s at 1/s" % (sent, took)
    finally:
        counters = stop_and_counters(d)
    assert counters["budget_refused"] >= len(names) - sent, counters


# ---------------------------------------------------------------------------- rcodes and size


def test_an_upstream_refused_is_never_relayed(tmp_path):
    """REFUSED from an upstream is not an answer (RFC 1034 §4.3.1): the next server is asked;
    when every server refuses, the client gets stale data or SERVFAIL, at once."""
    with FakeUpstream() as refusing, FakeUpstream() as good:
        refusing.rcode = dns.rcode.REFUSED
        d = start(tmp_path, [refusing, good], "upstream_timeout_ms: 2000\n")
        try:
            names = [unique("good") for _ in range(20)]
            for name in names:
                msg, took = timed(d.v4, name)
                assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
                assert addresses(msg, name) == [GOOD_A], describe(msg)
                assert took < 0.5, "%.2f s" % took
            asked = [n for n in names if refusing.queries(n)]
            assert asked, "the refusing server was never asked: the test proves nothing"
            stale = unique("short")  # TTL 2
            assert addresses(d.v4.query(stale, "A"), stale) == [GOOD_A]
            time.sleep(2.4)
            good.rcode = dns.rcode.REFUSED  # now every server refuses
            name = unique("good")
            msg, took = timed(d.v4, name)
            assert msg.rcode() == dns.rcode.SERVFAIL, describe(msg)
            assert took < 1.0, "%.2f s" % took
            assert refusing.queries(name) and good.queries(name), "both servers were asked"
            msg, took = timed(d.v4, stale)
            assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
            assert addresses(msg, stale) == [GOOD_A], "stale data, not REFUSED:\n" + describe(msg)
        finally:
            stop_and_counters(d)


def test_a_large_authority_section_is_left_out_instead_of_setting_tc(fake, tmp_path):
    """RFC 2181 §9: TC only when the answer section does not fit; the additional and then the
    authority section are left out first."""
    d = start(tmp_path, [fake], "")
    try:
        name = unique("bigauth")
        q = make_query(name, "A", qid=0x2181)  # no EDNS: 512 octets
        wire = d.v4.raw(q.to_wire())
        assert wire is not None, "no answer"
        assert len(wire) <= 512, len(wire)
        msg = dns.message.from_wire(wire)
        assert q.is_response(msg), describe(msg)
        assert not msg.flags & dns.flags.TC, "TC although the answer fits:\n" + describe(msg)
        assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
        assert addresses(msg, name) == [GOOD_A], describe(msg)
        assert fake.queries(name, "udp"), "the answer did not come from the upstream"
        # over TCP (another name: a miss too) every section arrives
        other = unique("bigauth")
        full = d.v4.query(other, "A", tcp=True)
        assert addresses(full, other) == [GOOD_A], describe(full)
        assert sum(len(r) for r in full.authority) == 20, describe(full)
        assert sum(len(r) for r in full.additional) == 20, describe(full)
    finally:
        stop_and_counters(d)


# ---------------------------------------------------------------------------- spoofing


def test_upstream_queries_use_at_least_16_source_ports(fake, tmp_path):
    d = start(tmp_path, [fake], "")
    try:
        names = [unique("good") for _ in range(200)]
        for name in names:
            assert d.v4.query(name, "A").rcode() == dns.rcode.NOERROR
        ports = {p for (_, n, _, p, _) in fake.details() if n.lower() in names}
        assert len(ports) >= 16, "source ports seen: %s" % sorted(ports)
    finally:
        stop_and_counters(d)


def test_0x20_sends_mixed_case_and_answers_stay_correct(fake, tmp_path):
    d = start(tmp_path, [fake], "upstream_0x20: true\n")
    try:
        names = [unique("good").replace("fake.test", "abcdefghij.fake.test") for _ in range(10)]
        for name in names:
            msg = d.v4.query(name, "A")
            assert addresses(msg, name) == [GOOD_A], describe(msg)
            assert msg.question[0].name.to_text() == name, "the client's case: " + describe(msg)
        sent = [n for (_, n, _, _, _) in fake.details() if n.lower() in names]
        assert len(sent) == 10, sent
        mixed = [n for n in sent if n != n.lower() and n != n.upper()]
        assert len(mixed) >= 8, "names as the upstream saw them: %s" % sent
    finally:
        counters = stop_and_counters(d)
    assert counters["mismatches"] == 0, counters


# ---------------------------------------------------------------------------- loop protection


def test_two_daemons_forwarding_to_each_other_refuse_to_run(tmp_path):
    a, b = free_port(), free_port()
    while b == a:
        b = free_port()
    procs = []
    for me, peer in ((a, b), (b, a)):
        argv = [vdtest.VPCDNS, "--listen", "127.0.0.1:%d" % me, "--upstream", "127.0.0.1:%d" % peer,
                "--workers", "1"]
        procs.append(Proc("vpcdns-loop-%d" % me, argv, tmp_path))
    try:
        t = time.monotonic()
        while time.monotonic() - t < 6.0 and all(p.alive() for p in procs):
            time.sleep(0.05)
        first = time.monotonic() - t
        # the second one may find the loop too; give it the same bounded time
        while time.monotonic() - t < 6.0 and any(p.alive() for p in procs):
            time.sleep(0.05)
        exited = [p for p in procs if not p.alive()]
        assert exited, "neither daemon noticed the loop within 6 s"
        assert first <= 5.0, "the loop was found after %.1f s" % first
        for p, (me, peer) in zip(procs, ((a, b), (b, a))):
            if p.alive():
                continue
            assert p.p.returncode == 1, p.failure("expected exit status 1")
            assert ("forwarding loop: upstream 127.0.0.1:%d sent our probe back to us" % peer) in p.stderr_text(), (
                p.failure("no loop message")
            )
    finally:
        for p in procs:
            p.stop()


def test_a_real_upstream_passes_the_loop_check(nsd, tmp_path):
    up = "%s:%d" % nsd

    def argv(port):
        return vpcdns_argv(port, up, extra=["--log-level", "debug"])

    d = vdtest.start_vpcdns(tmp_path, up, argv=argv, name="vpcdns-noloop")
    try:
        deadline = time.monotonic() + 4.0
        while "result=no_loop" not in d.proc.stderr_text(100000) and time.monotonic() < deadline:
            time.sleep(0.05)
        text = d.proc.stderr_text(100000)
        assert "event=loop_check result=no_loop" in text, d.proc.failure("the check did not finish")
        assert "forwarding loop" not in text
        assert d.proc.alive()
        msg = d.v4.query("www.example.com.", "A")
        assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    finally:
        assert d.stop() == 0
