"""Limits that keep one client from hurting others, through the real daemon and its config
file: access control (refuse and drop), response rate limiting with slip, TCP connections per
client, queries per connection, a slow sender against the idle timeout, and forwarded
queries pending per client. 127.0.0.1 and 127.0.0.2 act as two different clients; the stop
log line must count what each limit did."""

import re
import socket
import struct
import time

import dns.flags
import dns.message
import dns.rcode
import pytest

import vdtest
from vdtest import TIMEOUT, describe, free_port, make_query, tcp_read_message, vpcdns_argv

LOCAL = "sqs.%s.amazonaws.com." % vdtest.REGION  # answered from the snapshot
FORWARDED = "www.example.com."  # answered by the upstream


def frame(wire):
    return struct.pack("!H", len(wire)) + wire


def udp_from(src, port, wire, timeout=TIMEOUT):
    """Sends wire from source address src; the reply bytes, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        s.settimeout(timeout)
        s.sendto(wire, ("127.0.0.1", port))
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None


def tcp_from(src, port, timeout=TIMEOUT):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def closed_within(sock, seconds):
    """True when the peer closes (EOF or reset) within seconds; data is read and ignored."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def stop_counters(daemon):
    """Stops the daemon (exit status 0 required) and returns the server_stop counters."""
    status = daemon.stop()
    text = daemon.proc.stderr_text(limit=100000)
    assert status == 0, daemon.proc.failure("SIGTERM: exit status %s" % status)
    lines = [l for l in text.splitlines() if "server_stop" in l]
    assert lines, daemon.proc.failure("no server_stop line")
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


@pytest.fixture
def limited(tmp_path, nsd):
    """limited(config_text, upstream=NSD, probe_src="127.0.0.1"): a vpcdns on 127.0.0.1 and
    ::1 with the config file's limits, ready once it answers a query for LOCAL sent from
    probe_src (any answer, REFUSED included)."""
    started = []

    def start(config_text, upstream=None, probe_src="127.0.0.1"):
        upstream = upstream or "%s:%d" % nsd
        conf = tmp_path / ("limits-%d.yaml" % len(started))
        conf.write_text(config_text)
        port = free_port()
        argv = vpcdns_argv(port, upstream, extra=["--config", conf])
        proc = vdtest.Proc("vpcdns-limits-%d" % len(started), argv, tmp_path)
        d = vdtest.Daemon(proc, port)
        started.append(d)
        probe = make_query(LOCAL, "A").to_wire()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(proc.failure("exited with status %s" % proc.p.returncode))
            if udp_from(probe_src, port, probe, timeout=0.2) is not None:
                return d
            time.sleep(0.05)
        raise RuntimeError(proc.failure("did not answer within 10 s"))

    yield start
    for d in started:
        d.stop()


# ---------------------------------------------------------------------------- access control


def test_clients_outside_the_allow_list_get_refused(limited):
    d = limited("allow:\n  - 10.0.0.0/8\n  - fd00::/8\ndeny_action: refuse\n")
    q = make_query(LOCAL, "A")
    wire = d.v4.raw(q.to_wire())
    assert wire is not None, "a denied client got no answer with deny_action refuse"
    msg = dns.message.from_wire(wire)
    assert msg.rcode() == dns.rcode.REFUSED, describe(msg)
    assert msg.id == q.id and not msg.answer, describe(msg)
    assert msg.question == q.question

    msg = d.v6.query(FORWARDED, "A", tcp=True)
    assert msg.rcode() == dns.rcode.REFUSED, "over TCP and IPv6 too:\n" + describe(msg)

    # garbage that would earn FORMERR is dropped for a denied client
    garbage = struct.pack("!HHHHHH", 0x4242, 0, 1, 0, 0, 0) + b"\xc0\x0c"
    assert d.v4.raw(garbage, timeout=0.5) is None

    counters = stop_counters(d)
    assert counters["acl_refused"] >= 2, counters
    assert counters["forwarded"] == 0, "a denied client made us query upstream: %s" % counters


def test_default_allow_list_accepts_loopback(limited):
    d = limited("log_level: info\n")
    msg = d.v4.query(LOCAL, "A")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer, describe(msg)
    msg = d.v6.query(FORWARDED, "A")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer, describe(msg)


def test_deny_action_drop_answers_nothing_and_closes_tcp(limited):
    d = limited("allow:\n  - 127.0.0.2/32\ndeny_action: drop\n", probe_src="127.0.0.2")
    q = make_query(LOCAL, "A").to_wire()
    assert udp_from("127.0.0.1", d.port, q, timeout=0.5) is None, "denied: no UDP answer"
    assert d.v6.raw(q, timeout=0.5) is None, "::1 is not in the list either"
    wire = udp_from("127.0.0.2", d.port, q)
    assert wire is not None and dns.message.from_wire(wire).answer, "the allowed client"

    s = tcp_from("127.0.0.1", d.port)
    try:
        s.sendall(frame(q))
    except OSError:
        pass  # already closed
    assert closed_within(s, TIMEOUT), "a denied TCP client is closed without an answer"
    s.close()
    s = tcp_from("127.0.0.2", d.port)
    s.sendall(frame(q))
    msg = dns.message.from_wire(tcp_read_message(s, time.monotonic() + TIMEOUT))
    assert msg.answer, describe(msg)
    s.close()

    counters = stop_counters(d)
    assert counters["acl_dropped"] >= 3, counters


# ---------------------------------------------------------------------------- rate limiting


