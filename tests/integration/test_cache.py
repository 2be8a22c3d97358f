"""The answer cache through the real daemon, with the scripted fake upstream so the
tests can count what reached the upstream: hits, TTL countdown, expiry, negative caching
(RFC 2308), SERVFAIL kept briefly (RFC 9520), only the question's chain cached, the DO bit
in the key, case-insensitive keys with the client's case echoed, and cache_size 0."""

import itertools
import time

import dns.flags
import dns.rcode
import pytest

import vdtest
from fakeupstream import CHAIN_A, GOOD_A, FakeUpstream
from vdtest import addresses, describe, soa_of, vpcdns_argv

_names = itertools.count(1)


def unique(shape):
    """A name nobody asked before: the first label picks the fake upstream's answer."""
    return "%s.c%d.fake.test." % (shape, next(_names))


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as f:
        yield f


def start(tmp, fake, config):
    cfg = tmp / "cache.yaml"
    cfg.write_text("workers: 1\n" + config)

    def argv(port):
        return vpcdns_argv(port, fake.address, extra=["--config", cfg])

    return vdtest.start_vpcdns(tmp, fake.address, argv=argv, name="vpcdns-cache",
                               probe=unique("good"))


@pytest.fixture(scope="module")
def cached(fake, tmp_path_factory):
    d = start(tmp_path_factory.mktemp("cache"), fake, "cache_servfail_ttl: 1\n")
    yield d
    assert d.stop() == 0, d.proc.failure("SIGTERM: expected exit status 0")


def upstream_count(fake, name):
    return len(fake.queries(name))


def ttl_of(msg):
    return msg.answer[0].ttl


def test_second_query_is_answered_from_the_cache(cached, fake):
    name = unique("good")
    first = cached.v4.query(name, "A")
    second = cached.v4.query(name, "A")
    assert addresses(first, name) == [GOOD_A], describe(first)
    assert addresses(second, name) == [GOOD_A], describe(second)
    assert upstream_count(fake, name) == 1
    assert second.rcode() == dns.rcode.NOERROR
    assert second.flags & dns.flags.RA and not second.flags & dns.flags.AA


def test_ttl_counts_down_in_served_answers(cached, fake):
    name = unique("good")
    assert ttl_of(cached.v4.query(name, "A")) == 60
    time.sleep(1.2)
    later = cached.v4.query(name, "A")
    assert 55 <= ttl_of(later) <= 59, describe(later)
    assert upstream_count(fake, name) == 1


def test_an_expired_entry_goes_back_upstream(cached, fake):
    name = unique("short")  # TTL 2
    cached.v4.query(name, "A")
    cached.v4.query(name, "A")
    assert upstream_count(fake, name) == 1
    time.sleep(2.3)
    msg = cached.v4.query(name, "A")
    assert addresses(msg, name) == [GOOD_A], describe(msg)
    assert ttl_of(msg) == 2, "a live upstream gives a fresh answer, never a stale one: " + describe(msg)
    assert upstream_count(fake, name) == 2


@pytest.mark.parametrize("shape,rcode", [("nxdomain", dns.rcode.NXDOMAIN), ("nodata", dns.rcode.NOERROR)])
def test_negative_answers_are_cached_for_the_soa_minimum(cached, fake, shape, rcode):
    name = unique(shape)
    first = cached.v4.query(name, "A")
    second = cached.v4.query(name, "A")
    for msg in (first, second):
        assert msg.rcode() == rcode, describe(msg)
        assert not msg.answer, describe(msg)
    soa = soa_of(second)
    assert soa is not None, describe(second)
    assert soa.ttl <= 30, "negative TTL is min(SOA TTL 300, MINIMUM 30): %s" % describe(second)
    assert upstream_count(fake, name) == 1


def test_a_negative_answer_without_soa_is_not_cached(cached, fake):
    name = unique("nosoa")
    for _ in range(2):
        assert cached.v4.query(name, "A").rcode() == dns.rcode.NXDOMAIN
    assert upstream_count(fake, name) == 2


def test_servfail_is_kept_only_briefly(cached, fake):
    name = unique("servfail")
    for _ in range(2):
        assert cached.v4.query(name, "A").rcode() == dns.rcode.SERVFAIL
    assert upstream_count(fake, name) == 1
    time.sleep(1.3)  # cache_servfail_ttl: 1
    assert cached.v4.query(name, "A").rcode() == dns.rcode.SERVFAIL
    assert upstream_count(fake, name) == 2


def test_only_the_question_chain_is_cached(cached, fake):
    name = unique("chain")
    first = cached.v4.query(name, "A")
    assert any(r.name.to_text() == "other.fake.test." for r in first.answer), describe(first)
    second = cached.v4.query(name, "A")
    assert upstream_count(fake, name) == 1
    owners = [r.name.to_text().lower() for r in second.answer]
    assert owners == [name, "t1." + name, "t2." + name], describe(second)
    assert addresses(second, "t2." + name) == [CHAIN_A]
    assert not second.additional, "extra records of the upstream are not cached: " + describe(second)
    # the unrelated record was not cached as an answer for its own name either
    other = cached.v4.query("other.fake.test.", "A")
    assert upstream_count(fake, "other.fake.test.") == 1, describe(other)


def test_the_do_bit_keeps_entries_apart(cached, fake):
    name = unique("good")
    cached.v4.query(name, "A")
    cached.v4.query(name, "A", edns=True, dnssec=True)
    assert upstream_count(fake, name) == 2
    cached.v4.query(name, "A", edns=True, dnssec=True)
    assert upstream_count(fake, name) == 2


def test_keys_ignore_case_and_answers_echo_the_clients_case(cached, fake):
    name = unique("good")
    cached.v4.query(name, "A")
    shouted = name.upper()
    msg = cached.v4.query(shouted, "A")
    assert upstream_count(fake, name) == 1
    assert msg.question[0].name.to_text() == shouted, describe(msg)
    assert msg.answer and msg.answer[0].ttl <= 60


def test_cached_answers_follow_the_clients_edns_and_transport(cached, fake):
    name = unique("good")
    cached.v4.query(name, "A")
    plain = cached.v4.query(name, "A")
    assert plain.edns < 0, "no OPT for a client without EDNS: " + describe(plain)
    with_edns = cached.v4.query(name, "A", edns=True)
    assert with_edns.edns == 0 and with_edns.payload == 1232, describe(with_edns)
    over_tcp = cached.v4.query(name, "A", tcp=True)
    assert addresses(over_tcp, name) == [GOOD_A], describe(over_tcp)
    assert upstream_count(fake, name) == 1


def test_cache_size_zero_turns_the_cache_off(fake, tmp_path):
    d = start(tmp_path, fake, "cache_size: 0\n")
    try:
        name = unique("good")
        for _ in range(3):
            assert addresses(d.v4.query(name, "A"), name) == [GOOD_A]
        assert upstream_count(fake, name) == 3
    finally:
        assert d.stop() == 0
