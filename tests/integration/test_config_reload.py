"""SIGHUP re-reads the config file: the upstreams, forward rules, access list and log level
change without a restart; a key that needs one (listen) is logged as such and the server keeps
serving on the old address; a config that does not parse changes nothing. Two scripted
upstreams answer with different addresses, so every answer tells which way it went."""

import signal

import dns.rcode
import pytest

import vdtest
from fakeupstream import FakeUpstream
from vdtest import SNAPSHOT, VPCDNS, addresses, describe, rcode

OLD_A = "192.0.2.53"
NEW_A = "192.0.2.101"
SQS = "sqs.%s.amazonaws.com." % vdtest.REGION


@pytest.fixture(scope="module")
def upstreams():
    with FakeUpstream(good_a=OLD_A) as old, FakeUpstream(good_a=NEW_A) as new:
        yield old, new


def config_text(port, upstream, extra="", cache_size=0):
    # everything in the file: flags given at the start are applied again at every reload
    return (
        "listen: 127.0.0.1:%d\n"
        "upstream: %s\n"
        "snapshot: %s\n"
        "workers: 2\n"
        "cache_size: %d\n" % (port, upstream, SNAPSHOT, cache_size)
    ) + extra


def start(tmp_path, start_daemon, upstream, extra="", cache_size=0):
    cfg = tmp_path / "vpcdns.yaml"
    ports = []

    def argv(port):
        ports.append(port)
        cfg.write_text(config_text(port, upstream, extra, cache_size))
        return [VPCDNS, "--config", cfg]

    d = start_daemon(upstream, argv=argv, probe="good.probe.test.")
    return d, cfg, ports[0]


def sighup_outcomes(d):
    """How many SIGHUP reloads have ended (done, failed or skipped); the file watch's own
    reloads of the same change are not counted."""
    log = d.proc.stderr_text(limit=10**7)
    return sum(log.count("event=%s trigger=sighup" % e)
               for e in ("reload_done", "reload_failed", "reload_skipped"))


def reload_with(d, cfg, text):
    """Writes text as the config and sends SIGHUP; waits for that reload's outcome line."""
    before = sighup_outcomes(d)
    cfg.write_text(text)
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: sighup_outcomes(d) > before, 5.0), d.proc.stderr_text()


def answer(d, name):
    msg = d.v4.query(name, "A")
    assert rcode(msg) == dns.rcode.NOERROR, describe(msg)
    return addresses(msg, name)


def test_changed_upstream_and_rule_take_effect(tmp_path, start_daemon, upstreams):
    old, new = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address)
    assert answer(d, "good.one.test.") == [OLD_A]
    assert answer(d, "good.corp.rule.test.") == [OLD_A]

    # the default upstream moves to the new server, and a rule sends rule.test back to the old
    reload_with(
        d,
        cfg,
        config_text(port, new.address, "forward:\n  - {domain: rule.test, servers: [%s]}\n" % old.address),
    )
    log = d.proc.stderr_text()
    assert "event=reload_done" in log, log
    assert "config=upstream,forward" in log, log
    assert vdtest.wait_for(lambda: answer(d, "good.two.test.") == [NEW_A]), log
    old.reset()
    assert answer(d, "good.again.rule.test.") == [OLD_A]
    assert old.queries("good.again.rule.test.")
    # local data is still answered, and the process did not restart
    assert addresses(d.v4.query(SQS, "A"), SQS)
    assert "event=start " in log and log.count("event=start ") == 1, log

    # the rule goes away again: everything to the new upstream
    reload_with(d, cfg, config_text(port, new.address))
    assert vdtest.wait_for(lambda: answer(d, "good.three.rule.test.") == [NEW_A]), d.proc.stderr_text()


def test_changed_allow_list_takes_effect(tmp_path, start_daemon, upstreams):
    old, _ = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address)
    assert answer(d, SQS)
    reload_with(d, cfg, config_text(port, old.address, "allow: [10.0.0.0/8]\n"))
    assert vdtest.wait_for(lambda: rcode(d.v4.query(SQS, "A")) == dns.rcode.REFUSED), describe(
        d.v4.query(SQS, "A")
    )
    reload_with(d, cfg, config_text(port, old.address, "allow: [127.0.0.0/8]\n"))
    assert vdtest.wait_for(lambda: rcode(d.v4.query(SQS, "A")) == dns.rcode.NOERROR)


def test_changed_log_level_takes_effect(tmp_path, start_daemon, upstreams):
    old, new = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address)
    # warn: the reload's own info lines after the switch are not written; the new upstream
    # shows when the reload is through
    cfg.write_text(config_text(port, new.address, "log_level: warn\n"))
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: answer(d, "good.four.test.") == [NEW_A]), d.proc.stderr_text()
    log = d.proc.stderr_text(limit=10**7)
    assert "event=reload_start" in log and "event=reload_done" not in log, log
    # info lines are no longer written: the next reload logs no reload_start
    cfg.write_text(config_text(port, old.address, "log_level: warn\n"))
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: answer(d, "good.five.test.") == [OLD_A]), d.proc.stderr_text()
    assert d.proc.stderr_text(limit=10**7).count("event=reload_start") == 1, d.proc.stderr_text()
    # and debug lines appear once the level is debug (state_saved: the copy of this load)
    cfg.write_text(config_text(port, old.address, "log_level: debug\nstate_dir: %s\n" % (tmp_path / "st")))
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: "config=log_level,state_dir" in d.proc.stderr_text()), d.proc.stderr_text()
    # this reload loads at debug from its start (a changed byte: the same bytes compile nothing)
    reload_with(d, cfg, cfg.read_text() + "# again\n")
    assert "level=debug event=state_saved" in d.proc.stderr_text(limit=10**7), d.proc.stderr_text()