def test_rrl_limits_responses_and_slips_tc(limited):
    d = limited("rrl_responses_per_second: 10\nrrl_slip: 2\n", probe_src="127.0.0.2")
    # 127.0.0.2 (the probe) shares 127.0.0.0/24 with us: let its second pass first
    time.sleep(1.1)
    full = tc = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for i in range(200):
            s.sendto(make_query(LOCAL, "A", qid=i).to_wire(), ("127.0.0.1", d.port))
        s.settimeout(0.5)
        for _ in range(200):
            try:
                wire = s.recvfrom(65535)[0]
            except socket.timeout:
                break
            msg = dns.message.from_wire(wire)
            if msg.flags & dns.flags.TC:
                assert not msg.answer and len(msg.question) == 1, describe(msg)
                tc += 1
            else:
                assert len(msg.answer) == 1, describe(msg)
                full += 1
    # 10 per second (up to 20 when the burst straddles a second); half of the rest as TC
    assert 10 <= full <= 20, "%d full answers" % full
    rest = 200 - full
    assert abs(tc - rest / 2) <= 3, "%d TC answers for %d over the limit" % (tc, rest)

    # TCP is exempt: a client told to retry over TCP gets its answers at once
    for _ in range(20):
        msg = d.v4.query(LOCAL, "A", tcp=True)
        assert msg.answer and not msg.flags & dns.flags.TC, describe(msg)

    # a second later the client is answered normally again
    time.sleep(1.1)
    msg = d.v4.query(LOCAL, "A")
    assert msg.answer and not msg.flags & dns.flags.TC, describe(msg)

    counters = stop_counters(d)
    assert counters["rrl_slipped"] == tc, counters
    assert counters["rrl_dropped"] >= rest - tc, counters


# ---------------------------------------------------------------------------- TCP


def test_tcp_connections_per_client(limited):
    # four workers: the connections land on different ones (SO_REUSEPORT), and the limit is
    # the client's across all of them
    d = limited("workers: 4\ntcp_max_connections_per_client: 2\n")
    q = frame(make_query(LOCAL, "A").to_wire())
    held = [tcp_from("127.0.0.1", d.port) for _ in range(2)]
    for s in held:
        s.sendall(q)
        assert tcp_read_message(s, time.monotonic() + TIMEOUT)
    third = tcp_from("127.0.0.1", d.port)
    assert closed_within(third, TIMEOUT), "a third connection from one client is closed"
    third.close()
    other = tcp_from("127.0.0.2", d.port)
    other.sendall(q)
    assert tcp_read_message(other, time.monotonic() + TIMEOUT), "another client is served"
    other.close()
    for s in held:
        s.close()
    counters = stop_counters(d)
    assert counters["tcp_client_rejected"] == 1, counters


def test_tcp_queries_per_connection(limited):
    d = limited("tcp_max_queries_per_connection: 3\n")
    s = tcp_from("127.0.0.1", d.port)
    s.sendall(b"".join(frame(make_query(LOCAL, "A", qid=100 + i).to_wire()) for i in range(5)))
    deadline = time.monotonic() + TIMEOUT
    ids = [dns.message.from_wire(tcp_read_message(s, deadline)).id for _ in range(3)]
    assert ids == [100, 101, 102]
    assert closed_within(s, TIMEOUT), "the connection is closed after 3 answers"
    s.close()
    counters = stop_counters(d)
    assert counters["tcp_query_limit_closed"] == 1, counters


def test_slow_sender_is_closed_at_the_idle_timeout(limited):
    d = limited("tcp_idle_timeout_ms: 500\n")
    s = tcp_from("127.0.0.1", d.port)
    t0 = time.monotonic()
    s.sendall(struct.pack("!H", 60))  # a 60-octet message, then one octet every 100 ms
    closed = False
    for _ in range(40):
        try:
            s.sendall(b"\0")
        except OSError:
            closed = True
            break
        if closed_within(s, 0.1):
            closed = True
            break
    took = time.monotonic() - t0
    s.close()
    assert closed, "a client trickling one octet per 100 ms kept its connection %.1f s" % took
    assert 0.4 <= took <= 1.5, "closed after %.2f s with a 0.5 s idle timeout" % took
    counters = stop_counters(d)
    assert counters["tcp_idle_closed"] == 1, counters


# ---------------------------------------------------------------------------- pending upstream


def test_pending_forwarded_queries_per_client(limited):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # an upstream that never answers
    silent.bind(("127.0.0.1", 0))
    try:
        d = limited(
            # four workers: the third query comes from another port, so most likely through
            # another worker, and must still count against the client's two
            "workers: 4\nmax_pending_per_client: 2\nupstream_timeout_ms: 3000\n",
            upstream="127.0.0.1:%d" % silent.getsockname()[1],
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.bind(("127.0.0.1", 0))
            for i in range(2):
                c.sendto(make_query("p%d.example.com." % i, "A").to_wire(), ("127.0.0.1", d.port))
            time.sleep(0.2)
            t0 = time.monotonic()
            q = make_query("p9.example.com.", "A")
            wire = udp_from("127.0.0.1", d.port, q.to_wire(), timeout=2.5)
            took = time.monotonic() - t0
            assert wire is not None, "no answer over the pending limit"
            msg = dns.message.from_wire(wire)
            assert msg.id == q.id and msg.rcode() == dns.rcode.SERVFAIL, describe(msg)
            assert took < 1.0, "SERVFAIL after %.2f s: the upstream timeout, not the limit" % took
            # local names are still answered, and another client still goes upstream
            assert d.v4.query(LOCAL, "A").answer
            assert udp_from("127.0.0.2", d.port, make_query("o.example.com.").to_wire(), 0.5) is None
        counters = stop_counters(d)
        assert counters["forward_denied"] == 1, counters
    finally:
        silent.close()
