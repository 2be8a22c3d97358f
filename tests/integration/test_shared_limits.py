"""Per-client limits hold for the whole process, not per worker: with several workers,
SO_REUSEPORT spreads one client's datagrams over all of them by source port, so a table per
worker would give a spoofed victim `workers x` the configured response rate. One client
(127.0.0.1) asks from many source ports at once; the responses it gets in one second must be
the configured rate, whatever the worker count."""

import selectors
import socket
import time

import dns.flags
import dns.message
import pytest

import vdtest
from vdtest import describe, free_port, make_query, vpcdns_argv

LOCAL = "sqs.%s.amazonaws.com." % vdtest.REGION  # answered from the snapshot
RATE = 20
PORTS = 64  # source ports: every worker gets some of them
QUERIES = 8 * RATE


def wait_ready(proc, port, src="127.0.0.2", limit=10.0):
    """Waits until the daemon answers a query sent from src (not the client under test)."""
    wire = make_query(LOCAL, "A").to_wire()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(proc.failure("exited with status %s" % proc.p.returncode))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            s.settimeout(0.2)
            s.sendto(wire, ("127.0.0.1", port))
            try:
                s.recvfrom(65535)
                return
            except socket.timeout:
                pass
    raise RuntimeError(proc.failure("did not answer within %.0f s" % limit))


@pytest.fixture
def daemon_with(tmp_path, nsd):
    started = []

    def start(config_text):
        conf = tmp_path / ("shared-%d.yaml" % len(started))
        conf.write_text(config_text)
        port = free_port()
        argv = vpcdns_argv(port, "%s:%d" % nsd, extra=["--config", conf])
        proc = vdtest.Proc("vpcdns-shared-%d" % len(started), argv, tmp_path)
        d = vdtest.Daemon(proc, port)
        started.append(d)
        wait_ready(proc, port)
        return d

    yield start
    for d in started:
        d.stop()


def burst_from_many_ports(port, n_ports, n_queries):
    """Sends n_queries for LOCAL from 127.0.0.1, round-robin over n_ports source ports, all
    within the first half of one second of CLOCK_MONOTONIC (the daemon's clock too), then
    collects the replies. Returns (full answers, TC answers, monotonic time of the first send,
    seconds the sends took)."""
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(n_ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ)
        wires = [make_query(LOCAL, "A", qid=i).to_wire() for i in range(n_queries)]
        # start 50 ms into the next second: the budget of one fresh second is measured
        time.sleep(1.05 - time.monotonic() % 1.0)
        first = time.monotonic()
        for i, wire in enumerate(wires):
            socks[i % n_ports].sendto(wire, ("127.0.0.1", port))
        window = time.monotonic() - first
        full = tc = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.1):
                while True:
                    try:
                        data = key.fileobj.recv(65535)
                    except BlockingIOError:
                        break
                    msg = dns.message.from_wire(data)
                    if msg.flags & dns.flags.TC:
                        assert not msg.answer, describe(msg)
                        tc += 1
                    else:
                        assert len(msg.answer) == 1, describe(msg)
                        full += 1
        return full, tc, first, window
    finally:
        sel.close()
        for s in socks:
            s.close()


@pytest.mark.parametrize("workers", [2, 4])
def test_rrl_holds_one_client_to_the_rate_across_workers(daemon_with, workers):
    d = daemon_with(
        "workers: %d\nrrl_responses_per_second: %d\nrrl_slip: 0\nrrl_ipv4_prefix: 32\n"
        % (workers, RATE)
    )
    full, tc, first, window = burst_from_many_ports(d.port, PORTS, QUERIES)
    assert tc == 0, "slip 0 sends no TC answers"
    # the whole burst left within one second of the daemon's clock: one second's budget
    assert first % 1.0 + window < 0.95, "the burst took %.2f s: machine too slow" % window
    assert full == RATE, (
        "%d of %d queries from %d source ports answered with %d workers; the rate is %d per "
        "second for the client, not per worker" % (full, QUERIES, PORTS, workers, RATE)
    )

    # another client's budget is its own: 127.0.0.2 is answered in the same second
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(vdtest.TIMEOUT)
        s.sendto(make_query(LOCAL, "A").to_wire(), ("127.0.0.1", d.port))
        msg = dns.message.from_wire(s.recvfrom(65535)[0])
    assert len(msg.answer) == 1 and not msg.flags & dns.flags.TC, describe(msg)


def test_rrl_budget_returns_next_second_on_every_worker(daemon_with):
    d = daemon_with("workers: 4\nrrl_responses_per_second: %d\nrrl_slip: 0\n" % RATE)
    for _ in range(2):
        full, _, first, window = burst_from_many_ports(d.port, PORTS, QUERIES)
        assert first % 1.0 + window < 0.95, "the burst took %.2f s" % window
        assert full == RATE, "%d answered, rate %d" % (full, RATE)