def test_changed_listen_needs_restart_and_old_address_serves(tmp_path, start_daemon, upstreams):
    old, new = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address)
    other = vdtest.free_port(("127.0.0.1",))
    text = config_text(other, new.address).replace("workers: 2", "workers: 3")
    reload_with(d, cfg, text)
    log = d.proc.stderr_text()
    assert "event=reload_needs_restart key=listen" in log, log
    assert "event=reload_needs_restart key=workers" in log, log
    assert "event=reload_done" in log, log
    # still on the old address, and the live part (the upstream) was applied
    assert vdtest.wait_for(lambda: answer(d, "good.five.test.") == [NEW_A]), log
    probe = vdtest.raw_udp("127.0.0.1", other, vdtest.make_query(SQS).to_wire(), timeout=0.3)
    assert probe is None, "something answers on the new address without a restart"


def test_broken_config_changes_nothing(tmp_path, start_daemon, upstreams):
    old, new = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address)
    # a syntax error on line 3, after a changed upstream
    reload_with(d, cfg, "listen: 127.0.0.1:%d\nupstream: %s\nforward: [\n" % (port, new.address))
    log = d.proc.stderr_text()
    assert "event=reload_failed" in log and "vpcdns.yaml:" in log, log
    assert answer(d, "good.six.test.") == [OLD_A]
    # a value out of range names the file, line and key; still nothing changes
    reload_with(d, cfg, config_text(port, new.address, "tcp_idle_timeout_ms: 0\n"))
    log = d.proc.stderr_text()
    assert "vpcdns.yaml:6:" in log and "tcp_idle_timeout_ms" in log, log
    assert answer(d, "good.seven.test.") == [OLD_A]
    assert addresses(d.v4.query(SQS, "A"), SQS)
    assert d.proc.alive()


def count_answered(d, name, n, timeout=0.2):
    wire = vdtest.make_query(name).to_wire()
    return sum(1 for _ in range(n) if vdtest.raw_udp("127.0.0.1", d.port, wire, timeout=timeout) is not None)


def test_rate_limit_turns_on_and_off_live(tmp_path, start_daemon, upstreams):
    old, _ = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address)
    assert count_answered(d, SQS, 20) == 20
    reload_with(d, cfg, config_text(port, old.address, "rrl_responses_per_second: 2\nrrl_slip: 0\n"))
    log = d.proc.stderr_text()
    assert "config=rrl_responses_per_second,rrl_slip" in log and "needs_restart" not in log, log
    answered = count_answered(d, SQS, 20, timeout=0.05)
    assert answered <= 8, "rate limit of 2/s not in force: %d of 20 answered" % answered
    reload_with(d, cfg, config_text(port, old.address))
    assert count_answered(d, SQS, 20) == 20


def test_query_log_sample_changes_live_and_its_path_needs_restart(tmp_path, start_daemon, upstreams):
    old, _ = upstreams
    qlog = tmp_path / "queries.log"
    base = "query_log: {format: route53, path: %s, sample: %s}\n"
    d, cfg, port = start(tmp_path, start_daemon, old.address, base % (qlog, "0"))
    answer(d, SQS)
    reload_with(d, cfg, config_text(port, old.address, base % (qlog, "1")))
    log = d.proc.stderr_text()
    assert "config=query_log" in log and "needs_restart" not in log, log
    answer(d, "good.logged.test.")
    assert vdtest.wait_for(lambda: qlog.exists() and "good.logged.test" in qlog.read_text()), log
    assert "sqs." not in qlog.read_text()  # asked while the sample was 0
    reload_with(d, cfg, config_text(port, old.address, base % (tmp_path / "other.log", "1")))
    assert "event=reload_needs_restart key=query_log" in d.proc.stderr_text(), d.proc.stderr_text()
    answer(d, "good.still.test.")
    assert vdtest.wait_for(lambda: "good.still.test" in qlog.read_text())
    assert not (tmp_path / "other.log").exists()


def cached_ttl(d, name):
    d.v4.query(name, "A")  # fills the cache
    msg = d.v4.query(name, "A")
    assert msg.answer, describe(msg)
    return msg.answer[0].ttl


def test_cache_ttl_bounds_change_live_and_its_size_needs_restart(tmp_path, start_daemon, upstreams):
    old, _ = upstreams
    d, cfg, port = start(tmp_path, start_daemon, old.address, cache_size=1000)
    assert cached_ttl(d, "ttl30.a.test.") > 5
    reload_with(d, cfg, config_text(port, old.address, "cache_max_ttl: 5\n", cache_size=2000))
    log = d.proc.stderr_text()
    assert "config=cache_max_ttl" in log and "event=reload_needs_restart key=cache_size" in log, log
    assert cached_ttl(d, "ttl30.b.test.") <= 5
