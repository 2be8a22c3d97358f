"""Restarts that lose nothing: a second vpcdns on a served address is refused with a message
that names the holder; --takeover hands the listening sockets over under a query stream with no
query lost; sockets passed by the LISTEN_FDS protocol (systemd socket activation, emulated
here) are served; the sd_notify messages (READY, RELOADING, STATUS, STOPPING) reach a test
NOTIFY_SOCKET, and --reload reports a failed reload; the lameduck keeps answering and then
stops; queries queued in the socket when the stop begins are answered, not dropped.

Everything on loopback; every wait is bounded."""

import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import dns.message

import vdtest
from vdtest import SNAPSHOT, VPCDNS, addresses, describe

SQS = "sqs.eu-west-1.amazonaws.com."
SQS_IP = "10.1.1.10"
BENCH = Path(os.environ.get("VPCDNS_BENCH_BIN", VPCDNS.parent / "vpcdns-bench"))


def base_argv(port, nsd, extra=()):
    return [
        VPCDNS,
        "--listen",
        "127.0.0.1:%d" % port,
        "--upstream",
        "%s:%d" % nsd,
        "--snapshot",
        SNAPSHOT,
    ] + [str(a) for a in extra]


def answers(port, tcp=False):
    msg = vdtest.Client("127.0.0.1", port).send(vdtest.make_query(SQS, "A"), tcp=tcp)
    return SQS_IP in addresses(msg, SQS)


def wait_exit(proc, limit):
    try:
        return proc.p.wait(limit)
    except subprocess.TimeoutExpired:
        return None


# ---------------------------------------------------------------------------- one per address


def test_second_instance_on_the_address_is_refused(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    first = vdtest.Proc("first", base_argv(port, nsd), tmp_path)
    try:
        vdtest.wait_until_answers(first, vdtest.Client("127.0.0.1", port), SQS)
        res = vdtest.run_vpcdns(base_argv(port, nsd)[1:], timeout=15)
        assert res.returncode == 1, res.stderr
        assert "listen 127.0.0.1:%d (udp)" % port in res.stderr, res.stderr
        assert "served by vpcdns pid %d" % first.p.pid in res.stderr, res.stderr
        assert "--takeover" in res.stderr, res.stderr
        assert first.alive() and answers(port)
    finally:
        assert first.stop() == 0


def test_address_held_by_another_program_is_refused(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # what used to let us in
        held.bind(("127.0.0.1", port))
        res = vdtest.run_vpcdns(base_argv(port, nsd)[1:], timeout=15)
    assert res.returncode == 1, res.stderr
    assert "listen 127.0.0.1:%d (udp): Address already in use by another program" % port in res.stderr


# ---------------------------------------------------------------------------- --takeover


def bench_stream(port, qps, seconds, out):
    """vpcdns-bench in the background: a bounded open-loop stream of local-answer queries."""
    argv = [BENCH, "--server", "127.0.0.1:%d" % port, "--snapshot", SNAPSHOT, "--rate", str(qps)]
    argv += ["--duration", str(seconds), "--timeout", "1000", "--sockets", "2", "--json", out, "-q"]
    return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL)


def test_takeover_hands_over_without_losing_a_query(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    old = vdtest.Proc("old", base_argv(port, nsd, ["--workers", "2"]), tmp_path)
    new = None
    try:
        vdtest.wait_until_answers(old, vdtest.Client("127.0.0.1", port), SQS)
        out = tmp_path / "stream.json"
        stream = bench_stream(port, 1500, 3, out)
        time.sleep(1.2)
        new = vdtest.Proc("new", base_argv(port, nsd, ["--workers", "3", "--takeover"]), tmp_path)
        # the old one leaves by itself once the new one serves
        assert wait_exit(old, 8) == 0, old.failure("did not exit cleanly after the hand-over")
        assert stream.wait(15) == 0
        report = json.loads(out.read_text())
        assert report["sent"] >= 4000, report
        assert report["lost"] == 0 and report["answered"] == report["sent"], report
        assert new.alive() and answers(port) and answers(port, tcp=True)
        old_log, new_log = old.stderr_text(), new.stderr_text()
        assert "event=takeover_sent to_pid=%d sockets=4" % new.p.pid in old_log, old_log
        assert "event=server_stopping reason=taken_over" in old_log, old_log
        assert "event=takeover_received" in new_log and "sockets=4" in new_log, new_log
        # and the new one can be taken over in its turn: it listens on the control socket
        res = vdtest.run_vpcdns(base_argv(port, nsd)[1:], timeout=15)
        assert "served by vpcdns pid %d" % new.p.pid in res.stderr, res.stderr
    finally:
        old.stop()
        if new is not None:
            assert new.stop() == 0


def test_takeover_with_nobody_to_take_over_binds_as_usual(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    d = vdtest.Proc("alone", base_argv(port, nsd, ["--takeover"]), tmp_path)
    try:
        vdtest.wait_until_answers(d, vdtest.Client("127.0.0.1", port), SQS)
        assert "event=takeover_none" in d.stderr_text()
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------------------- systemd


class Notify:
    """A NOTIFY_SOCKET for one test: the messages the daemon sends, as lists of lines."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen = []

    def wait(self, line, limit=5.0):
        """Reads until a message holds line; returns that message's lines."""
        for msg in self.seen:
            if line in msg:
                self.seen.remove(msg)
                return msg
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode().split("\n")
            except socket.timeout:
                break
            if line in msg:
                return msg
            self.seen.append(msg)
        raise AssertionError("no %s within %.0f s; seen %r" % (line, limit, self.seen))

    def close(self):
        self.sock.close()


def launch_with_sockets(argv, socks, notify_path, log):
    """Starts argv as systemd would: socks as fds 3.., LISTEN_PID/LISTEN_FDS, NOTIFY_SOCKET."""
    pid = os.fork()
    if pid == 0:
        try:
            high = [os.dup2(os.dup(s.fileno()), 200 + i) for i, s in enumerate(socks)]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i, inheritable=True)
            err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(err, 2)
            os.closerange(3 + len(socks), 1024)
            env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(socks)))
            env["LISTEN_FDNAMES"] = ":".join(["dns"] * len(socks))
            env["NOTIFY_SOCKET"] = notify_path
            os.execve(str(argv[0]), [str(a) for a in argv], env)
        finally:
            os._exit(127)
    return pid


def reap(pid, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_socket_activation_and_notifications(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for s in (udp, tcp):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    tcp.listen(16)
    snap, _ = vdtest.copy_reload_data(tmp_path)
    argv = [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", "%s:%d" % nsd]
    argv += ["--snapshot", snap, "--workers", "2"]
    notify = Notify(tmp_path / "notify")
    log = tmp_path / "activated.stderr"
    pid = launch_with_sockets(argv, [udp, tcp], notify.path, log)
    try:
        ready = notify.wait("READY=1")
        assert any(x.startswith("STATUS=serving") for x in ready), ready
        # our sockets serve: this process holds them too, and nothing else was bound
        assert answers(port) and answers(port, tcp=True)
        text = log.read_text()
        assert "event=sockets_inherited source=systemd sockets=2 used=2" in text, text

        os.kill(pid, signal.SIGHUP)
        assert "RELOADING=1" in notify.wait("RELOADING=1")
        again = notify.wait("READY=1")
        # the same data: a reload that compiles nothing, still a good one for systemd
        assert any(x.startswith("STATUS=serving; reloaded nothing changed") for x in again), again

        # a broken capture: RELOADING, then READY with the failure in STATUS; --reload exits 1
        good = (snap / "describe-vpc-endpoints.json").read_text()
        (snap / "describe-vpc-endpoints.json").write_text("{ not json")
        res = vdtest.run_vpcdns(["--listen", "127.0.0.1:%d" % port, "--reload"], timeout=15)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "reload failed" in res.stderr and "describe-vpc-endpoints.json" in res.stderr
        notify.wait("RELOADING=1")
        failed = notify.wait("READY=1")
        assert any(x.startswith("STATUS=reload failed") for x in failed), failed
        assert answers(port)  # the old data goes on
        (snap / "describe-vpc-endpoints.json").write_text(good)

        os.kill(pid, signal.SIGTERM)
        stopping = notify.wait("STOPPING=1")
        assert "STOPPING=1" in stopping
        assert reap(pid, 5) == 0, log.read_text()
        pid = None
        # the sockets outlive the daemon, as systemd keeps them: a query sent while no daemon
        # runs waits in the socket and is answered by the next one
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.sendto(vdtest.make_query(SQS, "A", qid=4242).to_wire(), ("127.0.0.1", port))
            pid = launch_with_sockets(argv[:-2] + ["--workers", "1"], [udp, tcp], notify.path, log)
            notify.wait("READY=1")
            c.settimeout(3)
            reply = dns.message.from_wire(c.recv(4096))
            assert reply.id == 4242 and SQS_IP in addresses(reply, SQS), describe(reply)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            reap(pid, 5)
        notify.close()
        udp.close()
        tcp.close()


def test_reload_with_nobody_to_ask_fails(tmp_path):
    port = vdtest.free_port(("127.0.0.1",))
    res = vdtest.run_vpcdns(["--listen", "127.0.0.1:%d" % port, "--reload"], timeout=15)
    assert res.returncode == 1
    assert "reload failed: no vpcdns answers on its control socket" in res.stderr, res.stderr


# ---------------------------------------------------------------------------- stopping


def test_lameduck_answers_on_then_stops(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    mport = vdtest.free_port(("127.0.0.1",))
    extra = ["--metrics-listen", "127.0.0.1:%d" % mport]
    cfg = tmp_path / "lameduck.yaml"
    cfg.write_text("lameduck_ms: 1200\n")
    d = vdtest.Proc("lameduck", base_argv(port, nsd, extra + ["--config", cfg]), tmp_path)
    try:
        vdtest.wait_until_answers(d, vdtest.Client("127.0.0.1", port), SQS)
        start = time.monotonic()
        d.p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert d.alive() and answers(port), "stopped answering inside the lameduck"
        time.sleep(0.5)
        assert d.alive() and answers(port), "stopped answering inside the lameduck"
        assert wait_exit(d, 5) == 0
        assert time.monotonic() - start >= 1.1
        assert vdtest.raw_udp("127.0.0.1", port, vdtest.make_query(SQS).to_wire(), 0.3) is None
    finally:
        d.stop()


def test_without_metrics_listen_the_stop_is_immediate(tmp_path, nsd):
    port = vdtest.free_port(("127.0.0.1",))
    d = vdtest.Proc("quick", base_argv(port, nsd), tmp_path)
    vdtest.wait_until_answers(d, vdtest.Client("127.0.0.1", port), SQS)
    start = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - start < 1.0


QUEUED = 500  # about two wake-ups' worth (VD_UDP_BATCH * VD_UDP_ROUNDS = 256 each), and what a
# receive buffer capped at Linux's default net.core.rmem_max still holds


def test_queries_queued_at_the_stop_are_answered(tmp_path, nsd, monkeypatch):
    """The worker is held (the stall hook) while queries queue and the stop arrives; once it
    runs again, the socket's readiness comes before the stop's wake-up: a stop without the
    drain would answer one wake-up's read and close the socket on the rest."""
    port = vdtest.free_port(("127.0.0.1",))
    mport = vdtest.free_port(("127.0.0.1",))
    cfg = tmp_path / "drain.yaml"
    cfg.write_text("lameduck_ms: 0\n")  # the stall hook needs the HTTP endpoint
    monkeypatch.setenv("VPCDNS_DEBUG_STALL_WORKER", "0:1500:2000")
    extra = ["--workers", "1", "--metrics-listen", "127.0.0.1:%d" % mport, "--config", cfg]
    d = vdtest.Proc("drain", base_argv(port, nsd, extra), tmp_path)
    q = vdtest.make_query(SQS, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        try:
            vdtest.wait_until_answers(d, vdtest.Client("127.0.0.1", port), SQS)
            # until the worker is held: a query goes unanswered (it is answered later)
            held = vdtest.wait_for(
                lambda: vdtest.raw_udp("127.0.0.1", port, q.to_wire(), 0.1) is None, 4.0
            )
            assert held, "the stall hook did not hold the worker"
            wire = bytearray(q.to_wire())
            for i in range(QUEUED):
                struct.pack_into("!H", wire, 0, i)
                c.sendto(bytes(wire), ("127.0.0.1", port))
            d.p.send_signal(signal.SIGTERM)
            assert wait_exit(d, 8) == 0
            # The server's own count (a client's buffer may overflow with a burst this fast):
            # every queued query read and answered, none dropped on the way out.
            stop = [l for l in d.stderr_text(20000).splitlines() if " event=server_stop " in l]
            assert stop, d.stderr_text()
            fields = dict(kv.split("=", 1) for kv in stop[0].split() if "=" in kv)
            assert int(fields["local_answers"]) >= QUEUED + 1, stop[0]
            assert fields["udp_send_dropped"] == "0" and fields["udp_errors"] == "0", stop[0]
        finally:
            d.stop()


# ---------------------------------------------------------------------------- the HTTP endpoint


def http_status(port, path):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_takeover_shares_the_metrics_address_and_others_are_refused(tmp_path, nsd):
    """A --takeover successor binds the metrics address beside the old instance (probes go on
    answering through the hand-over); a second vpcdns without --takeover, even on another DNS
    port, is refused the metrics address in use."""
    port = vdtest.free_port(("127.0.0.1",))
    mport = vdtest.free_port(("127.0.0.1",))
    cfg = tmp_path / "quick.yaml"
    cfg.write_text("lameduck_ms: 0\n")  # the test's own stop need not drain
    metrics = ["--config", cfg, "--metrics-listen", "127.0.0.1:%d" % mport]
    old = vdtest.Proc("old", base_argv(port, nsd, metrics), tmp_path)
    new = None
    try:
        vdtest.wait_until_answers(old, vdtest.Client("127.0.0.1", port), SQS)
        assert vdtest.wait_for(lambda: http_status(mport, "/ready") == 200)
        other = vdtest.free_port(("127.0.0.1",))
        res = vdtest.run_vpcdns(base_argv(other, nsd, metrics)[1:], timeout=15)
        assert res.returncode == 1, res.stderr
        assert "metrics_listen 127.0.0.1:%d: Address already in use" % mport in res.stderr, res.stderr
        new = vdtest.Proc("new", base_argv(port, nsd, metrics + ["--takeover"]), tmp_path)
        assert wait_exit(old, 15) == 0, old.failure("did not exit after the hand-over")
        assert new.alive(), new.failure("the successor did not start")
        assert vdtest.wait_for(lambda: http_status(mport, "/ready") == 200)
        assert answers(port)
    finally:
        old.stop()
        if new is not None:
            assert new.stop() == 0
